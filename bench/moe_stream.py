"""Benchmark: SSD-streamed MoE decoding vs mlx-lm fully resident, on the same MLX backend.

Builds (once, in --workdir) a synthetic 4-bit checkpoint with Qwen3-30B-A3B's layer shapes
(hidden 2048, 128 experts, top-8, expert width 768) but only a few layers and a small
vocabulary so it builds in minutes, converts it with Almanac, and reports for

  mlx-lm resident       the whole quantized model in memory
  almanac warm          experts streamed, files already in the OS page cache
  almanac cold          experts streamed, files evicted with posix_fadvise(DONTNEED) first
                        and every expert dropped again after it is read
  almanac cache         warm, with --expert-cache-gb slots (optional, --cache-gb)
  llama.cpp             the same weights exported as GGUF (Q4_1 holds MLX's 4-bit groups
                        exactly), llama-cpp-python with mmap (optional, --llama-python)

decode tok/s, time to first token, bytes read per token, read GB/s achieved vs the disk's
raw sequential read (measured here with O_DIRECT), share of time spent waiting for each
layer's first expert, when nothing can be computed (later reads overlap compute) (these
three over the decode steps only; the prefill's reads are printed apart),
peak RSS (also less the interpreter's RSS after its imports). Each run is its own process
so peak RSS is its own. --rounds repeats every configuration in turn; the table gives
medians, and each "vs resident" ratio is the median of ratios taken within one round, so
other work on the machine skews both sides alike.

    python bench/moe_stream.py --workdir /var/tmp/moe-bench --layers 4 --tokens 24 --rounds 3
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
    "model_type": "qwen3_moe",
    "architectures": ["Qwen3MoeForCausalLM"],
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "moe_intermediate_size": 768,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "max_position_embeddings": 40960,
    "norm_topk_prob": True,
    "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}


# ---------------------------------------------------------------- building the checkpoint


def build(workdir: Path, layers: int) -> tuple[Path, Path]:
    import mlx.core as mx
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
        mx.save_safetensors(
            str(mlx_dir / "model.safetensors"), dict(tree_flatten(model.parameters())), metadata={"format": "mlx"}
        )
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
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["an offline library for everyone"] * 10, trainer)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"})
    )


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


# ---------------------------------------------------------------- GGUF export (for llama.cpp)


def _safetensors(path: Path) -> dict:
    """name -> (dtype, numpy view of the raw bytes); numpy alone (bf16 has no numpy dtype)."""
    import numpy as np

    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], data[a:b])
    return out


def _floats(entry):
    import numpy as np

    dtype, shape, raw = entry
    if dtype == "BF16":
        return (np.asarray(raw).view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if dtype == "F16":
        return np.asarray(raw).view(np.float16).astype(np.float32).reshape(shape)
    if dtype == "F32":
        return np.asarray(raw).view(np.float32).reshape(shape)
    raise ValueError(f"unexpected float dtype {dtype}")


def _packed(entry):
    """A quantized weight's bytes, one row per output (uint32 words little-endian)."""
    _dtype, shape, raw = entry
    return raw.reshape(*shape[:-1], -1)


def _q4_1(weight, scales, biases):
    """MLX affine 4-bit, group 64 -> GGUF Q4_1 blocks (32 values, fp16 d and m: x = d*q + m).

    An MLX group is two Q4_1 blocks with the same scale and bias, so the weights are the
    same numbers; returns the blocks and how many scales/biases fp16 could not hold exactly.
    """
    import numpy as np

    b8 = np.asarray(weight).view(np.uint8)  # value 2j in the low nibble of byte j
    q = np.stack([b8 & 0xF, b8 >> 4], axis=-1).reshape(*b8.shape[:-1], -1)
    blocks = q.reshape(*q.shape[:-1], -1, 32)
    qs = blocks[..., :16] | (blocks[..., 16:] << 4)
    d, m = (np.repeat(v, 2, axis=-1).astype(np.float16) for v in (scales, biases))
    inexact = int(
        np.sum(d.astype(np.float32) != np.repeat(scales, 2, axis=-1))
        + np.sum(m.astype(np.float32) != np.repeat(biases, 2, axis=-1))
    )
    out = np.concatenate([d[..., None].view(np.uint8), m[..., None].view(np.uint8), qs], axis=-1)
    return out.reshape(*out.shape[:-2], -1), inexact


