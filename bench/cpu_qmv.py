"""MLX's CPU 4-bit matrix-vector product (a decode step's kernel) against a fused one compiled by Numba.

On the CPU, decode is MLX's quantized matrix-vector kernel: scalar code, one thread per stream,
~0.6 ns a weight. llama.cpp's vectorised kernels decode 7-8x faster on the same weights
(bench/engine_peers.py). This bench asks whether a kernel of our own on MLX's packed layout (affine
4-bit, groups of 64, low nibble first, fp32 scales and biases), compiled by Numba (LLVM, threads over
output rows), would close that, before any of it is built into the engine: on a decode's shapes (one
expert's projection, an attention projection, a 32,000-row output head) it times MLX's
quantized_matmul on one row, on one stream and cut over two streams as the engine runs it
(cpu_split.py), and the Numba kernel on every core, and checks their results agree.

Numba is not an Almanac dependency; run this in a throwaway virtualenv:

    python3 -m venv /var/tmp/numba-venv && /var/tmp/numba-venv/bin/pip install "mlx[cpu]==0.32.4" numba
    /var/tmp/numba-venv/bin/python bench/cpu_qmv.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

SHAPES = (("expert projection", 768, 2048), ("attention q/o projection", 4096, 2048), ("output head", 32000, 2048))


def kernel():
    from numba import njit, prange

    @njit(parallel=True, fastmath=True)
    def q4_gemv(x, w, scales, biases, out):
        """out = x @ W.T for one row x and MLX's affine 4-bit W (words of 8 values, groups of 64)."""
        rows, groups = w.shape[0], scales.shape[1]
        for f in prange(rows):
            acc = 0.0
            for g in range(groups):
                dot = 0.0
                total = 0.0
                for j in range(8):
                    word = w[f, g * 8 + j]
                    base = g * 64 + j * 8
                    for n in range(8):
                        xv = x[base + n]
                        dot += xv * ((word >> (4 * n)) & 0xF)
                        total += xv
                acc += scales[f, g] * dot + biases[f, g] * total
            out[f] = acc

    return q4_gemv


def median_ms(f, rounds: int) -> float:
    f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def row(name: str, rows: int, width: int, q4_gemv, streams, rng, rounds: int) -> str:
    import mlx.core as mx

    w, scales, biases = mx.quantize(mx.array(rng.standard_normal((rows, width), dtype=np.float32)), 64, 4)
    x = mx.array(rng.standard_normal((1, width), dtype=np.float32))
    mx.eval(w, scales, biases, x)
    half = rows // 2

    def one():
        mx.eval(mx.quantized_matmul(x, w, scales, biases, True, 64, 4))

    def two():  # the engine's cut of a linear layer's output features over two CPU streams
        outs = []
        for i, stream in enumerate(streams):
            part = slice(i * half, (i + 1) * half)
            with mx.stream(stream):
                outs.append(mx.quantized_matmul(x, w[part], scales[part], biases[part], True, 64, 4))
        mx.eval(outs)

    wn, sn, bn, xn = np.array(w), np.array(scales), np.array(biases), np.array(x)[0]
    out = np.empty(rows, dtype=np.float32)
    want = np.array(mx.quantized_matmul(x, w, scales, biases, True, 64, 4))[0]
    t1, t2 = median_ms(one, rounds), median_ms(two, rounds)
    tn = median_ms(lambda: q4_gemv(xn, wn, sn, bn, out), rounds)
    diff = float(np.abs(out - want).max() / np.abs(want).max())
    return (
        f"| {name} {rows}x{width} | {rows * width / 1e6:.1f} M | {t1:.2f} | {t2:.2f} | {tn:.2f} | "
        f"{t2 / tn:.1f}x | {tn * 1e6 / (rows * width):.3f} | {diff:.1e} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    try:
        import numba
    except ImportError:
        sys.exit("numba is not installed here: see this script's docstring for the throwaway virtualenv")
    import mlx.core as mx  # the BLAS does not matter here: quantized_matmul is MLX's own kernel

    q4_gemv = kernel()
    streams = [mx.default_stream(mx.cpu), mx.new_stream(mx.cpu)]  # as cpu_split.streams(2)
    rng = np.random.default_rng(0)
    threads = numba.get_num_threads()
    print(f"MLX {mx.__version__}, Numba {numba.__version__} on {threads} threads, {os.cpu_count()} CPUs")
    print(
        "| shape | weights | MLX 1 stream ms | MLX 2 streams ms | Numba ms | Numba vs MLX 2 streams "
        "| ns/weight (Numba) | max diff / max |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, rows, width in SHAPES:
        print(row(name, rows, width, q4_gemv, streams, rng, args.rounds))


if __name__ == "__main__":
    main()
