"""Numba's compiled CPU kernels (cpu_quantized.py): few-row quantized products compute what MLX's
quantized kernels compute (to fp32 rounding) for every supported bits and group size, a row's bits do
not depend on its batch, its experts' order or the thread count, what the kernels do not support keeps
MLX's kernel, and an engine's decode really takes them and still matches resident mlx-lm; the unpacking
of a prefill's experts gives mx.dequantize's bits, and an engine's prefill takes it."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.models.switch_layers import QuantizedSwitchLinear, SwitchGLU, SwitchMLP

import llm_engine
from llm_engine import cpu_quantized, cpu_split, dequant_matmul
from llm_engine.device import compiled_kernels, on_cpu

from engine_testing import greedy_with_logits, random_prompt, resident_reference
from tinymoe import ARCHS, VOCAB

pytestmark = pytest.mark.skipif(not compiled_kernels(), reason="no compiled CPU kernels (Numba) here")


def _quantized(shape, group_size: int, bits: int, seed: int):
    mx.random.seed(seed)
    weight, scales, biases = mx.quantize(mx.random.normal(shape) * 0.1, group_size, bits)
    mx.eval(weight, scales, biases)
    return weight, scales, biases


def _close(got, want):
    """fp32 both ways, summed in another order: within a few units in the last place of the largest."""
    got, want = np.array(got), np.array(want)
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("bits", cpu_quantized.BITS)
@pytest.mark.parametrize("group_size", cpu_quantized.GROUP_SIZES)
@pytest.mark.parametrize("rows", [1, 3, 20])
def test_a_matmul_computes_what_mlx_quantized_matmul_computes(bits, group_size, rows):
    weight, scales, biases = _quantized((200, 512), group_size, bits, seed=bits + group_size)
    mx.random.seed(rows)
    x = mx.random.normal((1, rows, 512))
    want = mx.quantized_matmul(x, weight, scales, biases, transpose=True, group_size=group_size, bits=bits)
    got = cpu_quantized.matmul(x, weight, scales, biases, group_size, bits)
    _close(got, want)


@pytest.mark.parametrize("bits, group_size", [(4, 64), (8, 32), (2, 128)])
def test_a_gather_computes_what_mlx_gather_qmm_computes_for_the_switch_layers_shapes(bits, group_size):
    weight, scales, biases = _quantized((6, 96, 256), group_size, bits, seed=7)
    rng = np.random.default_rng(bits)
    mx.random.seed(bits)

    def both(x, idx):
        want = mx.gather_qmm(
            x, weight, scales, biases, rhs_indices=idx, transpose=True, group_size=group_size, bits=bits
        )
        return cpu_quantized.gather_matmul(x, idx, weight, scales, biases, group_size, bits), want

    # SwitchGLU's first projections: each token's row broadcast over its k experts; then its down
    # projection, one row per (token, expert); then the sorted form mlx-lm takes for large calls.
    idx = mx.array(rng.integers(0, 6, size=(2, 5, 3)).astype(np.uint32))
    for x in (mx.random.normal((2, 5, 1, 1, 256)), mx.random.normal((2, 5, 3, 1, 256))):
        got, want = both(x, idx)
        assert got.shape == want.shape
        _close(got, want)
    got, want = both(mx.random.normal((30, 1, 256)), mx.array(np.sort(rng.integers(0, 6, size=30)).astype(np.uint32)))
    _close(got, want)


@pytest.mark.parametrize("bits", cpu_quantized.BITS)
@pytest.mark.parametrize("group_size", cpu_quantized.GROUP_SIZES)
def test_a_rows_bits_do_not_depend_on_its_batch_its_neighbours_or_the_threads(bits, group_size):
    """What keeps a batched decode equal to each sequence's single run, and an engine cut in CPU parts
    equal to one part: each output element is one thread's fixed-order sum over its own row."""
    weight, scales, biases = _quantized((5, 130, 256), group_size, bits, seed=1)
    w, s, b = (np.asarray(a) for a in (weight, scales, biases))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 256), dtype=np.float32)
    experts = rng.integers(0, 5, size=12)
    whole = cpu_quantized.products(x, experts, w, s, b, group_size, bits, threads=2)
    for rows in ([0], [3, 4], [11, 0, 5], list(range(12))[::-1]):
        alone = cpu_quantized.products(x[rows], experts[rows], w, s, b, group_size, bits, threads=1)
        assert np.array_equal(alone, whole[rows]), rows
    one = cpu_quantized.products(x[:1], None, w[2], s[2], b[2], group_size, bits)
    assert np.array_equal(one[0], cpu_quantized.products(x[:1], np.array([2]), w, s, b, group_size, bits)[0])
    # Rows of one matrix, 2, 3 and 5 at a time: each equal to its row alone.
    for n in (2, 3, 5):
        batch = cpu_quantized.products(x[:n], None, w[1], s[1], b[1], group_size, bits)
        for r in range(n):
            assert np.array_equal(
                batch[r], cpu_quantized.products(x[r : r + 1], None, w[1], s[1], b[1], group_size, bits)[0]
            )


