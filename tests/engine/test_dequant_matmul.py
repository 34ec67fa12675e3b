"""A prefill's quantized products as dequantize + matmul on OpenBLAS (cpu_blas.py, dequant_matmul.py):
MLX really binds there, the path computes what the quantized kernels compute (to fp32 rounding), a
row's bits do not depend on the output features beside it, an engine's prefill really takes it, and the
memory plan covers it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.models.switch_layers import QuantizedSwitchLinear, SwitchGLU, SwitchMLP

import llm_engine
from llm_engine import cpu_blas, cpu_split, dequant_matmul
from llm_engine.device import on_cpu

from engine_testing import ROOT, greedy_with_logits, random_prompt, resident_reference
from tinymoe import ARCHS

pytestmark = pytest.mark.skipif(not on_cpu(), reason="the CPU's BLAS")
needs_openblas = pytest.mark.skipif(not dequant_matmul.enabled(), reason=f"no OpenBLAS: {cpu_blas.describe()}")

# Run in a fresh interpreter: MLX's fp32 matmul next to OpenBLAS's own cblas_sgemm on the same data.
_PROBE = r"""
import ctypes, json, sys
import numpy as np
first = sys.argv[1]
if first == "llm_engine":
    import llm_engine
    from llm_engine import cpu_blas
import mlx.core as mx
blas = ctypes.CDLL("libopenblas.so.0")  # OpenBLAS's own product, whichever BLAS MLX bound
blas.openblas_set_num_threads(1)
rng = np.random.default_rng(0)
a = rng.standard_normal((48, 1024), dtype=np.float32)
b = rng.standard_normal((96, 1024), dtype=np.float32)
mine = np.array(mx.array(a) @ mx.array(b).T)
theirs = np.zeros((48, 96), dtype=np.float32)
p = ctypes.POINTER(ctypes.c_float)
blas.cblas_sgemm(101, 111, 112, 48, 96, 1024, ctypes.c_float(1.0), a.ctypes.data_as(p), 1024,
                 b.ctypes.data_as(p), 1024, ctypes.c_float(0.0), theirs.ctypes.data_as(p), 96)
print(json.dumps({"same_bits": bool(np.array_equal(mine, theirs)), "close": bool(np.allclose(mine, theirs, atol=1e-3)),
                  "describe": cpu_blas.describe() if first == "llm_engine" else ""}))
