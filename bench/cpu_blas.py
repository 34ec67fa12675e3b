"""MLX's CPU matmuls on the BLAS its Linux wheel ships against a system OpenBLAS.

The mlx[cpu] wheel for Linux carries the reference BLAS (netlib, unvectorised, one thread), and
MLX's CPU matmul and attention call its cblas_sgemm. Loading an OpenBLAS with RTLD_GLOBAL before
MLX makes libmlx bind cblas_sgemm there instead. This bench measures, each configuration in its
own process, on one prefill's shapes of the MoE bench (Qwen3-30B-A3B layers, 1,500 tokens):
an fp32 matmul, MLX's 4-bit quantized matmul, dequantize-then-matmul (the same weights), and one
layer's attention (32 query heads, 4 key/value heads, head size 128, causal).

    python bench/cpu_blas.py [--openblas /usr/lib/x86_64-linux-gnu/libopenblas.so.0] [--rounds 3]

(Debian and Ubuntu: `apt install libopenblas0-pthread`.)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

TOKENS, HIDDEN, EXPERT = 1500, 2048, 768
HEADS, KV_HEADS, HEAD_DIM = 32, 4, 128


def _child(openblas: str | None, rounds: int) -> dict:
    if openblas:
        ctypes.CDLL(openblas, mode=ctypes.RTLD_GLOBAL)  # before MLX, so libmlx binds to it
    import mlx.core as mx

    mx.random.seed(0)
    x = mx.random.normal((TOKENS, HIDDEN))
    w = mx.random.normal((EXPERT, HIDDEN))
    wq, scales, biases = mx.quantize(w, 64, 4)
    q = mx.random.normal((1, HEADS, TOKENS, HEAD_DIM))
    k = mx.random.normal((1, KV_HEADS, TOKENS, HEAD_DIM))
    v = mx.random.normal((1, KV_HEADS, TOKENS, HEAD_DIM))
    mx.eval(x, w, wq, scales, biases, q, k, v)
    cases = {
        "fp32 matmul": lambda: x @ w.T,
        "4-bit quantized_matmul": lambda: mx.quantized_matmul(x, wq, scales, biases, True, 64, 4),
        "dequantize + matmul": lambda: x @ mx.dequantize(wq, scales, biases, 64, 4).T,
        "attention (one layer)": lambda: mx.fast.scaled_dot_product_attention(
            q, k, v, scale=HEAD_DIM**-0.5, mask="causal"
        ),
    }
    out = {}
    for name, f in cases.items():
        mx.eval(f())
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            mx.eval(f())
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    quantized, dequantized = cases["4-bit quantized_matmul"](), cases["dequantize + matmul"]()
    out["max |qmm - dequantize+matmul|"] = mx.abs(quantized - dequantized).max().item()
    out["max |qmm|"] = mx.abs(quantized).max().item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--openblas", default="/usr/lib/x86_64-linux-gnu/libopenblas.so.0")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child or None, args.rounds)))
        return
    if not os.path.exists(args.openblas):
        sys.exit(f"no OpenBLAS at {args.openblas}: pass --openblas PATH (Debian: apt install libopenblas0-pthread)")
    runs = {}
    for label, lib in (("wheel's BLAS", ""), ("OpenBLAS", args.openblas)):
        cmd = [sys.executable, __file__, "--child", lib, "--rounds", str(args.rounds)]
        runs[label] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    base, fast = runs["wheel's BLAS"], runs["OpenBLAS"]
    print("| case | wheel's BLAS ms | OpenBLAS ms | speed-up |")
    print("|---|---|---|---|")
    for name in ("fp32 matmul", "4-bit quantized_matmul", "dequantize + matmul", "attention (one layer)"):
        print(f"| {name} | {base[name] * 1e3:.1f} | {fast[name] * 1e3:.1f} | {base[name] / fast[name]:.1f}x |")
    ratio = base["4-bit quantized_matmul"] / fast["dequantize + matmul"]
    print(f"\nquantized_matmul (wheel) / dequantize + matmul (OpenBLAS): {ratio:.0f}x")
    for label, r in runs.items():
        print(
            f"{label}: max |qmm - dequantize+matmul| {r['max |qmm - dequantize+matmul|']:.2e} of {r['max |qmm|']:.0f}"
        )


if __name__ == "__main__":
    main()