def test_what_the_kernels_do_not_support_keeps_mlx_kernel_and_its_bits():
    weight, scales, biases = _quantized((64, 256), 64, 4, seed=3)
    assert cpu_quantized.supports(mx.float32, weight, scales, biases, 64, 4, "affine")
    assert not cpu_quantized.supports(mx.float32, weight, scales, biases, 64, 3, "affine")  # 3 bits
    assert not cpu_quantized.supports(mx.float32, weight, scales, biases, 16, 4, "affine")  # groups of 16
    assert not cpu_quantized.supports(mx.bfloat16, weight, scales, biases, 64, 4, "affine")
    assert not cpu_quantized.supports(mx.float32, weight, scales.astype(mx.bfloat16), biases, 64, 4, "affine")
    assert not cpu_quantized.supports(mx.float32, weight, scales, None, 32, 4, "mxfp4")

    layer = QuantizedSwitchLinear(256, 64, 4, bias=True, group_size=32, bits=4, mode="mxfp4")
    x, idx = mx.random.normal((3, 1, 1, 256)), mx.array([[0], [3], [1]], dtype=mx.uint32)
    want = layer(x, idx)
    assert not cpu_quantized.install(nn.Sequential(layer), threads=2)  # mxfp4: not installed at all
    assert type(layer) is QuantizedSwitchLinear
    # Installed on an affine layer whose dtypes it does not take (bf16 scales): it computes as MLX does.
    layer = QuantizedSwitchLinear(256, 64, 4, bias=False, group_size=64, bits=4)
    layer.scales, layer.biases = layer.scales.astype(mx.bfloat16), layer.biases.astype(mx.bfloat16)
    want = layer(x, idx)
    assert cpu_quantized.install(nn.Sequential(layer), threads=2)
    assert isinstance(layer, cpu_quantized.CompiledSwitchLinear)
    assert np.array_equal(np.array(layer(x, idx)), np.array(want))


def test_an_installed_switch_layer_computes_what_mlx_lm_computes_with_its_biases():
    layer = SwitchGLU(256, 128, 4, bias=True)
    nn.quantize(layer, group_size=64, bits=4)
    for proj in (layer.gate_proj, layer.up_proj, layer.down_proj):
        proj.bias = mx.random.normal(proj.bias.shape)
    x, idx = mx.random.normal((2, 3, 256)), mx.array(np.random.default_rng(0).integers(0, 4, (2, 3, 2)), mx.uint32)
    want = layer(x, idx)
    assert cpu_quantized.install(layer, threads=2)
    assert all(
        isinstance(p, cpu_quantized.CompiledSwitchLinear) for p in (layer.gate_proj, layer.up_proj, layer.down_proj)
    )
    got = layer(x, idx)
    _close(got, want)


def test_switched_off_the_engine_keeps_mlx_kernels(monkeypatch):
    monkeypatch.setenv("ALMANAC_CPU_KERNELS", "off")
    assert not compiled_kernels()
    monkeypatch.setenv("ALMANAC_CPU_KERNELS", "on")
    assert compiled_kernels() == on_cpu()