def _dequantize(weight, scales, biases, bits, group):
    import numpy as np

    b = np.asarray(weight).view(np.uint8)
    if bits == 8:
        q = b.astype(np.float32)
    elif bits == 4:
        q = np.stack([b & 0xF, b >> 4], axis=-1).reshape(*b.shape[:-1], -1).astype(np.float32)
    else:
        raise ValueError(f"{bits}-bit tensors are not exported")
    g = q.reshape(*q.shape[:-1], -1, group)
    return (g * scales[..., None] + biases[..., None]).reshape(q.shape).astype(np.float32)


def export_gguf(mlx_dir: Path, out: Path) -> dict:
    """Write the synthetic qwen3_moe checkpoint as GGUF for llama.cpp, with the same weights."""
    import gguf

    cfg = json.loads((mlx_dir / "config.json").read_text())
    quant = cfg["quantization"]
    if (quant["bits"], quant["group_size"]) != (4, 64):
        raise SystemExit("the GGUF export handles the bench's 4-bit, group-64 checkpoint only")
    st = _safetensors(mlx_dir / "model.safetensors")
    w = gguf.GGUFWriter(str(out) + ".partial", "qwen3moe")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(4096)
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_expert_count(cfg["num_experts"])
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)

    # The bench's byte-level BPE, padded with control tokens to the model's vocabulary size
    # (llama.cpp sizes the embedding by the token list).
    tok = json.loads((mlx_dir / "tokenizer.json").read_text())["model"]
    tokens = [t for t, _ in sorted(tok["vocab"].items(), key=lambda kv: kv[1])]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for added in json.loads((mlx_dir / "tokenizer.json").read_text()).get("added_tokens", []):
        types[added["id"]] = gguf.TokenType.CONTROL
    pad = cfg["vocab_size"] - len(tokens)
    tokens += [f"<pad{i}>" for i in range(pad)]
    types += [gguf.TokenType.CONTROL] * pad
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["merges"]])
    w.add_eos_token_id(0)
    w.add_bos_token_id(0)

    inexact = 0

    def linear(src: str, dst: str) -> None:
        nonlocal inexact
        q = quant.get(src, quant)
        weight, scales, biases = (st[f"{src}.{k}"] for k in ("weight", "scales", "biases"))
        if (q["bits"], q["group_size"]) == (4, 64):
            blocks, bad = _q4_1(_packed(weight), _floats(scales), _floats(biases))
            inexact += bad
            w.add_tensor(dst, blocks, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
        else:  # the 8-bit router: no GGUF type holds MLX's 8-bit affine groups; use f32
            w.add_tensor(
                dst, _dequantize(_packed(weight), _floats(scales), _floats(biases), q["bits"], q["group_size"])
            )

    linear("model.embed_tokens", "token_embd.weight")
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}", f"blk.{i}"
        w.add_tensor(f"{b}.attn_norm.weight", _floats(st[f"{p}.input_layernorm.weight"]))
        w.add_tensor(f"{b}.ffn_norm.weight", _floats(st[f"{p}.post_attention_layernorm.weight"]))
        w.add_tensor(f"{b}.attn_q_norm.weight", _floats(st[f"{p}.self_attn.q_norm.weight"]))
        w.add_tensor(f"{b}.attn_k_norm.weight", _floats(st[f"{p}.self_attn.k_norm.weight"]))
        for src, dst in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"), ("o_proj", "attn_output")):
            linear(f"{p}.self_attn.{src}", f"{b}.{dst}.weight")
        linear(f"{p}.mlp.gate", f"{b}.ffn_gate_inp.weight")
        for src, dst in (("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"), ("down_proj", "ffn_down_exps")):
            linear(f"{p}.mlp.switch_mlp.{src}", f"{b}.{dst}.weight")
    w.add_tensor("output_norm.weight", _floats(st["model.norm.weight"]))
    linear("lm_head", "output.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(str(out) + ".partial", out)
    return {"inexact_fp16_scales": inexact}


# ---------------------------------------------------------------- one run (child process)

PROMPT = list(range(10, 42))  # 32 prompt tokens
GGUF_NAME = "model-q4_1.gguf"


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_now() -> int:
    return _status_bytes("VmRSS")


def rss() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    return _status_bytes("VmHWM")


def worker_llama(directory: str, tokens: int) -> dict:
    import numpy as np

    from llama_cpp import Llama

    path = Path(directory) / GGUF_NAME
    baseline = _rss_now()
    warm([path])
    llm = Llama(model_path=str(path), n_ctx=512, n_batch=512, n_threads=os.cpu_count(), use_mmap=True, verbose=False)
    vocab = llm.n_vocab()

    def greedy() -> int:
        # Llama.eval keeps no logits unless logits_all; read the last token's from the context.
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))))

    out = []
    t0 = time.perf_counter()
    llm.eval(PROMPT)
    out.append(greedy())
    t_first = time.perf_counter()
    for _ in range(tokens - 1):
        llm.eval([out[-1]])
        out.append(greedy())
    t_end = time.perf_counter()
    return {
        "ttft_s": t_first - t0,
        "decode_tok_s": (tokens - 1) / (t_end - t_first),
        "bytes_per_token": 0,
        "io_s": 0.0,
        "io_wait_s": 0.0,
        "total_s": t_end - t_first,
        "peak_rss": rss(),
        "baseline_rss": baseline,
        "resident_bytes": path.stat().st_size,
        "read_gbps": None,
        "tokens": out,
    }


