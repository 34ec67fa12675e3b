"""Many-row quantized products as dequantize + matmul, on the CPU when MLX's BLAS is OpenBLAS.

MLX's quantized_matmul and gather_qmm run a kernel of their own on the CPU, one thread, whatever the
BLAS: 1.33 s for a 1,500-row prefill's 768x2048 4-bit product. Dequantizing the weights (1.3-4 ns a
weight, see dequantize) and multiplying on OpenBLAS (cpu_blas.py) takes 16 ms there; with few rows it is
slower (the kernel costs ~0.6 ns per row and weight, so the two meet at a few rows). So a product with at least
MIN_ROWS rows per weight matrix is computed this way, when cpu_blas bound OpenBLAS:

- a linear layer (cpu_split.SplitQuantizedLinear) of at most MAX_DEQUANTIZED_BYTES dequantized: when
  its input has MIN_ROWS rows or more;
- a switch layer (mlx-lm's SwitchGLU or SwitchMLP): when StreamingSwitch finds that its call has
  MIN_ROWS (token, expert) pairs per routed expert or more, it computes the call expert by expert
  (expert_rows): each expert's rows one matmul per projection on its dequantized weights, the
  layer's own activation between them, with no wait for the device (the pairs' experts are known on
  the host).

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
from mlx_lm.models.switch_layers import QuantizedSwitchLinear, SwitchGLU, SwitchMLP

from . import cpu_quantized, memory
from .device import compiled_kernels, prefill_dequantizes

# The largest linear layer dequantized at once (MLX keeps a call's temporaries to its end), as the
# memory plan reserves it.
MAX_DEQUANTIZED_BYTES = memory.MAX_DEQUANTIZED_BYTES
# Rows per weight matrix from which dequantize + matmul is taken (the break-even is a few rows on the
# bench's shapes; above it the dequantized path wins by up to 80x).
MIN_ROWS = 16


def enabled() -> bool:
    """True when many-row quantized products go through dequantize + matmul in this process."""
    return prefill_dequantizes()


def many_rows(x: mx.array) -> bool:
    return x.size >= MIN_ROWS * x.shape[-1]


def small_enough(out_features: int, in_features: int) -> bool:
    """True when the layer's weights dequantized (fp32) fit in MAX_DEQUANTIZED_BYTES: an output head of a
    large vocabulary (a 32,000-row head is 262 MB, Qwen3's 1.2 GB) keeps the quantized kernel, which it
    only meets with many rows in a batch of 16+ or a quality measurement (a prefill computes one row)."""
    return out_features * in_features * 4 <= MAX_DEQUANTIZED_BYTES


def dequantize(weight, scales, biases, group_size: int, bits: int, mode: str, global_scale=None) -> mx.array:
    """mx.dequantize, with the same bits; affine 2-, 4- and 8-bit weights (a whole number of values per
    32-bit word) are unpacked with shifts and masks instead, 1.4-1.7x faster on the CPU (the dequantize
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


def _expert_product(projection, x: mx.array, slot: int) -> mx.array:
    """One expert's rows through one of mlx-lm's quantized switch projections, dequantized."""
    biases = projection.get("biases")
    y = matmul(
        x,
        projection["weight"][slot],
        projection["scales"][slot],
        None if biases is None else biases[slot],
        projection.group_size,
        projection.bits,
        projection.mode,
        getattr(projection, "global_scale", None),
    )
    return y + projection["bias"][slot] if "bias" in projection else y


def computes(layer: nn.Module) -> bool:
    """True for the switch layers expert_rows computes: mlx-lm's SwitchGLU and SwitchMLP on
    quantized projections (every MoE architecture the engine supports)."""
    names = {SwitchGLU: ("gate_proj", "up_proj", "down_proj"), SwitchMLP: ("fc1", "fc2")}.get(type(layer), ())
    return bool(names) and all(isinstance(getattr(layer, n, None), QuantizedSwitchLinear) for n in names)


def expert_rows(layer: nn.Module, x: mx.array, slots: np.ndarray) -> mx.array:
    """What `layer` (a switch layer that computes() accepts) gives row i of x (rows, hidden) through
    the expert in its bank slot slots[i], with each expert's rows as one matmul per projection on its
    dequantized weights; rows of one expert must be adjacent. Returns (rows, 1, hidden), as the layer
    would for indices of shape (rows, 1). The slots are on the host: nothing waits for the device."""
    starts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
    outs = []
    for a, b in zip(starts.tolist(), np.r_[starts[1:], len(slots)].tolist()):
        e, rows = int(slots[a]), x[a:b]
        if isinstance(layer, SwitchGLU):  # as SwitchGLU.__call__: activation(up, gate), then down
            up, gate = _expert_product(layer.up_proj, rows, e), _expert_product(layer.gate_proj, rows, e)
            outs.append(_expert_product(layer.down_proj, layer.activation(up, gate), e))
        else:  # SwitchMLP: fc2(activation(fc1))
            outs.append(_expert_product(layer.fc2, layer.activation(_expert_product(layer.fc1, rows, e)), e))
    return mx.concatenate(outs)[:, None, :]


def _projections(layer: nn.Module) -> tuple:
    return ("gate_proj", "up_proj", "down_proj") if isinstance(layer, SwitchGLU) else ("fc1", "fc2")


def unpacks(layer: nn.Module) -> bool:
    """True when expert_rows_by_parts can unpack `layer`'s experts on the compiled kernel (cpu_quantized.py):
    affine projections it supports, with fp32 scales and biases, as the CPU holds them."""
    if not (compiled_kernels() and computes(layer)):
        return False
    for name in _projections(layer):
        p = getattr(layer, name)
        if not cpu_quantized.supports(
            mx.float32, p["weight"], p["scales"], p.get("biases"), p.group_size, p.bits, p.mode
        ):
            return False
        if getattr(p, "global_scale", None) is not None:
            return False
    return True


def _product_on(x: mx.array, w: mx.array, projection, slot: int) -> mx.array:
    """As _expert_product, on the expert's weights already dequantized into w: the same operations."""
    y = (x.reshape(-1, x.shape[-1]) @ w.T).reshape(*x.shape[:-1], w.shape[0])
    return y + projection["bias"][slot] if "bias" in projection else y


def expert_rows_by_parts(layer: nn.Module, parts: list) -> list:
    """expert_rows for each part (stream, x, slots) on its CPU stream, the same bits, with each expert's weights
    unpacked by the compiled kernel (cpu_quantized.dequantize_into, mx.dequantize's bits, 7x faster than
    MLX's element-wise unpacking) into a buffer of its part's: while one part's stream multiplies, the next
    expert of another is unpacked. A part's buffer is written again only once its previous expert's rows are
    computed, so one dequantized expert per part is held (as the memory plan reserves), freed at return."""
    from .cpu_split import on

    names = _projections(layer)
    glu = isinstance(layer, SwitchGLU)
    projections = [getattr(layer, n) for n in names]
    packed = [tuple(np.asarray(p[k]) for k in ("weight", "scales", "biases")) for p in projections]
    buffers, views = [], []
    for _ in parts:
        bufs = [mx.zeros((w.shape[1], s.shape[2] * p.group_size)) for p, (w, s, _b) in zip(projections, packed)]
        mx.eval(bufs)
        buffers.append(bufs)
        views.append([np.asarray(b) for b in bufs])
    queues = []
    for _stream, _x, slots in parts:
        starts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
        queues.append(list(zip(starts.tolist(), np.r_[starts[1:], len(slots)].tolist())))
    outs = [[] for _ in parts]
    while any(queues):
        for i, (stream, x, slots) in enumerate(parts):
            if not queues[i]:
                continue
            a, b = queues[i].pop(0)
            e = int(slots[a])
            if outs[i]:
                mx.eval(outs[i][-1])  # this part's buffers are free again
            for (w, s, bias), p, view in zip(packed, projections, views[i]):
                cpu_quantized.dequantize_into(w[e], s[e], bias[e], view, p.group_size, p.bits)
            rows, bufs = x[a:b], buffers[i]
            with on(stream):
                if glu:  # as expert_rows: activation(up, gate), then down
                    up = _product_on(rows, bufs[1], projections[1], e)
                    gate = _product_on(rows, bufs[0], projections[0], e)
                    y = _product_on(layer.activation(up, gate), bufs[2], projections[2], e)
                else:
                    y = _product_on(
                        layer.activation(_product_on(rows, bufs[0], projections[0], e)), bufs[1], projections[1], e
                    )
            mx.async_eval(y)
            outs[i].append(y)
    return [mx.concatenate(o)[:, None, :] for o in outs]
