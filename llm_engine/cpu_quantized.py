"""Few-row quantized products on the CPU, on kernels compiled by Numba: a decode step's products.

MLX's CPU quantized_matmul and gather_qmm are scalar code on one thread, ~0.6 ns per weight and row
(the engine cuts them over CPU streams, cpu_split.py, for ~0.34 on two cores). A CPU decode step is
little else: one row per sequence times every dense layer's and every routed expert's weights. This
module computes the same products, x @ W.T for MLX's packed affine W (2, 4 or 8 bits; groups of 32,
64 or 128; fp32 scales and biases, as the CPU holds them), on one kernel per (bits, group size)
compiled by Numba: every core (threads over output features), vectorised over the words of a group
(x is laid out so the values that one word holds meet contiguous x), each row of W read from memory
once for all the rows that share it, the rows a few features ahead prefetched (an LLVM prefetch through
a Numba intrinsic; weights streamed from memory then go as fast as cached ones). 0.06-0.08 ns per weight
and row on the bench's shapes on two cores (bench/cpu_qmv.py), 4.5-5.4x MLX's two-stream kernel.

Each output element is computed by one thread in one fixed order, whatever the thread count or the
other rows of the call, so a row's bits do not depend on the batch it is in, on the threads, or on the
parts the engine is cut into (tests/engine/test_cpu_quantized.py). They are not the bits of MLX's
kernel (another order of summation, ~1e-6 relative); tests/engine/test_parity.py holds the engine to
resident mlx-lm within its 1e-4 logit bound on the five architectures.

Taken where device.compiled_kernels() (the CPU with Numba installed; ALMANAC_CPU_KERNELS=off keeps
MLX's kernels), for products dequant_matmul does not take (a prefill's many rows on OpenBLAS):
cpu_split.SplitQuantizedLinear's linear layers and output head, and the switch layers' projections
(CompiledSwitchLinear, installed by switch.StreamingSwitch). Anything else (other modes, bits, group
sizes or dtypes) keeps MLX's kernel: supports().

The kernels are compiled on first use (~1 s each) and cached on disk by Numba (next to this file, or
its user-wide cache when that is not writable; NUMBA_CACHE_DIR moves it: `almanac model` commands set it
to the data dir's cache/kernels).
"""

from __future__ import annotations

import functools
import threading

import mlx.core as mx
import numpy as np
from mlx_lm.models.switch_layers import QuantizedSwitchLinear

BITS = (2, 4, 8)
GROUP_SIZES = (32, 64, 128)

# One caller at a time: Numba's default thread pool may not be entered from two threads at once.
_lock = threading.Lock()


# Features ahead whose weights each product prefetches: decode's weights stream from memory, and with them
# in flight the kernel runs at its speed on cached weights (0.063 instead of 0.099 ns a weight).
PREFETCH_FEATURES = 4


