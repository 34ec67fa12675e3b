"""A prefill's attention on the CPU: cut by key/value heads over the CPU streams, in blocks of rows.

MLX's CPU attention is a composition of ops (scores, mask, softmax, product) on one thread. Two
things make a long prompt's attention faster, both only inside the engine model's own calls:

- cut by groups of key/value heads, each group on its own CPU stream (cpu_split.streams): a query
  head depends only on its key/value head, so this gives the same bits (2x on a layer of 1,500
  tokens on two cores);
- where the prefill already takes OpenBLAS's path (dequant_matmul.enabled()), a causal call is
  computed in blocks of BLOCK_ROWS query rows, each against only the keys it may see: half the
  scores and exponentials of the full square (1.8x on that layer). Without attention sinks, each
  block is two products on the streams with its mask and softmax between them in numpy, on the
  host (_softmax_on_host): MLX's CPU exp is scalar (~14 ns an element, most of the attention),
  numpy's vectorised (~0.7 ns): 0.21 s instead of 0.68 s for a 1,500-token layer on two cores.
  The softmax and the product then sum over fewer zeros, in other code, so the result differs from
  the full square in the last bits (2e-7 of the largest output on that layer), within the 1e-4
  bound that path is held to (tests/engine/test_parity.py).

mlx-lm's models call mlx_lm.models.base.scaled_dot_product_attention by the name they import;
cut_attention() wraps that name in the modules the model's layers come from, and gives the model a
class whose calls set the parts (a context variable). Any other model in the process (resident
mlx-lm in the tests and benchmarks) calls the wrapper with no parts set, which is the original.
"""

from __future__ import annotations

import contextvars
import inspect
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from . import dequant_matmul
from .cpu_split import on, streams

# Query rows from which a call's attention is cut (a prefill; a decode step's is small).
ATTENTION_ROWS = 16
# Query rows per block of a causal prefill (the fastest of 128, 256 and 512 on 1,500 tokens).
BLOCK_ROWS = 128
# The streams of the engine model's call now running; empty outside its calls.
_attention_parts: contextvars.ContextVar = contextvars.ContextVar("almanac_attention_parts", default=())
_ARGUMENTS = {"queries", "keys", "values", "cache", "scale", "mask", "sinks"}


def _even_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    parts = min(parts, n)
    edges = [round(n * i / parts) for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _attend(q, k, v, scale, mask, sinks, blocks: bool) -> mx.array:
    """MLX's attention, in blocks of query rows against the keys each may see when `blocks`."""
    rows, keys = q.shape[2], k.shape[2]
    if not blocks:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask, sinks=sinks)
    offset = keys - rows  # MLX's causal mask: query i sees the keys up to offset + i
    outs = []
    for a in range(0, rows, BLOCK_ROWS):
        b = min(rows, a + BLOCK_ROWS)
        seen = mx.arange(offset + b)[None] <= mx.arange(offset + a, offset + b)[:, None]
        outs.append(
            mx.fast.scaled_dot_product_attention(
                q[:, :, a:b], k[:, :, : offset + b], v[:, :, : offset + b], scale=scale, mask=seen, sinks=sinks
            )
        )
    return mx.concatenate(outs, axis=2)


def _upper(rows: int) -> np.ndarray:
    """The keys a block's query rows may not see in its own square: row i, columns after i."""
    return np.triu(np.ones((rows, rows), dtype=bool), k=1)


def _softmax_on_host(scores: mx.array, diagonal: int) -> mx.array:
    """Causal mask and softmax of a block's evaluated scores (..., rows, keys) in place, in numpy (its
    vectorised exp is ~20x MLX's CPU exp, which is most of a long prompt's attention otherwise); the
    block's own square starts at key `diagonal`. Returns the same array, now holding the probabilities."""
    view = np.asarray(scores)  # MLX's buffer: the array is evaluated and nothing else is pending on it
    rows = view.shape[-2]
    view[..., diagonal : diagonal + rows][..., _upper(rows)] = -np.inf
    view -= view.max(axis=-1, keepdims=True)
    np.exp(view, out=view)
    view /= view.sum(axis=-1, keepdims=True)
    return scores


