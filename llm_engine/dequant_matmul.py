"""Many-row quantized products as dequantize + matmul, on the CPU when MLX's BLAS is OpenBLAS.

MLX's quantized_matmul and gather_qmm run a kernel of their own on the CPU, one thread, whatever the
BLAS: 1.33 s for a 1,500-row prefill's 768x2048 4-bit product. Dequantizing the weights (~5 ns a
weight) and multiplying on OpenBLAS (cpu_blas.py) takes 16 ms there; with few rows it is slower (the
kernel costs ~0.6 ns per row and weight, so the two meet near 9 rows). So a product with at least
MIN_ROWS rows per weight matrix is computed this way, when cpu_blas bound OpenBLAS:

- a linear layer (cpu_split.SplitQuantizedLinear, the output head included): when its input has
  MIN_ROWS rows or more;
- a switch layer's projections (mlx-lm's QuantizedSwitchLinear, given the class
  DequantizingSwitchLinear by install()): when StreamingSwitch finds that its call has MIN_ROWS
  (token, expert) pairs per routed expert or more, it sets `by_dequantize` on them for that call,
  and each expert's rows are then one matmul on its dequantized weights.

A decode step (one row a sequence, a few sequences) keeps the quantized kernel and its bits. This
path is not the same bits as that kernel (fp32 both, another order of summation: 4e-4 in 267 on the
bench's shapes), so tests/engine/test_parity.py holds it to resident mlx-lm within the 1e-4 logit
bound. With one BLAS thread and MIN_ROWS rows or more, a row's result does not depend on which
output features share its call (tests/engine/test_dequant_matmul.py checks that; for a very few rows
OpenBLAS takes other kernels, so an expert's rows are never split between parts), and an engine cut
into CPU parts gives the same bits as one part on this path too (tests/engine/test_cpu_split.py).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.switch_layers import QuantizedSwitchLinear

from . import cpu_blas
from .device import on_cpu

# Rows per weight matrix from which dequantize + matmul is taken (the break-even is near 9 on the
# bench's shapes; above it the dequantized path wins by up to 80x).
MIN_ROWS = 16


def enabled() -> bool:
    """True when many-row quantized products go through dequantize + matmul in this process."""
    return cpu_blas.bound() and on_cpu()


def many_rows(x: mx.array) -> bool:
    return x.size >= MIN_ROWS * x.shape[-1]


def dequantize(weight, scales, biases, group_size: int, bits: int, mode: str, global_scale=None) -> mx.array:
    """mx.dequantize, with the same bits; affine 2-, 4- and 8-bit weights (a whole number of values per
    32-bit word) are unpacked with shifts and masks instead, ~1.7x faster on the CPU (the dequantize
    kernel is the larger part of a prefill's expert products)."""
    if mode != "affine" or 32 % bits or global_scale is not None or biases is None:
        return mx.dequantize(weight, scales, biases, group_size, bits, mode=mode, global_scale=global_scale)
    per_word = 32 // bits
    shifts = mx.arange(0, 32, bits, dtype=mx.uint32)
    values = (weight[..., None] >> shifts) & ((1 << bits) - 1)  # (..., words, per_word), low bits first
    values = values.reshape(*weight.shape[:-1], -1, group_size).astype(scales.dtype)
    w = values * scales[..., None] + biases[..., None]
    return w.reshape(*weight.shape[:-1], weight.shape[-1] * per_word)


def matmul(x: mx.array, weight, scales, biases, group_size: int, bits: int, mode: str, global_scale=None):
    """x @ W.T for the quantized W, as one BLAS matmul over all of x's rows."""
    w = dequantize(weight, scales, biases, group_size, bits, mode, global_scale)
    rows = x.reshape(-1, x.shape[-1]) @ w.T
    return rows.reshape(*x.shape[:-1], w.shape[0])


class DequantizingSwitchLinear(QuantizedSwitchLinear):
    """mlx-lm's QuantizedSwitchLinear that, while `by_dequantize` is set, computes each expert's rows
    of the call as one matmul on that expert's dequantized weights (same shapes in and out)."""

    by_dequantize = False

    def __call__(self, x, indices, sorted_indices=False):
        if not self.by_dequantize:
            return super().__call__(x, indices, sorted_indices)
        shape, width = indices.shape, x.shape[-1]
        # One row per (token, expert) pair, as gather_qmm broadcasts them.
        rows = mx.broadcast_to(x, (*shape, 1, width)).reshape(-1, width)
        experts = np.asarray(indices).reshape(-1)
        order = np.argsort(experts, kind="stable")
        in_order = bool((order[1:] > order[:-1]).all())  # mlx-lm sorted them (calls of 64 pairs or more)
        if not in_order:
            rows = rows[mx.array(order)]
            experts = experts[order]
        starts = np.flatnonzero(np.r_[True, experts[1:] != experts[:-1]])
        biases = self.get("biases")
        outs = []
        for a, b in zip(starts, np.r_[starts[1:], len(experts)]):
            e = int(experts[a])
            y = matmul(
                rows[int(a) : int(b)],
                self["weight"][e],
                self["scales"][e],
                None if biases is None else biases[e],
                self.group_size,
                self.bits,
                self.mode,
                self.global_scale,
            )
            if "bias" in self:
                y = y + self["bias"][e]
            outs.append(y)
        out = mx.concatenate(outs)
        if not in_order:
            out = out[mx.array(np.argsort(order))]
        return out.reshape(*shape, 1, out.shape[-1])


def install(layer: nn.Module) -> list:
    """Give `layer`'s quantized switch projections the class above (their parameters, names and
    isinstance checks stay as they were); returns them, for the caller to set `by_dequantize` on."""
    found = []
    for _, module in layer.named_modules():
        if type(module) is QuantizedSwitchLinear:
            module.__class__ = DequantizingSwitchLinear
            found.append(module)
    return found
