"""A prefill's attention on the CPU (cpu_attention.py): cut by key/value heads with the same bits, in
blocks of query rows (their softmax on the host) within fp32 rounding of the full square, and only
inside the engine's calls."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models import base

import llm_engine
from llm_engine import cpu_attention, cpu_split, dequant_matmul
from llm_engine.device import on_cpu

from tinymoe import ARCHS

pytestmark = pytest.mark.skipif(not on_cpu(), reason="the CPU's attention")
SDPA = cpu_attention._cut_sdpa(base.scaled_dot_product_attention)


def _inputs(rows: int, keys: int, mask: str | None, sinks: bool):
    mx.random.seed(rows + keys)
    q = mx.random.normal((1, 8, rows, 16))
    k, v = mx.random.normal((1, 4, keys, 16)), mx.random.normal((1, 4, keys, 16))
    m = {"causal": "causal", "array": mx.random.uniform(shape=(rows, keys)) > 0.3, None: None}[mask]
    return (q, k, v), {"cache": None, "scale": 0.25, "mask": m, **({"sinks": mx.random.normal((8,))} if sinks else {})}


def _with_parts(n: int, *args, **kwargs) -> np.ndarray:
    token = cpu_attention._attention_parts.set(tuple(cpu_split.streams(n)))
    try:
        return np.array(SDPA(*args, **kwargs))
    finally:
        cpu_attention._attention_parts.reset(token)


@pytest.mark.parametrize("mask", ["causal", "array", None])
@pytest.mark.parametrize("sinks", [False, True])
@pytest.mark.parametrize("rows, keys", [(300, 300), (200, 330)])  # a prompt; a follow-up after 130 tokens
def test_cut_by_key_value_heads_gives_the_bits_of_one_part(mask, sinks, rows, keys, monkeypatch):
    args, kwargs = _inputs(rows, keys, mask, sinks)
    want = np.array(base.scaled_dot_product_attention(*args, **kwargs))
    assert np.array_equal(np.array(SDPA(*args, **kwargs)), want)  # no parts set: the original
    real, calls = mx.fast.scaled_dot_product_attention, []
    monkeypatch.setattr(
        mx.fast, "scaled_dot_product_attention", lambda q, *a, **k: calls.append(q.shape) or real(q, *a, **k)
    )
    real_softmax, softmaxes = cpu_attention._softmax_on_host, []
    monkeypatch.setattr(cpu_attention, "_softmax_on_host", lambda s, d: softmaxes.append(s.shape) or real_softmax(s, d))
    one = _with_parts(1, *args, **kwargs)
    for n in (2, 3):
        assert np.array_equal(_with_parts(n, *args, **kwargs), one), n
    blocked = dequant_matmul.enabled() and mask == "causal"
    # One part: in blocks of rows where the prefill takes OpenBLAS's path and the mask is causal; without
    # attention sinks, each block's softmax on the host (numpy) between two products, and no MLX attention.
    on_host = blocked and not sinks
    blocks = ([128, 72] if rows == 200 else [128, 128, 44]) if blocked else [rows]
    if on_host:
        assert [shape[-2] for shape in softmaxes[: len(blocks)]] == blocks and calls == []
    else:
        assert [shape[2] for shape in calls[: len(blocks)]] == blocks and softmaxes == []
    if blocked:  # each block against the keys it may see: fp32 rounding of the full square
        np.testing.assert_allclose(one, want, rtol=0, atol=1e-6 * float(np.abs(want).max()))
    else:
        assert np.array_equal(one, want)


def test_a_decode_step_and_a_quantized_cache_keep_the_original():
    args, kwargs = _inputs(1, 300, None, False)
    assert np.array_equal(_with_parts(2, *args, **kwargs), np.array(base.scaled_dot_product_attention(*args, **kwargs)))

    class QuantizedCache:  # what mlx-lm's scaled_dot_product_attention tells a quantized KV cache by
        bits, group_size = 8, 64

    seen = []
    real = base.quantized_scaled_dot_product_attention
    try:
        base.quantized_scaled_dot_product_attention = lambda *a, **k: seen.append(True) or "theirs"
        args, kwargs = _inputs(40, 40, "causal", False)
        token = cpu_attention._attention_parts.set(tuple(cpu_split.streams(2)))
        try:
            assert SDPA(*args, **{**kwargs, "cache": QuantizedCache()}) == "theirs" and seen
        finally:
            cpu_attention._attention_parts.reset(token)
    finally:
        base.quantized_scaled_dot_product_attention = real


def test_the_engine_sets_its_parts_only_inside_its_calls(checkpoints):
    with llm_engine.load(checkpoints.streamed(ARCHS[0]), cpu_threads=2) as engine:
        assert len(engine.model._attention_parts) == 2
        assert cpu_attention._attention_parts.get() == ()  # outside its calls: nothing is cut
        assert type(engine.model).__name__ == type(engine.model).__mro__[1].__name__  # the class keeps its name