def _attend_causal_blocks(queries, keys, values, scale, parts: list) -> mx.array:
    """A causal prefill's attention in blocks of BLOCK_ROWS query rows against the keys each may see, its key/
    value head groups on the CPU streams `parts` for the products, its softmax on the host (_softmax_on_host);
    each block's scores are computed while the one before is normalised. queries (B, H, L, D), keys/values
    (B, KV, N, D) with N >= L: query i sees the keys up to N - L + i."""
    b_, heads, rows, dim = queries.shape
    kv_heads, n_keys = keys.shape[1], keys.shape[2]
    per_kv = heads // kv_heads
    offset = n_keys - rows
    groups = list(zip(_even_ranges(kv_heads, len(parts)), parts))
    q = (queries * scale).reshape(b_, kv_heads, per_kv, rows, dim)
    k, v = keys[:, :, None], values[:, :, None]

    def scores(a: int, b: int) -> list:
        out = []
        for (lo, hi), stream in groups:
            with on(stream):
                out.append(q[:, lo:hi, :, a:b] @ k[:, lo:hi, :, : offset + b].swapaxes(-1, -2))
        mx.async_eval(out)
        return out

    starts = list(range(0, rows, BLOCK_ROWS))
    blocks, ahead = [], scores(0, min(rows, BLOCK_ROWS))
    for i, a in enumerate(starts):
        b = min(rows, a + BLOCK_ROWS)
        now = ahead
        if i + 1 < len(starts):
            ahead = scores(b, min(rows, b + BLOCK_ROWS))
        outs = []
        for s, ((lo, hi), stream) in zip(now, groups):
            p = _softmax_on_host(s, offset + a)
            with on(stream):
                outs.append(p @ v[:, lo:hi, :, : offset + b])
            mx.async_eval(outs[-1])
        blocks.append(mx.concatenate(outs, axis=1))
    return mx.concatenate(blocks, axis=3).reshape(b_, heads, rows, dim)


def _cut_sdpa(original):
    """mlx-lm's scaled_dot_product_attention, cut and blocked as above while parts are set."""
    signature = inspect.signature(original)

    def scaled_dot_product_attention(queries, keys, values, *args, **kwargs):
        parts = _attention_parts.get()
        if not parts or queries.shape[2] < ATTENTION_ROWS:
            return original(queries, keys, values, *args, **kwargs)
        call = signature.bind(queries, keys, values, *args, **kwargs)
        call.apply_defaults()
        a = call.arguments
        if hasattr(a.get("cache"), "bits") or set(a) - _ARGUMENTS:  # a quantized KV cache: its own kernel
            return original(queries, keys, values, *args, **kwargs)
        heads, kv_heads = queries.shape[1], keys.shape[1]
        mask, sinks = a.get("mask"), a.get("sinks")
        blocks = dequant_matmul.enabled() and isinstance(mask, str) and mask == "causal"
        if blocks and sinks is None and heads % kv_heads == 0:
            return _attend_causal_blocks(queries, keys, values, a["scale"], list(parts))
        if kv_heads < 2 or heads % kv_heads or len(parts) < 2:
            return _attend(queries, keys, values, a["scale"], mask, sinks, blocks)
        per_kv = heads // kv_heads
        outs = []
        for (lo, hi), stream in zip(_even_ranges(kv_heads, len(parts)), parts):
            q = slice(lo * per_kv, hi * per_kv)
            m = mask[:, q] if isinstance(mask, mx.array) and mask.ndim == 4 and mask.shape[1] == heads else mask
            with on(stream):
                s = None if sinks is None else sinks[q]
                outs.append(_attend(queries[:, q], keys[:, lo:hi], values[:, lo:hi], a["scale"], m, s, blocks))
        return mx.concatenate(outs, axis=1)

    scaled_dot_product_attention.almanac_original = original
    return scaled_dot_product_attention


_classes: dict = {}


def _class_setting_parts(cls):
    """A subclass of the model's class (same name) whose calls run with the model's parts set."""
    if cls not in _classes:

        def __call__(self, *args, **kwargs):
            token = _attention_parts.set(self._attention_parts)
            try:
                return cls.__call__(self, *args, **kwargs)
            finally:
                _attention_parts.reset(token)

        _classes[cls] = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})
    return _classes[cls]


def cut_attention(model: nn.Module, n: int) -> int:
    """Give the model's prefill attention n parts (and blocks, on OpenBLAS's path); returns how many
    mlx-lm modules' scaled_dot_product_attention it goes through (0: nothing to do, as on a GPU)."""
    if n < 2 and not dequant_matmul.enabled():
        return 0
    found = 0
    for name in sorted({type(m).__module__ for _, m in model.named_modules()}):
        module = sys.modules.get(name)
        sdpa = getattr(module, "scaled_dot_product_attention", None)
        if sdpa is None:
            continue
        if not hasattr(sdpa, "almanac_original"):
            module.scaled_dot_product_attention = _cut_sdpa(sdpa)
        found += 1
    if found:
        object.__setattr__(model, "_attention_parts", tuple(streams(n)))
        model.__class__ = _class_setting_parts(type(model))
    return found


def prefill_attention(queries: mx.array, keys: mx.array, values: mx.array, scale: float, parts: int) -> mx.array:
    """A causal prefill's attention as the engine computes it with `parts` CPU parts (forecast.py times it)."""
    from mlx_lm.models import base

    token = _attention_parts.set(tuple(streams(parts)))
    try:
        return _cut_sdpa(base.scaled_dot_product_attention)(queries, keys, values, None, scale, "causal")
    finally:
        _attention_parts.reset(token)
