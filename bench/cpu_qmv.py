"""MLX's CPU 4-bit matrix-vector product (a decode step's kernel) against the engine's compiled one.

On the CPU, a decode was MLX's quantized matrix-vector kernel: scalar code, one thread per stream,
~0.6 ns a weight. The engine now computes those products on kernels compiled by Numba
(llm_engine/cpu_quantized.py: MLX's packed layout, affine, every core, vectorised over a group's
words). This bench times, on a decode's shapes (one expert's projection, an attention projection, a
32,000-row output head) at one row and at four (a batch of four sequences): MLX's quantized_matmul on
one stream, cut over two streams as the engine cuts it without the kernels (cpu_split.py), and the
engine's kernel through the call the engine makes (cpu_quantized.matmul: waits for x, copies the
result back into MLX), and checks their results agree.

    python bench/cpu_qmv.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = (("expert projection", 768, 2048), ("attention q/o projection", 4096, 2048), ("output head", 32000, 2048))


def median_ms(f, rounds: int) -> float:
    f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def row(name: str, rows: int, width: int, m: int, streams, rng, rounds: int) -> str:
    import mlx.core as mx

    from llm_engine import cpu_quantized

    w, scales, biases = mx.quantize(mx.array(rng.standard_normal((rows, width), dtype=np.float32)), 64, 4)
    x = mx.array(rng.standard_normal((m, width), dtype=np.float32))
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

    def compiled():
        mx.eval(cpu_quantized.matmul(x, w, scales, biases, 64, 4))

    want = np.array(mx.quantized_matmul(x, w, scales, biases, True, 64, 4))
    got = np.array(cpu_quantized.matmul(x, w, scales, biases, 64, 4))
    t1, t2, tn = median_ms(one, rounds), median_ms(two, rounds), median_ms(compiled, rounds)
    diff = float(np.abs(got - want).max() / np.abs(want).max())
    return (
        f"| {name} {rows}x{width} | {m} | {rows * width / 1e6:.1f} M | {t1:.2f} | {t2:.2f} | {tn:.2f} | "
        f"{t2 / tn:.1f}x | {tn * 1e6 / (rows * width * m):.3f} | {diff:.1e} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    import llm_engine  # noqa: F401  first, as the engine runs (cpu_blas.py)
    import mlx.core as mx
    from importlib.metadata import version

    from llm_engine.device import compiled_kernels

    if not compiled_kernels():
        sys.exit("no compiled kernels here (Numba missing, or ALMANAC_CPU_KERNELS=off)")
    import numba

    streams = [mx.default_stream(mx.cpu), mx.new_stream(mx.cpu)]  # as cpu_split.streams(2)
    rng = np.random.default_rng(0)
    print(
        f"MLX {mx.__version__}, Numba {version('numba')} on {numba.config.NUMBA_NUM_THREADS} threads, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "| shape | rows | weights | MLX 1 stream ms | MLX 2 streams ms | compiled ms | compiled vs MLX 2 streams "
        "| ns per weight and row (compiled) | max diff / max |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rows, width in SHAPES:
        for m in (1, 4):
            print(row(name, rows, width, m, streams, rng, args.rounds))


if __name__ == "__main__":
    main()