"""


def _probe(first: str, **env) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, first],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_openblas
def test_mlx_computes_its_fp32_matmul_with_openblas_once_llm_engine_loads_it_first():
    bound = _probe("llm_engine")
    assert bound["same_bits"] and bound["describe"].startswith("OpenBLAS ")
    # The same check fails where MLX keeps the wheel's BLAS: the probe can tell them apart.
    for kept in (_probe("mlx"), _probe("llm_engine", ALMANAC_CPU_BLAS="off")):
        assert kept["close"] and not kept["same_bits"]


def test_binding_too_late_or_switched_off_says_why():
    script = (
        "import mlx.core, llm_engine; from llm_engine import cpu_blas; print(cpu_blas.bound(), cpu_blas.describe())"
    )
    late = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert late.stdout.startswith("False the MLX wheel's BLAS (MLX was loaded before llm_engine"), late.stderr
    script = "import llm_engine; from llm_engine import cpu_blas; print(cpu_blas.bound(), cpu_blas.describe())"
    env = {**os.environ, "ALMANAC_CPU_BLAS": "off"}
    off = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert off.stdout.strip() == "False the MLX wheel's BLAS (ALMANAC_CPU_BLAS=off)", off.stderr
    env["ALMANAC_CPU_BLAS"] = "/nonexistent/libopenblas.so"
    gone = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert gone.stdout.startswith("False the MLX wheel's BLAS (no OpenBLAS (/nonexistent/libopenblas.so"), gone.stderr
    assert "apt install libopenblas0-pthread" in gone.stdout


@needs_openblas
def test_a_rows_bits_do_not_depend_on_the_rest_of_its_call():
    """What lets an engine cut in CPU parts give the bits of one part on this path: a linear layer's
    output features cut on 64-feature blocks, for calls of MIN_ROWS rows or more (OpenBLAS takes other
    kernels for a very few rows, so an expert's rows are never cut: cpu_split.cut_pairs(whole_experts))."""
    mx.random.seed(3)
    w = mx.random.normal((320, 512))
    wq, scales, biases = mx.quantize(w, 64, 4)
    x = mx.random.normal((90, 512))
    whole = dequant_matmul.matmul(x, wq, scales, biases, 64, 4, "affine")
    mx.eval(whole)
    for lo, hi in ((0, 16), (0, 17), (17, 90), (40, 60)):
        rows = dequant_matmul.matmul(x[lo:hi], wq, scales, biases, 64, 4, "affine")
        assert np.array_equal(np.array(rows), np.array(whole[lo:hi])), (lo, hi)
    for lo, hi in ((0, 64), (64, 320), (128, 192)):
        part = dequant_matmul.matmul(x, wq[lo:hi], scales[lo:hi], biases[lo:hi], 64, 4, "affine")
        assert np.array_equal(np.array(part), np.array(whole[:, lo:hi])), (lo, hi)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_unpacking_gives_the_bits_of_mx_dequantize(bits, group_size):
    mx.random.seed(bits * group_size)
    weight, scales, biases = mx.quantize(mx.random.normal((3, 40, 256)), group_size, bits)
    want = mx.dequantize(weight, scales, biases, group_size, bits)
    got = dequant_matmul.dequantize(weight, scales, biases, group_size, bits, "affine")
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(np.array(got), np.array(want))


def _switch_linear(n_in: int, n_out: int, mode: str, bias: bool, seed: int) -> QuantizedSwitchLinear:
    """A quantized switch projection of 8 experts with random weights (mxfp4: no biases, groups of 32)."""
    mx.random.seed(seed)
    group = 32 if mode == "mxfp4" else 64
    layer = QuantizedSwitchLinear(n_in, n_out, 8, bias=bias, group_size=group, bits=4, mode=mode)
    weight, scales, *biases = mx.quantize(mx.random.normal((8, n_out, n_in)) * 0.1, group, 4, mode=mode)
    layer.weight, layer.scales = weight, scales
    if biases:
        layer.biases = biases[0]
    if bias:
        layer.bias = mx.random.normal((8, n_out))
    return layer


@pytest.mark.parametrize("mode, bias", [("affine", False), ("affine", True), ("mxfp4", True)])
@pytest.mark.parametrize("kind", ["glu", "mlp"])
def test_expert_rows_compute_what_the_switch_layer_computes(mode, bias, kind, monkeypatch):
    if kind == "glu":
        layer = SwitchGLU(256, 192, 8)  # mlx-lm's own layers: their activation between the projections
        layer.gate_proj, layer.up_proj = (_switch_linear(256, 192, mode, bias, seed=i) for i in (1, 2))
        layer.down_proj = _switch_linear(192, 256, mode, bias, seed=3)
    else:
        layer = SwitchMLP(256, 192, 8)
        layer.fc1 = _switch_linear(256, 192, mode, bias, seed=4)
        layer.fc2 = _switch_linear(192, 256, mode, bias, seed=5)
    assert dequant_matmul.computes(layer)
    mx.random.seed(6)
    x = mx.random.normal((90, 256))
    slots = np.sort(np.random.default_rng(0).integers(0, 8, size=90))  # adjacent rows per expert, as the switch gives
    want = layer(x, mx.array(slots[:, None].astype(np.uint32)))  # gather_qmm, one row per pair
    products = []
    real = dequant_matmul.matmul
    monkeypatch.setattr(dequant_matmul, "matmul", lambda x, *a, **k: products.append(x.shape[0]) or real(x, *a, **k))
    got = dequant_matmul.expert_rows(layer, x, slots)
    assert got.shape == want.shape == (90, 1, 256)
    # Each expert's rows as one product per projection.
    _, rows = np.unique(slots, return_counts=True)
    assert products == [n for n in rows.tolist() for _ in range(3 if kind == "glu" else 2)]
    # fp32 both ways, summed in another order: a few units in the last place of the largest output.
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=0, atol=1e-5 * float(mx.abs(want).max()))


def test_only_mlx_lm_switch_layers_on_quantized_projections_are_computed_expert_by_expert():
    assert not dequant_matmul.computes(SwitchGLU(64, 32, 4))  # not quantized
    assert not dequant_matmul.computes(nn.Linear(4, 4))


