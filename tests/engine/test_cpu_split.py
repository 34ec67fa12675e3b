"""Work cut over the CPU's cores (cpu_split.py) gives the same bits as one call."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import llm_engine
from llm_engine import cpu_attention, cpu_split, dequant_matmul
from llm_engine.device import compiled_kernels, on_cpu
from llm_engine.errors import EngineError
from llm_engine.switch import StreamingSwitch

from engine_testing import greedy_with_logits, random_prompt
from tinymoe import ARCHS

pytestmark = pytest.mark.skipif(not on_cpu(), reason="nothing is cut on a GPU")


def test_feature_ranges_cover_the_layer_on_block_boundaries():
    assert cpu_split.cut_features(320, 2) == [(0, 128), (128, 320)]
    assert cpu_split.cut_features(320, 3) == [(0, 128), (128, 192), (192, 320)]
    assert cpu_split.cut_features(4096, 4) == [(0, 1024), (1024, 2048), (2048, 3072), (3072, 4096)]
    # Fewer blocks than parts: as many parts as blocks; one block: not cut.
    assert cpu_split.cut_features(130, 8) == [(0, 64), (64, 130)]
    assert cpu_split.cut_features(64, 2) == [(0, 64)]
    assert cpu_split.cut_features(4096, 1) == [(0, 4096)]


def test_pairs_are_cut_evenly_in_expert_order():
    positions = np.arange(10)
    experts = np.array([5, 1, 5, 0, 1, 1, 9, 0, 5, 2])
    parts = cpu_split.cut_pairs(positions, experts, 3)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sorted(np.concatenate(parts).tolist()) == positions.tolist()
    assert np.concatenate([experts[p] for p in parts]).tolist() == sorted(experts.tolist())
    assert len(cpu_split.cut_pairs(positions[:2], experts[:2], 8)) == 2  # never an empty part


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("rows", [1, 37])
def test_a_cut_quantized_linear_gives_the_same_bits(bias, n, rows, monkeypatch):
    # MLX's kernels, cut: what few rows take without Numba (with it they take cpu_quantized.py's
    # kernels, whose bits do not depend on the threads: tests/engine/test_cpu_quantized.py).
    monkeypatch.setenv("ALMANAC_CPU_KERNELS", "off")
    mx.random.seed(n * 100 + rows)
    layer = nn.QuantizedLinear(256, 448, bias=bias, group_size=64, bits=4)
    if bias:
        layer.bias = mx.random.normal((448,))
    x = mx.random.normal((1, rows, 256))
    if dequant_matmul.enabled() and dequant_matmul.many_rows(x):  # the path a prefill takes on OpenBLAS
        want = dequant_matmul.matmul(x, layer.weight, layer.scales, layer.biases, 64, 4, "affine")
        want = want + layer.bias if bias else want
    else:
        want = layer(x)
    mx.eval(want)
    model = nn.Sequential(layer)
    assert cpu_split.split_linears(model, n) == 1
    assert isinstance(layer, cpu_split.SplitQuantizedLinear) and len(layer._ranges) == n
    got = layer(x)
    assert np.array_equal(np.array(got), np.array(want))


def test_a_cut_tied_output_head_gives_the_same_bits_and_the_lookup_is_unchanged(monkeypatch):
    monkeypatch.setenv("ALMANAC_CPU_KERNELS", "off")  # MLX's kernel, cut (as above)
    mx.random.seed(7)
    emb = nn.QuantizedEmbedding(320, 128, group_size=64, bits=4)
    x = mx.random.normal((1, 5, 128))
    ids = mx.array([[3, 1, 319]])
    want_head, want_lookup = emb.as_linear(x), emb(ids)
    mx.eval(want_head, want_lookup)
    assert cpu_split.split_linears(nn.Sequential(emb), 2) == 1
    assert np.array_equal(np.array(emb.as_linear(x)), np.array(want_head))
    assert np.array_equal(np.array(emb(ids)), np.array(want_lookup))


def test_cutting_keeps_the_parameters_and_their_names():
    model = nn.Sequential(nn.QuantizedLinear(128, 256, group_size=64, bits=4), nn.QuantizedLinear(256, 64))
    before = {k: np.array(v) for k, v in nn.utils.tree_flatten(model.parameters())}
    assert cpu_split.split_linears(model, 2) == 1  # the 64-feature layer is too small to cut
    after = {k: np.array(v) for k, v in nn.utils.tree_flatten(model.parameters())}
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    # Left whole: as it was, or in one part where that class is what takes the dequantizing path.
    uncut_class = dequant_matmul.enabled() or compiled_kernels()
    assert type(model.layers[1]) is (cpu_split.SplitQuantizedLinear if uncut_class else nn.QuantizedLinear)
    assert getattr(model.layers[1], "_ranges", [(0, 64)]) == [(0, 64)]


@pytest.mark.parametrize("arch", ARCHS)
def test_an_engine_cut_three_ways_gives_the_bits_of_one_thread(checkpoints, arch, monkeypatch):
    """Three parts on this 2-core CI machine: more streams than cores, uneven cuts, both kinds
    of layer (the switch calls' pairs and the resident quantized layers) and the attention. The prompt is long enough
    for its prefill to take the dequantizing path where OpenBLAS is bound; the decode steps do not."""
    path = checkpoints.streamed(arch)
    prompt = random_prompt(120, seed=3)
    runs, attention = {}, {}
    real_sdpa, real_softmax = mx.fast.scaled_dot_product_attention, cpu_attention._softmax_on_host
    for threads in (1, 3):
        calls = attention[threads] = []

        def sdpa(q, k, v, calls=calls, **kw):
            calls.append((q.shape[2], k.shape[1]))  # query rows, key/value heads
            return real_sdpa(q, k, v, **kw)

        def softmax(scores, diagonal, calls=calls):  # a prefill's block on OpenBLAS's path (cpu_attention.py)
            calls.append((scores.shape[-2], scores.shape[1]))  # (batch, kv heads, per kv head, rows, keys)
            return real_softmax(scores, diagonal)

        monkeypatch.setattr(mx.fast, "scaled_dot_product_attention", sdpa)
        monkeypatch.setattr(cpu_attention, "_softmax_on_host", softmax)
        with llm_engine.load(path, cpu_threads=threads) as engine:
            switches = [m for _, m in engine.model.named_modules() if isinstance(m, StreamingSwitch)]
            assert {len(s._streams) for s in switches} == {threads}
            cut = [
                m
                for _, m in engine.model.named_modules()
                if isinstance(m, cpu_split.SplitQuantizedLinear) and len(m._ranges) > 1
            ]
            assert (len(cut) > 0) == (threads > 1)
            runs[threads] = greedy_with_logits(engine.model, prompt, 12)
    assert runs[1][0] == runs[3][0]
    assert np.array_equal(runs[1][1], runs[3][1])
    # The prefill's attention was cut by key/value heads in the cut engine, and only there.
    prefill = {n: [kv for rows, kv in calls if rows >= cpu_attention.ATTENTION_ROWS] for n, calls in attention.items()}
    assert prefill[1] and min(prefill[1]) >= 2
    assert len(prefill[3]) > len(prefill[1]) and max(prefill[3]) < min(prefill[1])
    decode = {n: [c for c in calls if c[0] < cpu_attention.ATTENTION_ROWS] for n, calls in attention.items()}
    assert decode[1] and decode[1] == decode[3]  # a decode step's attention is left whole


def test_cpu_threads_below_one_is_refused(checkpoints):
    with pytest.raises(EngineError, match="cpu-threads"):
        llm_engine.load(checkpoints.streamed(ARCHS[0]), cpu_threads=0)