@functools.cache
def _prefetch():
    """An LLVM prefetch (read, keep in all caches) of a[i, j, k], for Numba code."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, a, i, j, k):
        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, list(args[1:]), wraparound=False)
            i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8"
            )
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(a, i, j, k), codegen

    return prefetch


# The prefetch the kernels call, bound before they compile: a module global, not a closure variable, as
# Numba keys its cache by the values of a function's closure (an intrinsic's differs in every process).
_PREFETCH = None


@functools.cache
def _no_prefetch():
    import numba

    @numba.njit(inline="always")
    def no_prefetch(a, i, j, k):
        pass

    return no_prefetch


@functools.cache
def _kernel(bits: int, group_size: int):
    """The compiled product for one (bits, group size), compiled (or read from Numba's cache) here; without
    the prefetches where this LLVM does not take them."""
    global _PREFETCH
    if _PREFETCH is None:
        _PREFETCH = _prefetch()
    if _PREFETCH is not _no_prefetch():
        try:
            kernel = _compile_kernel(bits, group_size, cache=True)
            _smoke(kernel, bits, group_size)
            return kernel
        except Exception:  # a Numba or LLVM without this intrinsic: the same kernels without prefetches
            _PREFETCH = _no_prefetch()
    # Not cached: the cache holds the prefetching kernels under the same name.
    kernel = _compile_kernel(bits, group_size, cache=False)
    _smoke(kernel, bits, group_size)
    return kernel


def _smoke(kernel, bits: int, group_size: int) -> None:
    """Run the kernel once on a tiny product (this compiles it) and check it computes."""
    words = group_size * bits // 32
    x = np.ones((1, 1, 32 // bits, group_size // (32 // bits)), dtype=np.float32)
    one = np.ones((1, 1, 1), dtype=np.float32)
    out = np.zeros((1, 1), dtype=np.float32)
    index = np.zeros(1, dtype=np.int64)
    kernel(
        x,
        np.ones((1, 1), np.float32),
        index,
        np.array([0, 1]),
        index,
        np.zeros((1, 1, words), np.uint32),
        one,
        one,
        out,
    )
    if out[0, 0] != 1.0:  # every weight 0, its scale and bias 1, the group's input sum 1: 1 * 0 + 1 * 1
        raise RuntimeError("the compiled product computed the wrong value")


def _compile_kernel(bits: int, group_size: int, cache: bool):
    from numba import prange

    values_per_word = 32 // bits
    words_per_group = group_size // values_per_word
    mask = np.uint32((1 << bits) - 1)
    ahead = PREFETCH_FEATURES

    def product(xp, xsum, order, seg_start, seg_expert, weight, scales, biases, out):
        """out[order[p]] = x[p] @ W[e].T for the rows p of each segment and its expert e.

        xp: (rows, groups, values_per_word, words_per_group) fp32, the rows in segment order, laid out
        so that xp[p, g, n, j] is the input value that bits n*bits.. of word j of group g multiply;
        xsum: (rows, groups) each group's input sum (for the biases); weight: (experts, features, words)
        uint32; scales, biases: (experts, features, groups) fp32; out: (rows, features) fp32."""
        features, groups, words = weight.shape[1], scales.shape[2], weight.shape[2]
        for item in prange(seg_expert.shape[0] * features):
            s = item // features
            f = item - s * features
            e = seg_expert[s]
            if f + ahead < features:  # a later feature's weights, one 64-byte line at a time
                for c in range(0, words, 16):
                    _PREFETCH(weight, e, f + ahead, c)
                for c in range(0, groups, 16):
                    _PREFETCH(scales, e, f + ahead, c)
                    _PREFETCH(biases, e, f + ahead, c)
            for p in range(seg_start[s], seg_start[s + 1]):
                acc = np.float32(0.0)
                for g in range(groups):
                    dot = np.float32(0.0)
                    for j in range(words_per_group):
                        word = weight[e, f, g * words_per_group + j]
                        for n in range(values_per_word):
                            dot += xp[p, g, n, j] * np.float32((word >> np.uint32(bits * n)) & mask)
                    acc += scales[e, f, g] * dot + biases[e, f, g] * xsum[p, g]
                out[order[p], f] = acc

    return _jit(product, cache, parallel=True, fastmath=True, nogil=True)


@functools.cache
def _unpacker(bits: int, group_size: int):
    """The compiled dequantize for one (bits, group size): one thread (it runs beside the CPU streams)."""

    values_per_word = 32 // bits
    words_per_group = group_size // values_per_word
    mask = np.uint32((1 << bits) - 1)

    def unpack(weight, scales, biases, out):
        """out = scales * q + biases for MLX's packed affine weight (features, words): mx.dequantize's bits
        (the same fp32 multiply, then add; no fastmath)."""
        features, groups = scales.shape
        for f in range(features):
            for g in range(groups):
                s, b = scales[f, g], biases[f, g]
                for j in range(words_per_group):
                    word = weight[f, g * words_per_group + j]
                    base = g * group_size + j * values_per_word
                    for n in range(values_per_word):
                        out[f, base + n] = np.float32((word >> np.uint32(bits * n)) & mask) * s + b

    return _jit(unpack, True, nogil=True)


def prepare(modules, unpacking: bool) -> list[tuple[int, int]]:
    """Compile (or read from Numba's cache) every kernel the quantized layers among `modules` will call, and
    start Numba's threads, as the model loads: otherwise the first request pays for it (~0.3 s from the
    cache, seconds to compile). unpacking: also the dequantize a prefill on OpenBLAS unpacks the switch
    layers' experts with. Returns the (bits, group size) of the products prepared."""
    import mlx.nn as nn

    def kinds(*types):
        return {
            (m.bits, m.group_size)
            for m in modules
            if isinstance(m, types)
            and getattr(m, "mode", "affine") == "affine"
            and m.bits in BITS
            and m.group_size in GROUP_SIZES
        }

    products = sorted(kinds(nn.QuantizedLinear, nn.QuantizedEmbedding, QuantizedSwitchLinear))
    for bits, group_size in products:
        _kernel(bits, group_size)
    for bits, group_size in sorted(kinds(QuantizedSwitchLinear)) if unpacking else ():
        one = np.ones((1, 1), np.float32)
        out = np.empty((1, group_size), np.float32)
        _unpacker(bits, group_size)(np.zeros((1, group_size * bits // 32), np.uint32), one, one, out)
    return products


def _jit(function, cache: bool, **options):
    """numba.njit(function), cached on disk when `cache` and a cache directory is writable (else compiled in
    every process)."""
    import numba

    if cache:
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # no writable cache directory
            pass
    return numba.njit(**options)(function)


def dequantize_into(
    weight: np.ndarray, scales: np.ndarray, biases: np.ndarray, out: np.ndarray, group_size: int, bits: int
):
    """Write mx.dequantize(weight, scales, biases, group_size, bits) into `out` (features, width) fp32, with its
    bits, on the calling thread (the GIL released): ~0.2 ns a weight, 7x MLX's element-wise unpacking."""
    _unpacker(bits, group_size)(weight, scales, biases, out)


def describe() -> str:
    """Which kernels a CPU decode runs on, for `almanac doctor` and `model serve`."""
    import os

    from .device import compiled_kernels

    if compiled_kernels():
        from importlib.metadata import version

        return f"decode kernels compiled by Numba {version('numba')}"
    if os.environ.get("ALMANAC_CPU_KERNELS", "").lower() == "off":
        return "MLX's decode kernels (ALMANAC_CPU_KERNELS=off)"
    return "MLX's decode kernels (no Numba here: pip install numba, 2-3x faster CPU decode)"


def supports(x_dtype, weight, scales, biases, group_size: int, bits: int, mode: str) -> bool:
    """True when the kernel computes this product: affine mode, 2/4/8 bits, groups of 32/64/128,
    a uint32 weight and fp32 input, scales and biases."""
    return (
        mode == "affine"
        and bits in BITS
        and group_size in GROUP_SIZES
        and biases is not None
        and weight.dtype == mx.uint32
        and x_dtype == mx.float32
        and scales.dtype == mx.float32
        and biases.dtype == mx.float32
    )


def _layout(x: np.ndarray, group_size: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's input layout for rows x (rows, width): see _kernel's product."""
    rows, width = x.shape
    per_word = 32 // bits
    groups = width // group_size
    xp = np.ascontiguousarray(x.reshape(rows, groups, group_size // per_word, per_word).transpose(0, 1, 3, 2))
    return xp, x.reshape(rows, groups, group_size).sum(axis=-1, dtype=np.float32)


def products(
    x: np.ndarray,
    experts: np.ndarray | None,
    weight: np.ndarray,
    scales: np.ndarray,
    biases: np.ndarray,
    group_size: int,
    bits: int,
    threads: int | None = None,
) -> np.ndarray:
    """Row i of x (rows, width) times W.T of expert experts[i] (weight, scales, biases with a leading
    experts axis), or of the one matrix when experts is None; returns (rows, features) fp32. Runs on
    `threads` threads (None: all of Numba's)."""
    import numba

    if experts is None:
        weight, scales, biases = weight[None], scales[None], biases[None]
        experts = np.zeros(len(x), dtype=np.int64)
    order = np.argsort(experts, kind="stable")
    ranked = experts[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]) if len(ranked) else np.zeros(0, np.int64)
    seg_start = np.r_[starts, len(ranked)].astype(np.int64)
    seg_expert = ranked[starts].astype(np.int64)
    xp, xsum = _layout(np.asarray(x, dtype=np.float32)[order], group_size, bits)
    out = np.empty((len(x), weight.shape[1]), dtype=np.float32)
    kernel = _kernel(bits, group_size)
    with _lock:
        numba.set_num_threads(min(threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS))
        kernel(xp, xsum, order.astype(np.int64), seg_start, seg_expert, weight, scales, biases, out)
    return out


def matmul(x: mx.array, weight, scales, biases, group_size: int, bits: int, threads: int | None = None) -> mx.array:
    """mx.quantized_matmul(x, weight, scales, biases, transpose=True, ...) on the kernel (waits for x)."""
    rows = np.asarray(x).reshape(-1, x.shape[-1])
    out = products(rows, None, np.asarray(weight), np.asarray(scales), np.asarray(biases), group_size, bits, threads)
    return mx.array(out).reshape(*x.shape[:-1], weight.shape[0])


def gather_matmul(
    x: mx.array, indices: mx.array, weight, scales, biases, group_size: int, bits: int, threads: int | None = None
) -> mx.array:
    """mx.gather_qmm(x, weight, scales, biases, rhs_indices=indices, transpose=True, ...) on the kernel:
    x (..., M, width) broadcast against indices (...), each batch element's M rows times its expert."""
    xn, idx = np.asarray(x), np.asarray(indices)
    batch = np.broadcast_shapes(xn.shape[:-2], idx.shape)
    m, width = xn.shape[-2:]
    rows = np.broadcast_to(xn, (*batch, m, width)).reshape(-1, width)
    experts = np.repeat(np.broadcast_to(idx, batch).reshape(-1), m)
    out = products(rows, experts, np.asarray(weight), np.asarray(scales), np.asarray(biases), group_size, bits, threads)
    return mx.array(out).reshape(*batch, m, weight.shape[1])


class CompiledSwitchLinear(QuantizedSwitchLinear):
    """mlx-lm's QuantizedSwitchLinear computing its products on the kernel where supports() says so.

    Installed by changing the class of a loaded layer (install), so its parameters, their names and
    every isinstance check stay as they were."""

    def __call__(self, x, indices, sorted_indices=False):
        biases = self.get("biases")
        if not supports(x.dtype, self["weight"], self["scales"], biases, self.group_size, self.bits, self.mode):
            return super().__call__(x, indices, sorted_indices)
        y = gather_matmul(x, indices, self["weight"], self["scales"], biases, self.group_size, self.bits, self._threads)
        if "bias" in self:
            y = y + mx.expand_dims(self["bias"][indices], -2)
        return y


def install(layer, threads: int) -> bool:
    """Give the QuantizedSwitchLinear projections under `layer` the kernel, on `threads` threads, when the
    kernel has their mode, bits and group size (their dtypes are checked at each call, supports()); returns
    True when every one of them got it (gpt-oss's mxfp4 experts keep MLX's kernel: False)."""
    projections = [m for _, m in layer.named_modules() if isinstance(m, QuantizedSwitchLinear)]
    if not projections or not all(
        p.mode == "affine" and p.bits in BITS and p.group_size in GROUP_SIZES for p in projections
    ):
        return False
    for module in projections:
        object.__setattr__(module, "_threads", threads)
        module.__class__ = CompiledSwitchLinear
    return True