def test_pairs_cut_on_whole_experts_keep_each_expert_in_one_part():
    experts = np.array([5, 1, 5, 0, 1, 1, 9, 0, 5, 2, 2, 2])
    positions = np.arange(len(experts))
    parts = cpu_split.cut_pairs(positions, experts, 2, whole_experts=True)
    assert sorted(np.concatenate(parts).tolist()) == positions.tolist()
    # In expert order 0 0 1 1 1 | 2 2 2 5 5 5 9: the boundary nearest the middle (5 and 7 pairs).
    assert [sorted(set(experts[p].tolist())) for p in parts] == [[0, 1], [2, 5, 9]]
    assert len(cpu_split.cut_pairs(positions, np.zeros(12, dtype=int), 3, whole_experts=True)) == 1
    assert len(cpu_split.cut_pairs(positions[:1], experts[:1], 4, whole_experts=True)) == 1


@needs_openblas
@pytest.mark.parametrize("arch", ARCHS)
def test_a_prefill_takes_the_dequantizing_path_and_matches_resident_mlx_lm(checkpoints, arch, monkeypatch):
    calls = []
    real, real_on = dequant_matmul.matmul, dequant_matmul._product_on
    monkeypatch.setattr(dequant_matmul, "matmul", lambda x, *a, **k: calls.append(x.shape) or real(x, *a, **k))
    # Experts unpacked on the compiled kernel (cpu_quantized.py) multiply their unpacked weights here instead.
    monkeypatch.setattr(dequant_matmul, "_product_on", lambda x, *a: calls.append(x.shape) or real_on(x, *a))
    prompt = random_prompt(300, seed=11)
    want_tokens, want_logits = greedy_with_logits(resident_reference(checkpoints, arch), prompt, 8)
    calls.clear()  # resident mlx-lm never takes it
    with llm_engine.load(checkpoints.streamed(arch)) as engine:
        got_tokens, got_logits = greedy_with_logits(engine.model, prompt, 8)
        assert got_tokens == want_tokens
        np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=1e-4)
        # Both kinds of layer take it in a prefill (a 300-row linear, an expert's rows); a decode step does not.
        calls.clear()
        cache = make_prompt_cache(engine.model)
        mx.eval(engine.model(mx.array(prompt)[None], cache=cache))
        assert any(shape[-2] == 300 for shape in calls) and any(shape[-2] < 300 for shape in calls)
        calls.clear()
        mx.eval(engine.model(mx.array([[got_tokens[0]]]), cache=cache))
        assert calls == []


@needs_openblas
def test_a_layer_too_large_to_dequantize_at_once_keeps_the_quantized_kernel(monkeypatch):
    """An output head of a large vocabulary met with many rows (a batch of 16, a quality measurement).
    (MLX's kernel where there is no Numba; with it, cpu_quantized.py's kernel: switched off here.)"""
    monkeypatch.setenv("ALMANAC_CPU_KERNELS", "off")
    assert dequant_matmul.small_enough(4096, 2048) and not dequant_matmul.small_enough(32000, 2048)
    monkeypatch.setattr(dequant_matmul, "MAX_DEQUANTIZED_BYTES", 256 * 64 * 4)  # a 256x64 layer fits, no more
    calls = []
    real = dequant_matmul.matmul
    monkeypatch.setattr(dequant_matmul, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    mx.random.seed(9)
    x = mx.random.normal((1, 40, 64))
    for features, dequantized in ((256, True), (320, False)):
        layer = nn.QuantizedLinear(64, features, bias=False, group_size=64, bits=4)
        want = layer(x)
        cpu_split.split_linears(nn.Sequential(layer), 1)
        calls.clear()
        got = layer(x)
        assert bool(calls) == dequantized
        if not dequantized:
            assert np.array_equal(np.array(got), np.array(want))  # the quantized kernel's own bits


def test_the_memory_plan_holds_one_dequantized_expert_per_cpu_part(checkpoints):
    from llm_engine import manifest as mf
    from llm_engine.memory import dequantized_expert_bytes, plan_memory

    path = checkpoints.streamed("qwen3_moe")
    layer = mf.read_manifest(path).layers[0]
    widths = {t.name: t.shape for t in layer.tensors if t.name.endswith(".weight")}
    assert dequantized_expert_bytes(mf.read_manifest(path)) == sum(r * c * 8 * 4 for r, c in widths.values())
    one, four = (plan_memory(path, 8 << 30, 0, parts=n).working for n in (1, 4))
    assert four - one == 3 * dequantized_expert_bytes(mf.read_manifest(path))