def worker_paired(mlx_dir: str, stream_dir: str, tokens: int) -> dict:
    """Decode steps of mlx-lm resident and Almanac warm, alternated in one process.

    Each step is timed on its own (same greedy loop for both, no asynchronous evaluation),
    so load from other work on the machine hits both sides of every pair alike; the
    per-step ratios are the steadiest estimate of streaming vs resident on a busy machine.
    """
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.utils import load

    import llm_engine
    from llm_engine.device import cast_model

    resident, _ = load(mlx_dir)
    cast_model(resident)
    mx.eval(resident.parameters())
    engine = llm_engine.load(stream_dir)
    models = {"resident": resident, "streaming": engine.model}
    caches, ys, times = {}, {}, {name: [] for name in models}
    for name, model in models.items():
        caches[name] = make_prompt_cache(model)
        ys[name] = mx.argmax(model(mx.array(PROMPT)[None], cache=caches[name])[0, -1])
        mx.eval(ys[name])
    same = True
    for _ in range(tokens):
        for name, model in models.items():
            t = time.perf_counter()
            ys[name] = mx.argmax(model(ys[name].reshape(1, 1), cache=caches[name])[0, -1])
            mx.eval(ys[name])
            times[name].append(time.perf_counter() - t)
        same = same and int(ys["resident"]) == int(ys["streaming"])
    return {
        "ratios": [r / s for r, s in zip(times["resident"], times["streaming"])],
        "resident_s": times["resident"],
        "streaming_s": times["streaming"],
        "same_tokens": same,
    }


def worker(mode: str, directory: str, tokens: int, cache_gb: float) -> dict:
    if mode == "paired":
        mlx_dir, stream_dir = directory.split(os.pathsep)
        return worker_paired(mlx_dir, stream_dir, tokens)
    if mode == "gguf":
        path = Path(directory) / GGUF_NAME
        return export_gguf(Path(directory), path) if not path.exists() else {}
    if mode == "llama":
        return worker_llama(directory, tokens)
    import mlx.core as mx
    import mlx_lm.utils  # noqa: F401  (imported before the baseline, as the runs need it)

    baseline = _rss_now()
    if mode == "resident":
        from mlx.utils import tree_flatten
        from mlx_lm.generate import generate_step
        from mlx_lm.utils import load

        from llm_engine.device import cast_model

        model, _ = load(directory)
        cast_model(model)
        mx.eval(model.parameters())
        weights = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        t0 = time.perf_counter()
        t_first = None
        out = []
        for tok, _ in generate_step(mx.array(PROMPT), model, max_tokens=tokens):
            out.append(int(tok))
            if t_first is None:
                t_first = time.perf_counter()
        t_end = time.perf_counter()
        return {
            "ttft_s": t_first - t0,
            "decode_tok_s": (len(out) - 1) / (t_end - t_first),
            "bytes_per_token": 0,
            "io_s": 0.0,
            "io_wait_s": 0.0,
            "total_s": t_end - t_first,
            "peak_rss": rss(),
            "baseline_rss": baseline,
            "resident_bytes": weights,
            "read_gbps": None,
            "tokens": out,
        }

    import llm_engine

    # Cold: the files are evicted first and every read is dropped from the page cache again,
    # so each token reads from the disk as with a model many times larger than RAM.
    engine = llm_engine.load(directory, expert_cache_gb=cache_gb, drop_page_cache=mode == "cold")
    if mode == "cold":
        evict([engine.path / layer.file for layer in engine.manifest.layers])
    # Decode figures leave the prefill out: snapshot the I/O counters at the first token.
    out, first, s = [], None, None
    for step in llm_engine.stream_generate(engine, PROMPT, max_tokens=tokens, ignore_eos=True):
        out.append(step.token)
        if first is None:
            first = dict(engine.io.as_dict())
        s = step.stats or s
    decode_s = (s["generated_tokens"] - 1) / s["decode_tok_per_s"]
    n = s["generated_tokens"] - 1
    io = {k: s[k] - first[k] for k in ("bytes_read", "io_seconds", "io_wait_seconds")}
    return {
        "ttft_s": s["time_to_first_token_s"],
        "decode_tok_s": s["decode_tok_per_s"],
        "bytes_per_token": io["bytes_read"] / n,
        "io_s": io["io_seconds"],
        "io_wait_s": io["io_wait_seconds"],
        "total_s": decode_s,
        "prefill_bytes": first["bytes_read"],
        "peak_rss": s["peak_rss_bytes"],
        "baseline_rss": baseline,
        "resident_bytes": engine.resident_bytes(),
        "bank_bytes": engine.bank_bytes(),
        "hit_rate": s["cache_hit_rate"],
        "read_gbps": io["bytes_read"] / io["io_seconds"] / 1e9 if io["io_seconds"] else None,
        "tokens": out,
    }


