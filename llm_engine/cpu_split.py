"""Spreading the CPU's work over its cores, with the same bits as one call.

MLX's CPU backend runs each quantized kernel on one thread: the thread of the stream it is
queued on. Two independent pieces of work queued on two CPU streams run at once, one core
each. Three cuts give such pieces without changing a single bit of the result:

- a quantized matmul's output feature depends only on the input row and that feature's row of
  the weights, so its output features can be cut into ranges computed on separate streams and
  concatenated (the attention projections, dense and shared-expert MLPs, the output head);
- a switch layer's (token, expert) pair depends only on its token and its expert (one row times
  one expert's matrices, M = 1 in the gather kernel either way), so a call's pairs can be cut
  into parts (switch.py);
- attention's query heads depend only on their own key/value head, so a prefill's attention
  can be cut by groups of key/value heads (cpu_attention.py).

tests/engine/test_cpu_split.py checks a cut engine against one thread, bit for bit, and
tests/engine/test_parity.py against resident mlx-lm, on the five architectures. On a GPU
nothing is cut (one kernel already uses the whole device, and its kernels are picked by
shape): `parts_for()` is 1 there.
"""

from __future__ import annotations

import contextlib
import os

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from . import cpu_quantized, dequant_matmul
from .device import compiled_kernels, on_cpu

# A cut of a matmul's output features falls on a multiple of this many features, and a
# layer with fewer than two such blocks is not cut (too little work to be worth a stream).
FEATURE_BLOCK = 64

_extra_streams: list = []


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def parts_for(cpu_threads: int | None) -> int:
    """The parts for load(cpu_threads=...): that many on the CPU (None: one per core), 1 on a GPU."""
    return (cpu_threads or _cores()) if on_cpu() else 1


def streams(n: int) -> list:
    """n places to queue work: the current default stream (None) and n - 1 other CPU streams,
    made once per process and shared by every engine."""
    while len(_extra_streams) < n - 1:
        _extra_streams.append(mx.new_stream(mx.cpu))
    return [None] + _extra_streams[: n - 1]


def on(stream):
    """A context queuing MLX work on `stream` (None: where it would go anyway)."""
    return contextlib.nullcontext() if stream is None else mx.stream(stream)


def cut_features(n_features: int, n: int) -> list[tuple[int, int]]:
    """Up to n ranges covering [0, n_features), cut on FEATURE_BLOCK boundaries."""
    blocks = n_features // FEATURE_BLOCK
    n = min(n, blocks)
    if n < 2:
        return [(0, n_features)]
    edges = [round(blocks * i / n) * FEATURE_BLOCK for i in range(n)] + [n_features]
    return list(zip(edges[:-1], edges[1:]))


def cut_pairs(positions: np.ndarray, experts: np.ndarray, n: int, whole_experts: bool = False) -> list[np.ndarray]:
    """Cut a switch call's pairs (their positions and experts) into up to n parts of nearly
    equal size, in expert order, so each part touches its own few experts' weights. With
    whole_experts, every cut falls between two experts (the dequantizing path then dequantizes
    each expert once)."""
    by_expert = np.argsort(experts, kind="stable")
    order = positions[by_expert]
    n = min(n, len(order))
    if not whole_experts or n < 2:
        return [p for p in np.array_split(order, n) if len(p)]
    ranked = experts[by_expert]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # where each expert's pairs begin
    targets = np.arange(1, n) * len(order) / n
    cuts = np.unique(starts[np.abs(starts[:, None] - targets[None, :]).argmin(axis=0)])
    return [p for p in np.split(order, cuts[cuts > 0]) if len(p)]


def _matmul_by_parts(module, x: mx.array, ranges, parts: list) -> mx.array:
    weight, scales, biases = module["weight"], module["scales"], module.get("biases")
    dequantizing = (
        dequant_matmul.enabled()
        and dequant_matmul.many_rows(x)
        and dequant_matmul.small_enough(weight.shape[0], x.shape[-1])
    )
    threads = module._kernel_threads
    # The kernel computes at once, where MLX computes only what is used: a prefill chunk's output head
    # (its logits are dropped; a decode step's are one position per sequence) stays with MLX.
    discarded = module._head and x.ndim > 1 and x.shape[-2] > 1
    if (
        not dequantizing
        and threads
        and not discarded
        and cpu_quantized.supports(x.dtype, weight, scales, biases, module.group_size, module.bits, module.mode)
    ):  # a decode step's few rows: the compiled kernel, one thread per CPU part of the engine
        return cpu_quantized.matmul(x, weight, scales, biases, module.group_size, module.bits, threads)
    outs = []
    for (lo, hi), stream in zip(ranges, parts):
        with on(stream):
            if dequantizing:  # a prefill on OpenBLAS (dequant_matmul.py)
                outs.append(
                    dequant_matmul.matmul(
                        x,
                        weight[lo:hi],
                        scales[lo:hi],
                        None if biases is None else biases[lo:hi],
                        module.group_size,
                        module.bits,
                        module.mode,
                    )
                )
                continue
            outs.append(
                mx.quantized_matmul(
                    x,
                    weight[lo:hi],
                    scales=scales[lo:hi],
                    biases=None if biases is None else biases[lo:hi],
                    transpose=True,
                    group_size=module.group_size,
                    bits=module.bits,
                    mode=module.mode,
                )
            )
    return mx.concatenate(outs, axis=-1)


class SplitQuantizedLinear(nn.QuantizedLinear):
    """nn.QuantizedLinear whose output features are computed in parts on separate CPU streams.

    Installed by changing the class of a loaded layer (split_linears), so its parameters, their
    names and every isinstance check stay as they were."""

    def __call__(self, x):
        y = _matmul_by_parts(self, x, self._ranges, self._parts)
        if "bias" in self:
            y = y + self["bias"]
        return y


class SplitQuantizedEmbedding(nn.QuantizedEmbedding):
    """nn.QuantizedEmbedding whose use as the output head (tied weights) is cut as above; the
    embedding lookup itself is unchanged."""

    def as_linear(self, x):
        return _matmul_by_parts(self, x, self._ranges, self._parts)


_SPLIT_CLASSES = {nn.QuantizedLinear: SplitQuantizedLinear, nn.QuantizedEmbedding: SplitQuantizedEmbedding}


def split_linears(model: nn.Module, n: int) -> int:
    """Cut every quantized linear layer of `model` (and a quantized embedding, for a tied output
    head) into up to n parts; returns how many layers were cut. Switch layers are other classes
    and are left alone (switch.py cuts their pairs). When prefills dequantize (dequant_matmul.py) or
    few rows take the compiled kernel (cpu_quantized.py), the layers left whole get the class too, in
    one part: it is where those paths are taken."""
    compiled = compiled_kernels()
    uncut_too = dequant_matmul.enabled() or compiled
    if n < 2 and not uncut_too:
        return 0
    parts = streams(n)
    cut = 0
    for name, module in model.named_modules():
        split_class = _SPLIT_CLASSES.get(type(module))
        if split_class is None:
            continue
        ranges = cut_features(module["weight"].shape[0], n)
        if len(ranges) < 2 and not uncut_too:
            continue
        object.__setattr__(module, "_ranges", ranges)
        object.__setattr__(module, "_parts", parts[: len(ranges)])
        object.__setattr__(module, "_kernel_threads", n if compiled else 0)
        object.__setattr__(module, "_head", name.endswith("lm_head") or split_class is SplitQuantizedEmbedding)
        module.__class__ = split_class
        cut += len(ranges) > 1
    return cut
