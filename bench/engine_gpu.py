"""Benchmark: the streaming engine on a GPU (MLX's CUDA or Metal backend) vs mlx-lm resident.

One call does everything, so it fits one lease of a GPU machine with no network:

1. reports the machine (GPU, MLX backend and version, free disk, the disk's raw O_DIRECT read rate);
2. optionally (--parity) runs tests/engine/test_parity.py on this backend: greedy tokens and
   logits of every supported architecture equal to mlx-lm resident on the same device;
3. builds a synthetic 4-bit checkpoint with a real model's shapes (--model), converts it with
   Almanac, and deletes the MLX source (the resident reference is rebuilt from the converted
   files: the same tensors, bit for bit, in mlx-lm's own model class, so the disk holds one copy);
4. runs, each configuration in its own process and --rounds times in turn, for every prompt
   length in --prompts:

   mlx-lm resident    every weight in GPU memory, mlx-lm's generate_step
   almanac warm       experts streamed from the OS page cache
   almanac cold       experts streamed from the disk: the files are evicted first and every
                      expert is dropped from the page cache again after it is read
                      (posix_fadvise), as for a model far larger than RAM
   almanac cache      warm, with --cache-gb of expert cache slots on the GPU
   almanac cold, batch of 4
                      4 sequences decoded together (BatchGenerator), cold: aggregate decode
                      tok/s (the first sequence has resident's prompt, the others turns of it; each is checked
                      against its own single run); not among the default --configs

   and prints decode tok/s, prefill tok/s, time to first token, bytes read per decode token,
   read GB/s (against the raw rate measured in the same call), MLX's peak GPU memory and the
   memory nvidia-smi sees in use, and whether the greedy tokens equal mlx-lm resident's.

   python bench/engine_gpu.py --workdir /tmp/gpu-bench --model qwen3-30b-a3b --prompts 1,1500 \\
       --tokens 32 --rounds 2 --cache-gb 8 --parity --json bench/results/engine_gpu-qwen3-30b-a3b.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine_peers import _median, _tokenizer, evict, raw_read_gbps, rss, warm  # noqa: E402

from engine_peers import SHAPES as QWEN3_30B_A3B  # noqa: E402

MODELS = {
    # Qwen3-30B-A3B as published: 48 layers, 128 experts, top-8, expert width 768.
    "qwen3-30b-a3b": dict(QWEN3_30B_A3B, vocab_size=151936, num_hidden_layers=48),
    # Qwen3-235B-A22B's layers (hidden 4096, 128 experts of width 1536, top-8, 94 layers when
    # whole: ~133 GB at 4 bits); --layers cuts it to what the disk holds.
    "qwen3-235b-a22b": dict(
        QWEN3_30B_A3B,
        hidden_size=4096,
        intermediate_size=12288,
        num_attention_heads=64,
        moe_intermediate_size=1536,
        vocab_size=151936,
        num_hidden_layers=94,
    ),
    # A few MB: checks this script itself on any machine.
    "tiny": dict(
        QWEN3_30B_A3B,
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        num_experts=16,
        num_experts_per_tok=4,
        moe_intermediate_size=64,
        max_position_embeddings=4096,
        vocab_size=2048,
        num_hidden_layers=3,
    ),
}

TOKENIZER_VOCAB = 1000  # the bench's small BPE; prompts are token ids


def prompt_ids(length: int) -> list[int]:
    import numpy as np

    return np.random.default_rng(length).integers(10, TOKENIZER_VOCAB, size=length).tolist()


# ---------------------------------------------------------------- machine


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "no nvidia-smi"


def gpu_used_bytes() -> int | None:
    """Device memory in use on GPU 0 as nvidia-smi reports it (every process)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return int(out.stdout.split()[0]) * 2**20
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


# ---------------------------------------------------------------- building the checkpoint