def run_child(mode: str, directory: Path, tokens: int, cache_gb: float = 0.0, python: str = sys.executable) -> dict:
    out = subprocess.run(
        [
            python,
            __file__,
            "--worker",
            mode,
            "--dir",
            str(directory),
            "--tokens",
            str(tokens),
            "--cache-gb",
            str(cache_gb),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT)),
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def llama_python(requested: str | None) -> tuple[str | None, str]:
    """An interpreter with llama_cpp and gguf importable, or None and why not."""
    candidates = [requested] if requested else [sys.executable]
    for py in candidates:
        probe = subprocess.run(
            [py, "-c", "import llama_cpp, gguf; print(llama_cpp.__version__)"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return py, f"llama-cpp-python {probe.stdout.strip()}"
        reason = (probe.stderr.strip().splitlines() or ["failed"])[-1]
    return None, f"llama_cpp not importable with {candidates[0]} ({reason}); pass --llama-python"


# ---------------------------------------------------------------- table


def _median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def summarize(rounds: list[dict], raws: list[float]) -> dict:
    """Per configuration: the median of each figure over rounds, ratios taken within a round."""
    out = {}
    for name in rounds[0]:
        runs = [r[name] for r in rounds]
        row = {
            k: _median([run.get(k) for run in runs])
            for k in (
                "decode_tok_s",
                "ttft_s",
                "bytes_per_token",
                "read_gbps",
                "peak_rss",
                "baseline_rss",
                "resident_bytes",
                "bank_bytes",
                "hit_rate",
                "prefill_bytes",
            )
        }
        row["vs_resident"] = _median([r[name]["decode_tok_s"] / r["mlx-lm resident"]["decode_tok_s"] for r in rounds])
        row["ttft_vs_resident"] = _median([r[name]["ttft_s"] / r["mlx-lm resident"]["ttft_s"] for r in rounds])
        row["io_wait_share"] = _median([run["io_wait_s"] / run["total_s"] for run in runs if run.get("total_s")])
        row["raw_share"] = (
            _median([run["read_gbps"] / raw for run, raw in zip(runs, raws) if run.get("read_gbps")])
            if runs[0].get("read_gbps")
            else None
        )
        row["same_tokens"] = all(run["tokens"] == r["mlx-lm resident"]["tokens"] for run, r in zip(runs, rounds))
        ref = rounds[0]["mlx-lm resident"]["tokens"]
        row["agree"] = _median(
            [
                next(
                    (i for i, (a, b) in enumerate(zip(run["tokens"], ref)) if a != b), min(len(run["tokens"]), len(ref))
                )
                for run in runs
            ]
        )
        row["decode_all"] = [run["decode_tok_s"] for run in runs]
        out[name] = row
    return out


def table(summary: dict) -> str:
    lines = [
        "| run | decode tok/s | vs resident | TTFT s | MB read/decode token | read GB/s | % of raw read "
        "| first-read wait share | peak RSS GB | RSS less interpreter GB | tokens = resident |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        gbps = r["read_gbps"]
        lines.append(
            f"| {name} | {r['decode_tok_s']:.2f} | {r['vs_resident']:.2f}x | {r['ttft_s']:.2f} | "
            + (
                f"{r['bytes_per_token'] / 1e6:.1f} | {gbps:.2f} | {100 * r['raw_share']:.0f}% | "
                f"{100 * r['io_wait_share']:.0f}% | "
                if gbps
                else "0 | - | - | - | "
            )
            + f"{r['peak_rss'] / 2**30:.2f} | {(r['peak_rss'] - r['baseline_rss']) / 2**30:.2f} | "
            + ("yes" if r["same_tokens"] else f"first {r['agree']:.0f}")
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/almanac-moe-bench"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache-gb", type=float, default=0.0, help="also run warm with this expert cache (GB)")
    ap.add_argument(
        "--llama-python",
        default=None,
        help="interpreter with llama-cpp-python and gguf (default: this one, if it has them)",
    )
    ap.add_argument("--no-llama", action="store_true", help="skip the llama.cpp row")
    ap.add_argument("--json", type=Path, help="also write every run's figures here")
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
    subprocess.run(
        [sys.executable, __file__, "--worker", "build", "--workdir", str(args.workdir), "--layers", str(args.layers)],
        check=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    mlx_dir, stream_dir = args.workdir / "mlx-4bit", args.workdir / "almanac"
    expert_files = sorted((stream_dir / "experts").glob("*.bin"))
    llama_py, llama_note = (None, "skipped (--no-llama)") if args.no_llama else llama_python(args.llama_python)
    if llama_py:
        export = run_child("gguf", mlx_dir, args.tokens, python=llama_py)
        if export:
            print(f"exported {mlx_dir / GGUF_NAME}: {export}")
    rounds, raws, paired = [], [], []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds} ...", flush=True)
        rows = {}
        raw, how = raw_read_gbps(expert_files[i % len(expert_files)])
        warm([mlx_dir / "model.safetensors"])
        rows["mlx-lm resident"] = run_child("resident", mlx_dir, args.tokens)
        warm(expert_files)
        rows["almanac warm"] = run_child("warm", stream_dir, args.tokens)
        rows["almanac cold"] = run_child("cold", stream_dir, args.tokens)
        warm(expert_files + [mlx_dir / "model.safetensors"])
        paired.append(run_child("paired", f"{mlx_dir}{os.pathsep}{stream_dir}", args.tokens))
        if args.cache_gb:
            warm(expert_files)
            rows[f"almanac warm, cache {args.cache_gb:g} GB"] = run_child(
                "warm", stream_dir, args.tokens, args.cache_gb
            )
        if llama_py:
            rows[f"llama.cpp, {os.cpu_count()} threads, mmap"] = run_child(
                "llama", mlx_dir, args.tokens, python=llama_py
            )
        rounds.append(rows)
        raws.append(raw)
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "raw_gbps": raws, "how": how, "paired": paired}, indent=1))
    summary = summarize(rounds, raws)
    res = summary["mlx-lm resident"]
    print()
    print(
        f"{args.layers} layers of Qwen3-30B-A3B shapes, 4-bit, {args.tokens} generated tokens, "
        f"32-token prompt, medians of {args.rounds} rounds; resident weights: mlx-lm "
        f"{res['resident_bytes'] / 2**30:.2f} GB (fp32 scales, CPU), Almanac "
        f"{summary['almanac warm']['resident_bytes'] / 2**30:.2f} GB + bank "
        f"{summary['almanac warm']['bank_bytes'] / 2**20:.0f} MB"
    )
    print(table(summary))
    print(f"\nraw sequential read of an expert file ({how}): {_median(raws):.2f} GB/s (median)")
    print(
        "prefill (31 tokens) read: "
        + "; ".join(f"{k}: {v['prefill_bytes'] / 1e6:.0f} MB" for k, v in summary.items() if v.get("prefill_bytes"))
    )
    print(
        "expert cache hit rate: "
        + "; ".join(f"{k}: {v['hit_rate']:.0%}" for k, v in summary.items() if v.get("hit_rate"))
    )
    print(
        "decode tok/s per round: "
        + "; ".join(f"{k}: {', '.join(f'{x:.2f}' for x in v['decode_all'])}" for k, v in summary.items())
    )
    print(f"llama.cpp: {llama_note}")
    ratios = [r for p in paired for r in p["ratios"]]
    per_round = [_median(p["ratios"]) for p in paired]
    print(
        f"paired in one process, decode step by step (warm streaming / resident speed): median "
        f"{_median(ratios):.3f} over {len(ratios)} steps; per round "
        f"{', '.join(f'{r:.3f}' for r in per_round)}; same tokens: "
        f"{'yes' if all(p['same_tokens'] for p in paired) else 'NO'}"
    )
    print(
        f"load average after the runs: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs (other work on the machine skews the numbers)"
    )


if __name__ == "__main__":
    main()
