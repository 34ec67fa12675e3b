"""Benchmark: SSD-streamed MoE decoding vs mlx-lm fully resident, on the same MLX backend.

Builds (once, in --workdir) a synthetic 4-bit checkpoint with Qwen3-30B-A3B's layer shapes
(hidden 2048, 128 experts, top-8, expert width 768) but only a few layers and a small
vocabulary so it builds in minutes, converts it with Almanac, and reports for

  mlx-lm resident       the whole quantized model in memory
  almanac warm          experts streamed, files already in the OS page cache
  almanac cold          experts streamed, files evicted with posix_fadvise(DONTNEED) first
                        and every expert dropped again after it is read
  almanac cache         warm, with --expert-cache-gb slots (optional, --cache-gb)

decode tok/s, time to first token, bytes read per token, read GB/s achieved vs the disk's
raw sequential read (measured here with O_DIRECT), share of decode time in I/O, peak RSS.
Each run is its own process so peak RSS is its own.

    python bench/moe_stream.py --workdir /var/tmp/moe-bench --layers 4 --tokens 32
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {  # Qwen3-30B-A3B, but fewer layers and a smaller vocabulary
    "model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"],
    "hidden_size": 2048, "intermediate_size": 6144, "num_attention_heads": 32,
    "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
    "moe_intermediate_size": 768, "decoder_sparse_step": 1, "mlp_only_layers": [],
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": False,
    "max_position_embeddings": 40960, "norm_topk_prob": True, "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}


# ---------------------------------------------------------------- building the checkpoint

def build(workdir: Path, layers: int) -> tuple[Path, Path]:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes, save_config

    mlx_dir, stream_dir = workdir / "mlx-4bit", workdir / "almanac"
    if not (mlx_dir / "config.json").exists():
        print(f"building a {layers}-layer synthetic checkpoint in {mlx_dir} ...", flush=True)
        cfg = dict(SHAPES, num_hidden_layers=layers)
        model_class, args_class = _get_classes(cfg)
        mx.random.seed(0)
        model = model_class(args_class.from_dict(cfg))
        # Spread the routers so tokens pick varied experts, like a trained model.
        for layer in model.model.layers:
            layer.mlp.gate.weight = mx.random.normal(layer.mlp.gate.weight.shape) * 0.05
        model.set_dtype(mx.bfloat16)
        from mlx_lm.utils import quantize_model

        model, qcfg = quantize_model(model, cfg, 64, 4)
        # Materialise one layer at a time so the random fp32 weights never coexist.
        for layer in model.model.layers:
            mx.eval(layer.parameters())
        mx.eval(model.parameters())
        mlx_dir.mkdir(parents=True)
        mx.save_safetensors(str(mlx_dir / "model.safetensors"), dict(tree_flatten(model.parameters())),
                            metadata={"format": "mlx"})
        save_config(qcfg, config_path=mlx_dir / "config.json")
        _tokenizer(mlx_dir)
        del model
    if not (stream_dir / "manifest.json").exists():
        import llm_engine

        print(f"converting to {stream_dir} ...", flush=True)
        llm_engine.convert(mlx_dir, stream_dir)
    os.sync()
    return mlx_dir, stream_dir


def _tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(["an offline library for everyone"] * 10, trainer)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}))


# ---------------------------------------------------------------- disk

def raw_read_gbps(path: Path, limit: int = 1 << 30) -> tuple[float, str]:
    """Sequential read speed of `path` bypassing the page cache (O_DIRECT), GB/s."""
    block = 4 << 20
    buf = mmap.mmap(-1, block)  # page aligned, as O_DIRECT requires
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
        how = "O_DIRECT"
    except OSError:
        fd, how = os.open(path, os.O_RDONLY), "fadvise-cold"
    try:
        if how != "O_DIRECT" or not hasattr(os, "O_DIRECT"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        total, t0 = 0, time.perf_counter()
        while total < limit:
            try:
                n = os.readv(fd, [buf])
            except OSError:  # the filesystem refuses O_DIRECT reads
                os.close(fd)
                fd, how = os.open(path, os.O_RDONLY), "fadvise-cold"
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total, t0 = 0, time.perf_counter()
                continue
            if n <= 0:
                break
            total += n
        return total / (time.perf_counter() - t0) / 1e9, how
    finally:
        os.close(fd)
        buf.close()


def evict(paths) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(paths) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


# ---------------------------------------------------------------- one run (child process)

PROMPT = list(range(10, 42))  # 32 prompt tokens


def worker(mode: str, directory: str, tokens: int, cache_gb: float) -> dict:
    import mlx.core as mx

    from llm_engine.generate import _peak_rss_bytes as rss

    if mode == "resident":
        from mlx_lm.generate import generate_step
        from mlx_lm.utils import load

        from llm_engine.device import cast_model

        model, _ = load(directory)
        cast_model(model)
        mx.eval(model.parameters())
        from mlx.utils import tree_flatten

        weights = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        t0 = time.perf_counter()
        t_first = None
        n = 0
        for _tok, _ in generate_step(mx.array(PROMPT), model, max_tokens=tokens):
            n += 1
            if t_first is None:
                t_first = time.perf_counter()
        t_end = time.perf_counter()
        return {"ttft_s": t_first - t0, "decode_tok_s": (n - 1) / (t_end - t_first),
                "bytes_per_token": 0, "io_s": 0.0, "decode_s": t_end - t_first,
                "peak_rss": rss(), "resident_bytes": weights, "read_gbps": None}

    import llm_engine

    # Cold: the files are evicted first and every read is dropped from the page cache again,
    # so each token reads from the disk as with a model many times larger than RAM.
    engine = llm_engine.load(directory, expert_cache_gb=cache_gb, drop_page_cache=mode == "cold")
    if mode == "cold":
        evict([engine.path / layer.file for layer in engine.manifest.layers])
    result = llm_engine.generate(engine, PROMPT, max_tokens=tokens, ignore_eos=True)
    s = result.stats
    io_s = s["io_seconds"]
    decode_s = (s["generated_tokens"] - 1) / s["decode_tok_per_s"] if s["decode_tok_per_s"] else 0
    return {"ttft_s": s["time_to_first_token_s"], "decode_tok_s": s["decode_tok_per_s"],
            "bytes_per_token": s["bytes_read_per_token"], "io_s": io_s,
            "decode_s": decode_s + s["time_to_first_token_s"],
            "peak_rss": s["peak_rss_bytes"], "resident_bytes": engine.resident_bytes(),
            "bank_bytes": engine.bank_bytes(), "hit_rate": s["cache_hit_rate"],
            "read_gbps": s["bytes_read"] / io_s / 1e9 if io_s else None}


def run_child(mode: str, directory: Path, tokens: int, cache_gb: float = 0.0) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--dir", str(directory),
         "--tokens", str(tokens), "--cache-gb", str(cache_gb)],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT)),
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- table

def table(rows: dict, raw: float, how: str) -> str:
    lines = [
        "| run | decode tok/s | vs resident | TTFT s | MB read/token | read GB/s | % of raw read | I/O share | peak RSS GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = rows["mlx-lm resident"]["decode_tok_s"]
    for name, r in rows.items():
        gbps = r.get("read_gbps")
        io_share = r["io_s"] / r["decode_s"] if r.get("decode_s") else 0
        lines.append(
            f"| {name} | {r['decode_tok_s']:.2f} | {r['decode_tok_s'] / base:.2f}x | {r['ttft_s']:.2f} | "
            f"{r['bytes_per_token'] / 1e6:.1f} | {gbps:.2f} | {100 * gbps / raw:.0f}% | "
            f"{100 * io_share:.0f}% | {r['peak_rss'] / 2**30:.2f} |"
            if gbps else
            f"| {name} | {r['decode_tok_s']:.2f} | 1.00x | {r['ttft_s']:.2f} | 0 | - | - | - | "
            f"{r['peak_rss'] / 2**30:.2f} |"
        )
    lines.append(f"\nraw sequential read of the expert file ({how}): {raw:.2f} GB/s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/almanac-moe-bench"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--cache-gb", type=float, default=0.0,
                    help="also run warm with this expert cache (GB)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker and args.worker != "build":
        print(json.dumps(worker(args.worker, args.dir, args.tokens, args.cache_gb)))
        return

    if args.worker == "build":
        build(args.workdir, args.layers)
        return
    # Build in a child too: Linux children inherit their parent's peak RSS.
    subprocess.run([sys.executable, __file__, "--worker", "build", "--workdir", str(args.workdir),
                    "--layers", str(args.layers)], check=True, cwd=ROOT,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    mlx_dir, stream_dir = args.workdir / "mlx-4bit", args.workdir / "almanac"
    expert_files = sorted((stream_dir / "experts").glob("*.bin"))
    raw, how = raw_read_gbps(expert_files[0])
    rows = {}
    warm([mlx_dir / "model.safetensors"])
    rows["mlx-lm resident"] = run_child("resident", mlx_dir, args.tokens)
    warm(expert_files)
    rows["almanac warm"] = run_child("warm", stream_dir, args.tokens)
    rows["almanac cold"] = run_child("cold", stream_dir, args.tokens)
    if args.cache_gb:
        warm(expert_files)
        rows[f"almanac warm, cache {args.cache_gb:g} GB"] = run_child("warm", stream_dir, args.tokens, args.cache_gb)
    print()
    print(f"{args.layers} layers of Qwen3-30B-A3B shapes, 4-bit, {args.tokens} decode tokens, "
          f"32-token prompt; resident weights {rows['mlx-lm resident']['resident_bytes'] / 2**30:.2f} GB "
          f"(fp32 scales, CPU), Almanac resident {rows['almanac warm']['resident_bytes'] / 2**30:.2f} GB")
    print(table(rows, raw, how))
    print(f"load average during the runs: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (other work on the machine skews the numbers)")


if __name__ == "__main__":
    main()