@pytest.mark.parametrize("arch", ARCHS)
def test_an_engines_decode_takes_the_kernels_and_matches_resident_mlx_lm(checkpoints, arch, monkeypatch):
    calls = []  # (a linear layer's, not an expert's; output features)
    real = cpu_quantized.products
    monkeypatch.setattr(
        cpu_quantized,
        "products",
        lambda x, e, w, *a, **k: calls.append((e is None, w.shape[-2])) or real(x, e, w, *a, **k),
    )
    prompt = random_prompt(12, seed=5)
    want_tokens, want_logits = greedy_with_logits(resident_reference(checkpoints, arch), prompt, 6)
    calls.clear()  # resident mlx-lm never takes them
    with llm_engine.load(checkpoints.streamed(arch)) as engine:
        cache = make_prompt_cache(engine.model)
        mx.eval([c.state for c in cache], engine.model(mx.array(prompt[:-1])[None], cache=cache))
        # A prefill chunk (its logits are dropped): its linear layers on the kernels, not the output head,
        # which stays with MLX, computing only what is used.
        assert any(dense and features != VOCAB for dense, features in calls)
        assert (True, VOCAB) not in calls
        calls.clear()
        mx.eval(engine.model(mx.array([[prompt[-1]]]), cache=cache))
        # A decode step: its linear layers and output head, and its experts, on the kernels; but
        # gpt-oss's experts, in mxfp4 blocks, which keep MLX's kernel (supports()).
        assert (True, VOCAB) in calls
        assert any(not dense for dense, _ in calls) == (arch != "gpt_oss")
        got_tokens, got_logits = greedy_with_logits(engine.model, prompt, 6)
    assert got_tokens == want_tokens
    np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=1e-4)


def test_an_engine_without_the_kernels_gives_the_same_tokens(checkpoints, monkeypatch):
    prompt = random_prompt(12, seed=6)
    with llm_engine.load(checkpoints.streamed("qwen3_moe")) as engine:
        with_kernels = greedy_with_logits(engine.model, prompt, 6)
    monkeypatch.setenv("ALMANAC_CPU_KERNELS", "off")
    calls = []
    monkeypatch.setattr(cpu_quantized, "products", lambda *a, **k: calls.append(1))
    with llm_engine.load(checkpoints.streamed("qwen3_moe")) as engine:
        without = greedy_with_logits(engine.model, prompt, 6)
    assert calls == [] and without[0] == with_kernels[0]
    np.testing.assert_allclose(without[1], with_kernels[1], rtol=0, atol=1e-4)


@pytest.mark.parametrize("bits", cpu_quantized.BITS)
@pytest.mark.parametrize("group_size", cpu_quantized.GROUP_SIZES)
def test_unpacking_gives_the_bits_of_mx_dequantize(bits, group_size):
    weight, scales, biases = _quantized((40, 256), group_size, bits, seed=bits * group_size)
    want = mx.dequantize(weight, scales, biases, group_size, bits)
    out = np.full((40, 256), np.nan, dtype=np.float32)
    cpu_quantized.dequantize_into(*(np.asarray(a) for a in (weight, scales, biases)), out, group_size, bits)
    assert np.array_equal(out, np.array(want))


def _switch_layer(kind: str) -> nn.Module:
    """mlx-lm's own switch layer, 8 experts quantized 4-bit with random weights and biases."""
    layer = SwitchGLU(256, 192, 8, bias=True) if kind == "glu" else SwitchMLP(256, 192, 8, bias=True)
    nn.quantize(layer, group_size=64, bits=4)
    for i, (_, proj) in enumerate(layer.children().items()):
        if isinstance(proj, QuantizedSwitchLinear):
            mx.random.seed(i)
            full = mx.random.normal((8, proj.weight.shape[1], proj.input_dims)) * 0.1
            proj.weight, proj.scales, proj.biases = mx.quantize(full, 64, 4)
            proj.bias = mx.random.normal(proj.bias.shape)
    return layer


@pytest.mark.parametrize("kind", ["glu", "mlp"])
def test_experts_unpacked_part_by_part_give_the_bits_of_expert_rows(kind):
    """A prefill's experts on OpenBLAS: unpacked on the compiled kernel into each CPU part's buffer, each
    part's experts in turn on its own stream, the same bits as MLX's unpacking (dequant_matmul.expert_rows)."""
    layer = _switch_layer(kind)
    assert dequant_matmul.unpacks(layer)
    mx.random.seed(6)
    x = mx.random.normal((90, 256))
    slots = np.sort(np.random.default_rng(0).integers(0, 8, size=90))
    want = np.array(dequant_matmul.expert_rows(layer, x, slots))
    starts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
    for cuts in ([], [starts[3]], [starts[2], starts[5]]):  # one, two and three parts, on expert boundaries
        edges = [0, *cuts, len(slots)]
        streams = cpu_split.streams(len(edges) - 1)
        parts = [(st, x[a:b], slots[a:b]) for st, a, b in zip(streams, edges[:-1], edges[1:])]
        got = dequant_matmul.expert_rows_by_parts(layer, parts)
        assert [g.shape[0] for g in got] == np.diff(edges).tolist()
        assert np.array_equal(np.array(mx.concatenate(got)), want), cuts