def build(workdir: Path, model: str, layers: int | None) -> Path:
    """The converted checkpoint (built once); the MLX source is deleted after conversion."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes, quantize_model, save_config

    import llm_engine

    cfg = dict(MODELS[model])
    if layers:
        cfg["num_hidden_layers"] = layers
    name = f"{model}-{cfg['num_hidden_layers']}l"
    src, dst = workdir / f"{name}-mlx", workdir / name
    if (dst / "manifest.json").exists():
        return dst
    shutil.rmtree(src, ignore_errors=True)
    t0 = time.perf_counter()
    print(f"building {name}: {cfg['num_hidden_layers']} layers of {model} shapes, 4-bit ...", flush=True)
    model_class, args_class = _get_classes(cfg)
    mx.random.seed(0)
    m = model_class(args_class.from_dict(cfg))
    for layer in m.model.layers:  # spread the routers so tokens pick varied experts
        layer.mlp.gate.weight = mx.random.normal(layer.mlp.gate.weight.shape) * 0.05
    m.set_dtype(mx.bfloat16)
    m, qcfg = quantize_model(m, cfg, 64, 4)
    src.mkdir(parents=True)
    # One shard per few layers, each evaluated and written before the next is computed, so
    # the random bf16 weights of the whole model never exist at once.
    flat = dict(tree_flatten(m.parameters()))
    del m
    groups: dict[str, dict] = {}
    for k, v in flat.items():
        parts = k.split(".")
        key = f"layers-{int(parts[2]) // 4:03d}" if parts[:2] == ["model", "layers"] else "rest"
        groups.setdefault(key, {})[k] = v
    index = {}
    for key, tensors in groups.items():
        mx.eval(tensors)
        fname = f"model-{key}.safetensors"
        mx.save_safetensors(str(src / fname), tensors, metadata={"format": "mlx"})
        index.update({k: fname for k in tensors})
        for k in tensors:
            flat[k] = None
        del tensors
        groups[key] = {}
        mx.clear_cache()
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    save_config(qcfg, config_path=src / "config.json")
    _tokenizer(src)
    t1 = time.perf_counter()
    print(f"  built and saved in {t1 - t0:.0f} s; converting ...", flush=True)
    llm_engine.convert(src, dst, progress=False)
    shutil.rmtree(src)
    os.sync()
    print(f"  converted in {time.perf_counter() - t1:.0f} s", flush=True)
    return dst


def resident_model(stream_dir: Path):
    """mlx-lm's model with every weight in memory, read from the converted files.

    The expert tensors are the blobs the engine streams, put back together on the expert
    axis: the same numbers mlx-lm would load from the MLX checkpoint the bench converted.
    """
    import mlx.core as mx
    import numpy as np

    from llm_engine import manifest as mf
    from llm_engine.device import cast_model
    from llm_engine.loader import _quantize, _read_config
    from llm_engine.architectures import build_model

    config = _read_config(stream_dir)
    manifest = mf.read_manifest(stream_dir)
    model = build_model(config)
    weights = {}
    for f in manifest.files:
        if f.file.endswith(".safetensors"):
            weights.update(mx.load(str(stream_dir / f.file)))
    weights = model.sanitize(weights) if hasattr(model, "sanitize") else weights
    _quantize(model, config, manifest, weights)
    for layer in manifest.layers:
        blobs = np.memmap(stream_dir / layer.file, dtype=np.uint8, mode="r").reshape(layer.num_experts, layer.stride)
        for t in layer.tensors:
            raw = np.ascontiguousarray(blobs[:, t.offset : t.offset + t.nbytes])
            if t.dtype == "bfloat16":
                arr = mx.array(raw.view(np.uint16)).view(mx.bfloat16)
            else:
                arr = mx.array(raw.view(mf.np_dtype(t.dtype)))
            weights[f"{layer.module}.{t.name}"] = arr.reshape(layer.num_experts, *t.shape)
            mx.eval(weights[f"{layer.module}.{t.name}"])
    model.eval()
    model.load_weights(list(weights.items()), strict=True)
    cast_model(model)  # as the engine computes (fp32 on the CPU; a no-op on a GPU)
    mx.eval(model.parameters())
    return model


# ---------------------------------------------------------------- one configuration (child)


def _warmup_resident(model, prompts: list[int]) -> None:
    """Every kernel the timed runs need is compiled here (MLX's CUDA backend JIT-compiles
    kernels per shape on first use; a 1,500-token prefill's take over a minute)."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    for length in prompts:
        for _ in generate_step(mx.array(prompt_ids(length)[::-1]), model, max_tokens=3):
            pass


def worker(kind: str, stream_dir: str, prompts: list[int], tokens: int, cache_gb: float) -> dict:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    import llm_engine
    from llm_engine.device import backend, read_path

    stream_dir = Path(stream_dir)
    out = {"backend": backend(), "read_path": read_path().name, "runs": {}}
    if kind == "resident":
        t = time.perf_counter()
        model = resident_model(stream_dir)
        out["load_s"] = time.perf_counter() - t
        _warmup_resident(model, prompts)
        for length in prompts:
            mx.reset_peak_memory()
            t0 = time.perf_counter()
            first, toks = None, []
            for tok, _ in generate_step(mx.array(prompt_ids(length)), model, max_tokens=tokens, prefill_step_size=2048):
                toks.append(int(tok))
                if first is None:
                    first = time.perf_counter()
            end = time.perf_counter()
            out["runs"][str(length)] = {
                "ttft_s": first - t0,
                "prefill_tok_s": length / (first - t0),
                "decode_tok_s": (len(toks) - 1) / (end - first),
                "bytes_per_token": 0,
                "read_gbps": None,
                "peak_gpu_bytes": mx.get_peak_memory(),
                "gpu_used_bytes": gpu_used_bytes(),
                "peak_rss": rss(),
                "tokens": toks,
            }
        return out

    if kind.startswith("batch"):
        return worker_batch(stream_dir, prompts, tokens, int(kind[len("batch") :]), out)
    files = None
    with llm_engine.load(stream_dir) as engine:  # kernels compiled outside the timings
        files = [engine.path / layer.file for layer in engine.manifest.layers]
        for length in prompts:
            llm_engine.generate(engine, prompt_ids(length)[::-1], max_tokens=3, ignore_eos=True)
    for length in prompts:
        if kind == "cold":
            evict(files)
        else:
            warm(files)
        t = time.perf_counter()
        engine = llm_engine.load(
            stream_dir, expert_cache_gb=cache_gb if kind == "cache" else 0.0, drop_page_cache=kind == "cold"
        )
        load_s = time.perf_counter() - t
        toks, first, s = [], None, None
        for step in llm_engine.stream_generate(engine, prompt_ids(length), max_tokens=tokens, ignore_eos=True):
            toks.append(step.token)
            if first is None:
                first = dict(engine.io.as_dict())
            s = step.stats or s
        n = s["generated_tokens"] - 1
        io = {k: s[k] - first[k] for k in ("bytes_read", "io_seconds", "io_wait_seconds")}
        decode_s = n / s["decode_tok_per_s"] if s["decode_tok_per_s"] else 0.0
        out["runs"][str(length)] = {
            "load_s": load_s,
            "ttft_s": s["time_to_first_token_s"],
            "prefill_tok_s": s["prefill_tok_per_s"],
            "decode_tok_s": s["decode_tok_per_s"],
            "bytes_per_token": io["bytes_read"] / n,
            "prefill_bytes": first["bytes_read"],
            "read_gbps": io["bytes_read"] / io["io_seconds"] / 1e9 if io["io_seconds"] else None,
            "io_wait_share": io["io_wait_seconds"] / decode_s if decode_s else None,
            "hit_rate": s["cache_hit_rate"],
            "cache_slots": s["expert_cache_slots_per_layer"],
            "peak_gpu_bytes": s["peak_memory_bytes"],
            "gpu_used_bytes": gpu_used_bytes(),
            "resident_bytes": engine.resident_bytes(),
            "bank_bytes": engine.bank_bytes(),
            "peak_rss": s["peak_rss_bytes"],
            "tokens": toks,
        }
        engine.close()
        del engine
        mx.clear_cache()
    return out


def worker_batch(stream_dir: Path, prompts: list[int], tokens: int, n: int, out: dict) -> dict:
    """n sequences cold, decoded together (BatchGenerator); the first has resident's prompt, the
    others turns of it. Each is then run alone (warm) to check its tokens."""
    import mlx.core as mx

    import llm_engine

    with llm_engine.load(stream_dir, max_batch=n) as engine:  # kernels compiled outside the timings
        files = [engine.path / layer.file for layer in engine.manifest.layers]
        batch = llm_engine.BatchGenerator(engine)
        for p in range(n):
            batch.insert(prompt_ids(prompts[0])[::-1][p:], max_tokens=3, ignore_eos=True)
        while batch:
            batch.step()
    for length in prompts:
        ids = prompt_ids(length)
        seqs = [ids[i:] + ids[:i] for i in range(n)]
        evict(files)
        engine = llm_engine.load(stream_dir, max_batch=n, drop_page_cache=True)
        batch = llm_engine.BatchGenerator(engine)
        uids = [batch.insert(q, max_tokens=tokens, ignore_eos=True) for q in seqs]
        got = {u: [] for u in uids}
        t0, t_first, first_io = time.perf_counter(), None, None
        while batch:
            for step in batch.step():
                got[step.uid].append(step.token)
            if t_first is None:
                t_first, first_io = time.perf_counter(), engine.io.bytes_read
        stats = batch.stats()
        singles = [llm_engine.generate(engine, q, max_tokens=tokens, ignore_eos=True).tokens for q in seqs]
        out["runs"][str(length)] = {
            "ttft_s": t_first - t0,
            "prefill_tok_s": n * length / (t_first - t0),
            "decode_tok_s": stats["aggregate_decode_tok_per_s"],
            "bytes_per_token": (stats["bytes_read"] - first_io) / max(stats["decode_tokens"], 1),
            "read_gbps": None,
            "peak_gpu_bytes": mx.get_peak_memory(),
            "gpu_used_bytes": gpu_used_bytes(),
            "peak_rss": rss(),
            "tokens": got[uids[0]],
            "same_as_single": all(got[u] == t for u, t in zip(uids, singles)),
        }
        engine.close()
        del engine
        mx.clear_cache()
    return out


def run_child(kind: str, stream_dir: Path, prompts: list[int], tokens: int, cache_gb: float) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--dir",
            str(stream_dir),
            "--prompts",
            ",".join(map(str, prompts)),
            "--tokens",
            str(tokens),
            "--cache-gb",
            str(cache_gb),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=dict(
            os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        ),
    )
    if out.returncode != 0:
        return {"error": out.stderr[-3000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- table

CONFIGS = ("mlx-lm resident", "almanac warm", "almanac cold", "almanac cache", "almanac cold, batch of 4")
KINDS = {
    "mlx-lm resident": "resident",
    "almanac warm": "warm",
    "almanac cold": "cold",
    "almanac cache": "cache",
    "almanac cold, batch of 4": "batch4",
}


def summarize(rounds: list[dict], prompts: list[int], raws: list[float]) -> list[dict]:
    rows = []
    for length in prompts:
        key = str(length)
        for name in rounds[0]:
            runs = [r[name]["runs"][key] for r in rounds if "runs" in r[name]]
            if not runs:
                rows.append({"config": name, "prompt": length, "error": rounds[0][name].get("error")})
                continue
            ref = [r["mlx-lm resident"]["runs"][key] for r in rounds if "runs" in r["mlx-lm resident"]]

            def med(field, runs=runs):
                return _median([run.get(field) for run in runs])

            row = {"config": name, "prompt": length}
            for field in (
                "decode_tok_s",
                "prefill_tok_s",
                "ttft_s",
                "bytes_per_token",
                "read_gbps",
                "peak_gpu_bytes",
                "gpu_used_bytes",
                "peak_rss",
                "hit_rate",
                "prefill_bytes",
                "io_wait_share",
                "cache_slots",
            ):
                row[field] = med(field)
            row["decode_vs_resident"] = _median([run["decode_tok_s"] / r["decode_tok_s"] for run, r in zip(runs, ref)])
            row["prefill_vs_resident"] = _median(
                [run["prefill_tok_s"] / r["prefill_tok_s"] for run, r in zip(runs, ref)]
            )
            row["raw_share"] = (
                _median([run["read_gbps"] / raw for run, raw in zip(runs, raws) if run.get("read_gbps")])
                if row["read_gbps"]
                else None
            )
            row["same_tokens"] = all(run["tokens"] == r["tokens"] for run, r in zip(runs, ref))
            if "same_as_single" in runs[0]:
                row["same_as_single"] = all(run["same_as_single"] for run in runs)
            row["decode_all"] = [run["decode_tok_s"] for run in runs]
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| prompt | run | decode tok/s | vs resident | prefill tok/s | vs resident | TTFT s "
        "| MB read / decode token | read GB/s | % of raw | MLX peak GPU GB | nvidia-smi GB "
        "| tokens = resident |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['prompt']} | {r['config']} | failed: see JSON |" + " |" * 10)
            continue
        gbps = r["read_gbps"]
        smi = r["gpu_used_bytes"]
        lines.append(
            f"| {r['prompt']} | {r['config']} | {r['decode_tok_s']:.1f} | {r['decode_vs_resident']:.2f}x "
            f"| {r['prefill_tok_s']:.0f} | {r['prefill_vs_resident']:.2f}x | {r['ttft_s']:.2f} | "
            + (
                f"{r['bytes_per_token'] / 1e6:.0f} | {gbps:.2f} | {100 * r['raw_share']:.0f}% | "
                if gbps
                else "0 | - | - | "
            )
            + f"{r['peak_gpu_bytes'] / 1e9:.1f} | "
            + (f"{smi / 1e9:.1f}" if smi else "-")
            + " | "
            + ("yes" if r["same_tokens"] else "NO")
            + " |"
        )
    return "\n".join(lines)


def run_parity() -> dict:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/engine/test_parity.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]
    print(f"parity tests on this backend: {tail} ({time.perf_counter() - t:.0f} s)", flush=True)
    return {"returncode": out.returncode, "summary": tail, "output": out.stdout[-6000:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/almanac-gpu-bench"))
    ap.add_argument("--model", choices=sorted(MODELS), default="qwen3-30b-a3b")
    ap.add_argument("--layers", type=int, default=None, help="fewer layers than the real model")
    ap.add_argument("--prompts", default="1,1500", help="prompt lengths in tokens")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache-gb", type=float, default=8.0)
    ap.add_argument("--configs", default="resident,warm,cold,cache", help="of: " + ",".join(KINDS.values()))
    ap.add_argument("--parity", action="store_true", help="first run tests/engine/test_parity.py")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    prompts = [int(p) for p in args.prompts.split(",")]
    if args.worker == "build":
        build(args.workdir, args.model, args.layers or None)
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.dir, prompts, args.tokens, args.cache_gb)))
        return

    import mlx.core as mx

    from llm_engine.device import backend, read_path

    report = {
        "gpu": gpu_name(),
        "mlx": mx.__version__,
        "backend": backend(),
        "read_path": read_path().name,
        "model": args.model,
        "prompts": prompts,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "cache_gb": args.cache_gb,
    }
    print(json.dumps(report), flush=True)
    if args.parity:
        report["parity"] = run_parity()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"free disk: {shutil.disk_usage(args.workdir).free / 1e9:.0f} GB", flush=True)
    # Built in a child: its memory is handed back before the runs.
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            "build",
            "--workdir",
            str(args.workdir),
            "--model",
            args.model,
            "--layers",
            str(args.layers or 0),
        ],
        check=True,
        cwd=ROOT,
    )
    cfg = dict(MODELS[args.model], **({"num_hidden_layers": args.layers} if args.layers else {}))
    stream_dir = args.workdir / f"{args.model}-{cfg['num_hidden_layers']}l"
    files = sorted((stream_dir / "experts").glob("*.bin"))
    size = sum(f.stat().st_size for f in stream_dir.rglob("*") if f.is_file())
    report["checkpoint_bytes"] = size
    print(f"checkpoint: {stream_dir} ({size / 1e9:.1f} GB, {len(files)} expert files)", flush=True)
    wanted = [c for c in CONFIGS if KINDS[c] in args.configs.split(",")]
    rounds, raws = [], []
    for i in range(args.rounds):
        raw, how = raw_read_gbps(files[(7 * i) % len(files)])
        raws.append(raw)
        print(f"round {i + 1}/{args.rounds}: raw read {raw:.2f} GB/s ({how})", flush=True)
        row = {}
        for name in wanted:
            t = time.perf_counter()
            row[name] = run_child(KINDS[name], stream_dir, prompts, args.tokens, args.cache_gb)
            brief = {k: round(v["decode_tok_s"], 1) for k, v in row[name].get("runs", {}).items()}
            print(
                f"  {name}: {time.perf_counter() - t:.0f} s, decode tok/s by prompt {brief}"
                + (" FAILED " + row[name]["error"][-800:] if "error" in row[name] else ""),
                flush=True,
            )
        rounds.append(row)
        if args.json:  # after every round, so a run cut short still leaves its figures
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(dict(report, raw_gbps=raws, rounds=rounds), indent=1))
    rows = summarize(rounds, prompts, raws)
    report.update(raw_gbps=raws, raw_how=how, rounds=rounds, summary=rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    print()
    print(
        f"{report['gpu']}; MLX {report['mlx']} ({report['backend']}, read path {report['read_path']}); "
        f"{args.model}, {cfg['num_hidden_layers']} layers, 4-bit, {size / 1e9:.1f} GB; "
        f"{args.tokens} tokens; medians of {args.rounds} rounds; raw read {_median(raws):.2f} GB/s"
    )
    print(table(rows))
    if args.parity:
        print(f"parity tests: {report['parity']['summary']}")


if __name__ == "__main__":
    main()