def test_only_supported_experts_are_unpacked_on_the_kernel():
    layer = _switch_layer("glu")
    layer.down_proj.scales = layer.down_proj.scales.astype(mx.bfloat16)  # the CPU holds fp32: not this
    assert dequant_matmul.computes(layer) and not dequant_matmul.unpacks(layer)
    assert not dequant_matmul.unpacks(SwitchGLU(64, 32, 4))  # not quantized


@pytest.mark.skipif(not dequant_matmul.enabled(), reason="no OpenBLAS: a prefill keeps the quantized kernels")
@pytest.mark.parametrize("arch", ARCHS)
def test_an_engines_prefill_unpacks_its_experts_on_the_kernel(checkpoints, arch, monkeypatch):
    unpacked = []
    real = cpu_quantized.dequantize_into
    monkeypatch.setattr(cpu_quantized, "dequantize_into", lambda *a: unpacked.append(a[0].shape) or real(*a))
    prompt = random_prompt(300, seed=12)
    want_tokens, want_logits = greedy_with_logits(resident_reference(checkpoints, arch), prompt, 4)
    with llm_engine.load(checkpoints.streamed(arch)) as engine:
        got_tokens, got_logits = greedy_with_logits(engine.model, prompt, 4)
    # gpt-oss's mxfp4 experts keep MLX's dequantize.
    assert bool(unpacked) == (arch != "gpt_oss")
    assert got_tokens == want_tokens
    np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=1e-4)


def test_where_llvm_lacks_the_prefetch_the_kernel_is_compiled_without_it(monkeypatch):
    real, made = cpu_quantized._compile_kernel, []

    def compile_kernel(bits, group_size, cache):
        made.append(cpu_quantized._PREFETCH is cpu_quantized._no_prefetch())
        if not made[-1]:
            raise RuntimeError("no llvm.prefetch in this LLVM")  # as an older or newer LLVM might say
        return real(bits, group_size, cache)

    cpu_quantized._kernel(4, 64)  # the prefetch bound, as in any process that computed
    monkeypatch.setattr(cpu_quantized, "_PREFETCH", cpu_quantized._PREFETCH)  # put back afterwards
    monkeypatch.setattr(cpu_quantized, "_compile_kernel", compile_kernel)
    plain = cpu_quantized._kernel.__wrapped__(4, 64)  # not the cached one
    assert made == [False, True] and cpu_quantized._PREFETCH is cpu_quantized._no_prefetch()
    weight, scales, biases = _quantized((3, 130, 256), 64, 4, seed=4)
    w, s, b = (np.asarray(a) for a in (weight, scales, biases))
    x = np.random.default_rng(3).standard_normal((5, 256), dtype=np.float32)
    experts = np.array([2, 0, 2, 1, 0])
    order = np.argsort(experts, kind="stable")
    xp, xsum = cpu_quantized._layout(x[order], 64, 4)
    out = np.empty((5, 130), dtype=np.float32)
    plain(xp, xsum, order, np.array([0, 2, 3, 5]), np.array([0, 1, 2]), w, s, b, out)
    np.testing.assert_allclose(out, cpu_quantized.products(x, experts, w, s, b, 64, 4), rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["qwen3_moe", "gpt_oss"])
def test_an_engine_prepares_its_kernels_as_it_loads(checkpoints, arch, monkeypatch):
    """The kernels (and a prefill's unpacking) are compiled or read from Numba's cache by load(), not by the
    first request: every (bits, group size) its products take is asked for before any token is computed,
    and the first prefill asks for none that load did not."""
    asked = []
    real = cpu_quantized._kernel
    monkeypatch.setattr(cpu_quantized, "_kernel", lambda bits, gs: asked.append((bits, gs)) or real(bits, gs))
    with llm_engine.load(checkpoints.streamed(arch)) as engine:
        at_load = set(asked)
        assert at_load, "load prepared no kernel"
        greedy_with_logits(engine.model, random_prompt(40, seed=3), 2)
    assert set(asked) == at_load
