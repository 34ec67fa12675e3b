"""Benchmark: Almanac's streaming MoE engine side by side with its peers, on one checkpoint.

Builds (once, in --workdir) a synthetic 4-bit checkpoint with Qwen3-30B-A3B's layer shapes
(hidden 2048, 128 experts, top-8, expert width 768) but only a few layers and a small
vocabulary so it builds in minutes, converts it with Almanac, and runs, each in its own process,
on the same prompt token ids (--prompts, 32 and 1,500 tokens by default):

  mlx-lm resident         the whole quantized model in memory (the reference for tokens and
                          ratios), as shipped: the MLX wheel's BLAS (the reference BLAS on Linux)
  mlx-lm resident, OpenBLAS
                          the same with the system's OpenBLAS preloaded (LD_PRELOAD, its default
                          threads), as a user could run it: faster attention, same quantized kernels
  almanac warm / cold     experts streamed with the OS page cache only; cold evicts the files
                          with posix_fadvise(DONTNEED) first and drops every expert again after
                          reading it, so each token reads from the disk
  almanac ... cache       the same with an expert cache of --budget-gb
  almanac cold, wheel's BLAS
                          cold with ALMANAC_CPU_BLAS=off: the engine without OpenBLAS (every other
                          almanac row binds it, llm_engine/cpu_blas.py, and computes a prefill's
                          quantized products as dequantize + matmul there)
  almanac cold, MLX's kernels
                          cold with ALMANAC_CPU_KERNELS=off: MLX's quantized kernels for the few-row
                          products (every other almanac row takes the ones compiled by Numba,
                          llm_engine/cpu_quantized.py, where it is installed)
  almanac cold, 1 thread  cold with the CPU's work on MLX's one thread (--cpu-threads 1), as
                          resident mlx-lm runs; the other rows spread it over every core
  almanac cold, batch N   N sequences decoded together (BatchGenerator), cold: aggregate
                          decode tok/s against one sequence cold in the same round
  nunspark warm / cold    nunspark (PyPI) in a throwaway virtualenv with this interpreter's
                          mlx and mlx-lm versions, its expert budget --budget-gb
  llama.cpp warm / cold   the same weights exported as GGUF (Q4_1 holds MLX's 4-bit groups
                          exactly), llama-cpp-python with mmap (--llama-python); uncapped, the
                          page cache keeps the whole mapped model after its first read, so it
                          runs as resident (its peak RSS says so)
  ..., same memory cap    almanac warm / cold with the cache, and llama.cpp warm / cold, each in
                          a memory cgroup (bench/memory_cap.py) capped at 1.1x the peak RSS of
                          almanac cold, cache in the same round (or --cap-gb): the page cache
                          counts against the cap, so every engine gets the same bytes, as on a
                          box where the model does not fit; its files are evicted first

Columns: decode tok/s (and the ratio to resident taken within each round), prefill tok/s, time
to first token, MB read per decode token, peak RSS (VmHWM of the run's process), and whether the
greedy tokens equal resident mlx-lm's. Medians over --rounds; ratios are medians of per-round
ratios, so other work on a shared machine skews both sides alike. A peer that cannot run gets a
row saying why. `almanac model plan`'s forecast (llm_engine.forecast) is printed beside the
measured Almanac rows.

    python bench/engine_peers.py --workdir /var/tmp/engine-peers --rounds 3 \\
        --llama-python /var/tmp/llama-venv/bin/python
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
sys.path.insert(0, str(ROOT / "bench"))

from memory_cap import CapUnavailable, MemoryCap  # noqa: E402

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

GGUF_NAME = "model-q4_1.gguf"
NUNSPARK_VERSION = "0.13.0"


def prompt_ids(length: int, seed: int = 0) -> list[int]:
    """The bench's prompt: `length` token ids the tiny tokenizer knows (the same for every peer)."""
    if length == 32:
        return list(range(10, 42))
    import random

    rng = random.Random(seed + length)
    return [rng.randrange(10, 1000) for _ in range(length)]


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


def _timed(prompt: list[int], tokens: int, first, step) -> dict:
    """Greedy loop shared by the peers' workers: first(prompt) -> token, step(token) -> token."""
    t0 = time.perf_counter()
    out = [first(prompt)]
    t_first = time.perf_counter()
    for _ in range(tokens - 1):
        out.append(step(out[-1]))
    t_end = time.perf_counter()
    return {
        "ttft_s": t_first - t0,
        "prefill_tok_s": len(prompt) / (t_first - t0),
        "decode_tok_s": (tokens - 1) / (t_end - t_first),
        "tokens": out,
    }


def worker_llama(directory: str, prompt: list[int], tokens: int, cold: bool) -> dict:
    import numpy as np

    from llama_cpp import Llama

    path = Path(directory) / GGUF_NAME
    baseline = _rss_now()
    (evict if cold else warm)([path])
    llm = Llama(model_path=str(path), n_ctx=2048, n_batch=512, n_threads=os.cpu_count(), use_mmap=True, verbose=False)
    vocab = llm.n_vocab()

    def greedy() -> int:
        # Llama.eval keeps no logits unless logits_all; read the last token's from the context.
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))))

    def first(p):
        llm.eval(p)
        return greedy()

    def step(t):
        llm.eval([t])
        return greedy()

    out = _timed(prompt, tokens, first, step)
    return {**out, "bytes_per_token": None, "peak_rss": rss(), "baseline_rss": baseline}


def worker_nunspark(mlx_dir: str, packed: str, prompt: list[int], tokens: int, cold: bool, budget_gb: float) -> dict:
    """nunspark's StreamingEngine on its own packing of the same checkpoint, greedy."""
    import tempfile

    import mlx.core as mx
    from nunspark.engine import StreamingEngine
    from nunspark.generate import _open_kv_store, _prefill
    from nunspark.manifest import Manifest

    packed = Path(packed)
    files = [p for p in packed.rglob("*") if p.is_file()]
    core = sum(p.stat().st_size for p in files if "expert" not in p.name)
    baseline = _rss_now()
    (evict if cold else warm)(files)
    budget = core + int(budget_gb * 2**30)
    engine = StreamingEngine(
        packed,
        Manifest.load(packed / "manifest.json"),
        budget_bytes=budget,
        expert_cache_frac=int(budget_gb * 2**30) / budget,
    )
    tmp = tempfile.TemporaryDirectory(prefix="bench-nunspark-kv-")
    kv = _open_kv_store(engine, tmp.name, 10**12, True, None)
    first_bytes = {}

    def loaded() -> int:
        return sum(engine.cache.stats()["bytes_loaded"].values())

    def first(p):
        t = int(mx.argmax(_prefill(engine, p, kv)[0]).item())
        first_bytes["n"] = loaded()
        return t

    def step(t):
        return int(mx.argmax(engine.forward(mx.array([t])[None], kv=kv)[:, -1, :][0]).item())

    try:
        out = _timed(prompt, tokens, first, step)
        decode_bytes = (loaded() - first_bytes["n"]) / (tokens - 1)
    finally:
        kv.close()
        engine.close()
        tmp.cleanup()
    return {**out, "bytes_per_token": decode_bytes, "peak_rss": rss(), "baseline_rss": baseline}


def worker_resident(directory: str, prompt: list[int], tokens: int) -> dict:
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.utils import load

    from llm_engine.device import cast_model

    baseline = _rss_now()
    model, _ = load(directory)
    cast_model(model)
    mx.eval(model.parameters())
    t0 = time.perf_counter()
    t_first = None
    out = []
    for tok, _ in generate_step(mx.array(prompt), model, max_tokens=tokens):
        out.append(int(tok))
        if t_first is None:
            t_first = time.perf_counter()
    t_end = time.perf_counter()
    return {
        "ttft_s": t_first - t0,
        "prefill_tok_s": len(prompt) / (t_first - t0),
        "decode_tok_s": (len(out) - 1) / (t_end - t_first),
        "bytes_per_token": 0,
        "peak_rss": rss(),
        "baseline_rss": baseline,
        "tokens": out,
    }


def worker_almanac(
    directory: str,
    prompt: list[int],
    tokens: int,
    cold: bool,
    cache_gb: float,
    prefetch: bool = False,
    cpu_threads: int | None = None,
) -> dict:
    import llm_engine

    baseline = _rss_now()
    # Cold: the files are evicted first and every read is dropped from the page cache again,
    # so each token reads from the disk as with a model many times larger than RAM.
    engine = llm_engine.load(
        directory, expert_cache_gb=cache_gb, drop_page_cache=cold, prefetch=prefetch, cpu_threads=cpu_threads
    )
    (evict if cold else warm)([engine.path / layer.file for layer in engine.manifest.layers])
    # Decode figures leave the prefill out: snapshot the I/O counters at the first token.
    out, first, s = [], None, None
    for step in llm_engine.stream_generate(engine, prompt, max_tokens=tokens, ignore_eos=True):
        out.append(step.token)
        if first is None:
            first = dict(engine.io.as_dict())
        s = step.stats or s
    n = s["generated_tokens"] - 1
    return {
        "ttft_s": s["time_to_first_token_s"],
        "prefill_tok_s": s["prefill_tok_per_s"],
        "decode_tok_s": s["decode_tok_per_s"],
        "bytes_per_token": (s["bytes_read"] - first["bytes_read"]) / n,
        "prefill_bytes": first["bytes_read"],
        "hit_rate": s["cache_hit_rate"],
        "prefetch_used": s["prefetch_used"] / max(s["prefetch_reads"], 1),
        "peak_rss": s["peak_rss_bytes"],
        "baseline_rss": baseline,
        "tokens": out,
    }


def worker_batch(directory: str, prompt: list[int], tokens: int, n: int) -> dict:
    """n sequences cold, decoded together; then each alone (warm) to check its tokens."""
    import llm_engine

    baseline = _rss_now()
    prompts = [prompt] + [prompt[i:] + prompt[:i] for i in range(1, n)]  # n different prompts, same length
    engine = llm_engine.load(directory, drop_page_cache=True, max_batch=n)
    evict([engine.path / layer.file for layer in engine.manifest.layers])
    batch = llm_engine.BatchGenerator(engine)
    uids = [batch.insert(p, max_tokens=tokens, ignore_eos=True) for p in prompts]
    got = {u: [] for u in uids}
    first_io = None
    while batch:
        for s in batch.step():
            got[s.uid].append(s.token)
        if first_io is None:
            first_io = engine.io.bytes_read
    stats = batch.stats()
    peak = rss()
    singles = [llm_engine.generate(engine, p, max_tokens=tokens, ignore_eos=True).tokens for p in prompts]
    return {
        "ttft_s": None,
        "prefill_tok_s": None,
        "decode_tok_s": stats["aggregate_decode_tok_per_s"],
        "bytes_per_token": (stats["bytes_read"] - first_io) / max(stats["decode_tokens"], 1),
        "peak_rss": peak,
        "baseline_rss": baseline,
        "tokens": got[uids[0]],
        "same_as_single": all(got[u] == t for u, t in zip(uids, singles)),
    }


def worker_forecast(directory: str, prompts: list[int], budget_gb: float) -> dict:
    """`almanac model plan`'s forecast, page cache only and with the --budget-gb cache."""
    from llm_engine.forecast import forecast
    from llm_engine.memory import process_rss

    out = {}
    for name, gb in (("page cache", 0.0), ("cache", budget_gb)):
        f = forecast(directory, 64 * 2**30, process_rss(), prompts=tuple(prompts), expert_cache_gb=gb)
        out[name] = {"decode": f.decode, "prefill": f.prefill, "reads": f.reads.__dict__}
    return out


def worker(args) -> dict:
    prompt = prompt_ids(args.prompt_len)
    mode = args.worker
    if mode == "gguf":
        path = Path(args.dir) / GGUF_NAME
        return export_gguf(Path(args.dir), path) if not path.exists() else {}
    if mode == "nunspark-pack":
        from nunspark.packer import pack

        pack(args.dir, args.out)
        return {}
    if mode == "blas":
        from llm_engine import cpu_blas

        return {"bound": cpu_blas.bound(), "describe": cpu_blas.describe()}
    if mode == "forecast":
        return worker_forecast(args.dir, [int(p) for p in args.prompts.split(",")], args.cache_gb)
    if mode.startswith("llama"):
        return worker_llama(args.dir, prompt, args.tokens, cold=mode.endswith("cold"))
    if mode.startswith("nunspark"):
        return worker_nunspark(args.dir, args.out, prompt, args.tokens, mode.endswith("cold"), args.cache_gb)
    import llm_engine  # noqa: F401  first: it binds MLX's CPU BLAS (llm_engine/cpu_blas.py; ALMANAC_CPU_BLAS=off keeps the wheel's)
    import mlx_lm.utils  # noqa: F401  (imported before the baseline, as the runs need it)

    if mode == "resident":
        return worker_resident(args.dir, prompt, args.tokens)
    if mode.startswith("batch"):
        return worker_batch(args.dir, prompt, args.tokens, int(mode[len("batch") :]))
    return worker_almanac(
        args.dir,
        prompt,
        args.tokens,
        cold=mode == "cold",
        cache_gb=args.cache_gb,
        prefetch=args.prefetch == "on",
        cpu_threads=args.cpu_threads or None,
    )


CAPPED = "same memory cap"  # the rows run in a memory cgroup (run_child's cap)

# The MLX wheel's own BLAS (reference BLAS on Linux): mlx-lm as shipped, and the engine before cpu_blas.py.
WHEEL_BLAS = {"ALMANAC_CPU_BLAS": "off"}  # an environment (the rows pass {"env": WHEEL_BLAS})
MLX_KERNELS = {"ALMANAC_CPU_KERNELS": "off"}  # MLX's quantized kernels instead of the compiled ones
# mlx-lm given the same OpenBLAS the way a user would give it, preloaded, with its default threads.
OPENBLAS_ROW = {"env": {"ALMANAC_CPU_BLAS": "off", "LD_PRELOAD": "libopenblas.so.0"}}


def run_child(
    mode: str,
    directory: Path,
    python: str = sys.executable,
    env: dict | None = None,
    cap: int | None = None,
    files: list | None = None,
    **opts,
) -> dict:
    """One run in its own process; with `cap`, in a memory cgroup of that many bytes (memory_cap.py), its
    model's `files` evicted first so the page cache it fills is charged to it."""
    cmd = [python, __file__, "--worker", mode, "--dir", str(directory)]
    for k, v in opts.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    group = None
    if cap is not None:
        try:
            group = MemoryCap(cap)
        except CapUnavailable as e:
            return {"error": str(e)}
        evict(files or [])
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **(env or {})),
            preexec_fn=group.enter if group else None,
        )
        if group and group.ooms():
            return {"error": f"{mode} killed by the kernel: over its {cap / 2**30:.2f} GB cap"}
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"{mode} failed: {tail[:300]}", "stderr": out.stderr[-3000:]}
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if group:
            result.update(cap=cap, cap_peak=group.peak())
        return result
    finally:
        if group:
            group.close()


def cap_for(rows: dict, key: str, cap_gb: float) -> int | None:
    """The capped rows' memory: --cap-gb, or (0) the peak RSS of row `key` of this round plus 10% (the
    engine's own memory bound), in whole MiB; None when that row did not run."""
    if cap_gb:
        return int(cap_gb * 2**30)
    run = rows.get(key) or {"error": "not run"}
    return None if "error" in run else int(run["peak_rss"] * 1.1) // 2**20 * 2**20


def llama_python(requested: str | None) -> tuple[str | None, str]:
    """An interpreter with llama_cpp and gguf importable, or None and why not."""
    py = requested or sys.executable
    probe = subprocess.run(
        [py, "-c", "import llama_cpp, gguf; print(llama_cpp.__version__)"], capture_output=True, text=True
    )
    if probe.returncode == 0:
        return py, f"llama-cpp-python {probe.stdout.strip()}"
    reason = (probe.stderr.strip().splitlines() or ["failed"])[-1]
    return None, f"llama_cpp not importable with {py} ({reason}); build it and pass --llama-python"


def nunspark_python(venv: Path) -> tuple[str | None, str]:
    """A throwaway virtualenv with nunspark and this interpreter's mlx and mlx-lm versions."""
    from importlib.metadata import version

    py = venv / "bin" / "python"
    want = f"nunspark=={NUNSPARK_VERSION} mlx[cpu]=={version('mlx')} mlx-lm=={version('mlx-lm')}"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        inst = subprocess.run([str(py), "-m", "pip", "install", "-q", *want.split()], capture_output=True, text=True)
        if inst.returncode != 0:
            return None, f"pip install {want} failed: {(inst.stderr.strip().splitlines() or ['?'])[-1]}"
    probe = subprocess.run(
        [
            str(py),
            "-c",
            "import nunspark, mlx_lm; from importlib.metadata import version as v; "
            "print(v('nunspark'), v('mlx'), v('mlx-lm'))",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return None, f"nunspark not importable in {venv}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"
    return str(py), "nunspark {} (mlx {}, mlx-lm {})".format(*probe.stdout.split())


# ---------------------------------------------------------------- table


def _median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def summarize(rounds: list[dict]) -> dict:
    """Per configuration: the median of each figure over rounds, ratios taken within a round."""
    out = {}
    for name in rounds[0]:
        runs = [r[name] for r in rounds if "error" not in r[name]]
        if not runs:
            out[name] = {"error": rounds[0][name]["error"]}
            continue
        row = {k: _median([run.get(k) for run in runs]) for k in runs[0] if k not in ("tokens", "same_as_single")}
        pairs = [(r[name], r["mlx-lm resident"]) for r in rounds if "error" not in r[name]]
        row["vs_resident"] = _median([a["decode_tok_s"] / b["decode_tok_s"] for a, b in pairs])
        ref = rounds[0]["mlx-lm resident"]["tokens"]
        row["same_tokens"] = all(run["tokens"] == ref for run in runs)
        row["agree"] = _median(
            [next((i for i, (a, b) in enumerate(zip(run["tokens"], ref)) if a != b), len(ref)) for run in runs]
        )
        if "same_as_single" in runs[0]:
            row["same_as_single"] = all(run["same_as_single"] for run in runs)
            single = [r.get("almanac cold") for r in rounds]
            row["vs_one"] = _median(
                [a["decode_tok_s"] / b["decode_tok_s"] for a, b in zip(runs, single) if b and "error" not in b]
            )
        row["decode_all"] = [run["decode_tok_s"] for run in runs]
        out[name] = row
    return out


def _f(v, fmt="{:.2f}", none="-"):
    return none if v is None else fmt.format(v)


def table(summary: dict) -> str:
    lines = [
        "| run | decode tok/s | vs resident | prefill tok/s | TTFT s | MB read/decode token | peak RSS GB "
        "| tokens = resident |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        if "error" in r:
            lines.append(f"| {name} | not run: {r['error']} |  |  |  |  |  |  |")
            continue
        same = "yes" if r["same_tokens"] else f"first {r['agree']:.0f}"
        if "same_as_single" in r:
            same += f"; each = its single run: {'yes' if r['same_as_single'] else 'NO'}"
            name = f"{name} ({_f(r.get('vs_one'), '{:.2f}')}x one cold)"
        lines.append(
            f"| {name} | {r['decode_tok_s']:.2f} | {_f(r['vs_resident'])}x | {_f(r.get('prefill_tok_s'), '{:.1f}')} | "
            f"{_f(r.get('ttft_s'))} | {_f(r.get('bytes_per_token') and r['bytes_per_token'] / 1e6, '{:.1f}', '0')} | "
            f"{r['peak_rss'] / 2**30:.2f} | {same} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/almanac-engine-peers"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=16, help="generated tokens per run")
    ap.add_argument("--prompts", default="32,1500", help="prompt lengths in tokens, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="rounds for prompts of up to 256 tokens")
    ap.add_argument("--long-rounds", type=int, default=1, help="rounds for longer prompts")
    ap.add_argument("--budget-gb", type=float, default=0.125, help="expert memory for the cache rows and nunspark")
    ap.add_argument("--batch", type=int, default=4, help="sequences in the batched row (0: none)")
    ap.add_argument(
        "--cap-gb",
        type=float,
        default=0.0,
        help=f"memory of the rows '{CAPPED}' (0: 1.1x the round's almanac cold, cache peak RSS)",
    )
    ap.add_argument("--llama-python", default=None, help="interpreter with llama-cpp-python and gguf")
    ap.add_argument("--nunspark-venv", type=Path, default=None, help="default: WORKDIR/nunspark-venv")
    ap.add_argument("--skip", default="", help="comma-separated peers to leave out: llama, nunspark")
    ap.add_argument("--only", default=None, help="run only these rows (names as for --long-configs), any prompt")
    ap.add_argument(
        "--long-configs",
        default="all",
        help="for prompts over 256 tokens, only these rows (comma-separated: resident, resident-openblas, warm, cold, "
        "cold-wheel-blas, cold-mlx-kernels, warm-cache, cold-cache, cold-1-thread, cold-prefetch, batch, "
        "nunspark-warm, nunspark-cold, "
        "llama-warm, llama-cold, warm-cache-capped, cold-cache-capped, llama-warm-capped, llama-cold-capped); "
        "the others "
        "say they were skipped",
    )
    ap.add_argument("--json", type=Path, help="also write every run's figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--prompt-len", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--cache-gb", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--prefetch", choices=("on", "off"), default="off", help=argparse.SUPPRESS)
    ap.add_argument("--cpu-threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "build":
        build(args.workdir, args.layers)
        return
    if args.worker:
        print(json.dumps(worker(args)))
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
    skip = set(filter(None, args.skip.split(",")))
    notes = {}
    llama_py, notes["llama.cpp"] = (None, "skipped") if "llama" in skip else llama_python(args.llama_python)
    if llama_py:
        export = run_child("gguf", mlx_dir, python=llama_py)
        if "error" in export:
            llama_py, notes["llama.cpp"] = None, export["error"]
    ns_py, notes["nunspark"] = (
        (None, "skipped")
        if "nunspark" in skip
        else nunspark_python(args.nunspark_venv or args.workdir / "nunspark-venv")
    )
    packed = args.workdir / "nunspark-packed"
    if ns_py and not (packed / "manifest.json").exists():
        r = run_child("nunspark-pack", mlx_dir, python=ns_py, out=packed)
        if "error" in r:
            ns_py, notes["nunspark"] = None, r["error"]
    blas = run_child("blas", stream_dir)
    openblas_py = sys.executable if blas.get("bound") else None
    notes["OpenBLAS"] = blas.get("describe") or blas.get("error", "?")
    prompts = [int(p) for p in args.prompts.split(",")]
    forecast = run_child("forecast", stream_dir, prompts=args.prompts, cache_gb=args.budget_gb)
    raw, how = raw_read_gbps(expert_files[0])
    results = {}
    budget = f"{args.budget_gb:g} GB"
    for plen in prompts:
        rounds = []
        wanted = None if plen <= 256 or args.long_configs == "all" else set(args.long_configs.split(","))
        if args.only:
            wanted = set(args.only.split(","))
        for i in range(args.rounds if plen <= 256 else args.long_rounds):
            print(f"prompt {plen}: round {i + 1} ...", flush=True)
            if llama_py is None and "llama" not in skip and "not importable" in notes["llama.cpp"]:
                llama_py, notes["llama.cpp"] = llama_python(args.llama_python)  # a build may have finished
                if llama_py:
                    export = run_child("gguf", mlx_dir, python=llama_py)
                    if "error" in export:
                        llama_py, notes["llama.cpp"] = None, export["error"]
            o = {"prompt_len": plen, "tokens": args.tokens}
            here = sys.executable
            # (row, --long-configs name, worker mode, directory, interpreter or None with why not, options)
            plan = [
                ("mlx-lm resident", "resident", "resident", mlx_dir, here, {"env": WHEEL_BLAS}),
                ("mlx-lm resident, OpenBLAS", "resident-openblas", "resident", mlx_dir, openblas_py, OPENBLAS_ROW),
                ("almanac warm", "warm", "warm", stream_dir, here, {}),
                ("almanac cold", "cold", "cold", stream_dir, here, {}),
                ("almanac cold, wheel's BLAS", "cold-wheel-blas", "cold", stream_dir, here, {"env": WHEEL_BLAS}),
                ("almanac cold, MLX's kernels", "cold-mlx-kernels", "cold", stream_dir, here, {"env": MLX_KERNELS}),
                ("almanac cold, 1 CPU thread", "cold-1-thread", "cold", stream_dir, here, {"cpu_threads": 1}),
                ("almanac cold, prefetch", "cold-prefetch", "cold", stream_dir, here, {"prefetch": "on"}),
                (f"almanac warm, cache {budget}", "warm-cache", "warm", stream_dir, here, {"cache_gb": args.budget_gb}),
                (f"almanac cold, cache {budget}", "cold-cache", "cold", stream_dir, here, {"cache_gb": args.budget_gb}),
            ]
            if args.batch and plen <= 256:
                plan.append(
                    (f"almanac cold, batch of {args.batch}", "batch", f"batch{args.batch}", stream_dir, here, {})
                )
            for kind in ("warm", "cold"):
                ns = {"out": packed, "cache_gb": args.budget_gb}
                plan.append(
                    (f"nunspark {kind}, budget {budget}", f"nunspark-{kind}", f"nunspark-{kind}", mlx_dir, ns_py, ns)
                )
            for kind in ("warm", "cold"):
                key = f"llama.cpp {kind}, {os.cpu_count()} threads, mmap"
                plan.append((key, f"llama-{kind}", f"llama-{kind}", mlx_dir, llama_py, {}))
            # The same memory for both: each in a cgroup capped at what almanac's cached row needed (cap_for).
            almanac_files = [stream_dir / "model.safetensors", *expert_files]
            for kind in ("warm", "cold"):
                key = f"almanac {kind}, cache {budget}, {CAPPED}"
                capped = {"cache_gb": args.budget_gb, "files": almanac_files}
                plan.append((key, f"{kind}-cache-capped", kind, stream_dir, here, capped))
            for kind in ("warm", "cold"):
                key = f"llama.cpp {kind}, {os.cpu_count()} threads, mmap, {CAPPED}"
                capped = {"files": [mlx_dir / GGUF_NAME]}
                plan.append((key, f"llama-{kind}-capped", f"llama-{kind}", mlx_dir, llama_py, capped))
            why = {"nunspark": notes["nunspark"], "llama": notes["llama.cpp"], "resident": notes["OpenBLAS"]}
            rows = {}
            warm([mlx_dir / "model.safetensors"])
            for key, config, mode, directory, python, extra in plan:
                if wanted is not None and config not in wanted:
                    rows[key] = {
                        "error": f"skipped for {plen}-token prompts ({'--only' if args.only else '--long-configs'})"
                    }
                elif python is None:
                    rows[key] = {"error": why[mode.split("-")[0]]}
                elif "files" in extra:
                    cap = cap_for(rows, f"almanac cold, cache {budget}", args.cap_gb)
                    if cap is None:
                        rows[key] = {"error": f"no cap: almanac cold, cache {budget} did not run (or pass --cap-gb)"}
                    else:
                        rows[key] = run_child(mode, directory, python=python, cap=cap, **o, **extra)
                else:
                    rows[key] = run_child(mode, directory, python=python, **o, **extra)
            rounds.append(rows)
        results[plen] = rounds
    if args.json:
        args.json.write_text(json.dumps({"results": results, "forecast": forecast, "raw_gbps": raw}, indent=1))
    print(
        f"\n{args.layers} layers of Qwen3-30B-A3B shapes, 4-bit, {args.tokens} generated tokens; expert budget "
        f"{budget}; raw sequential read ({how}) {raw:.2f} GB/s"
    )
    for plen, rounds in results.items():
        summary = summarize(rounds)
        print(f"\nprompt of {plen} tokens, medians of {len(rounds)} round(s):")
        print(table(summary))
        print(
            "decode tok/s per round: "
            + "; ".join(
                f"{k}: {', '.join(f'{x:.2f}' for x in v['decode_all'])}" for k, v in summary.items() if "error" not in v
            )
        )
        if "error" not in forecast:
            for name, key in (("page cache", "almanac"), ("cache", f"almanac ... cache {budget}")):
                f = forecast[name]
                p = f["prefill"][str(plen)]
                print(
                    f"forecast ({name}): decode warm {f['decode']['warm']['tok_per_s']:.2f}, cold "
                    f"{f['decode']['cold']['tok_per_s']:.2f} tok/s; prefill warm {p['warm']['tok_per_s']:.1f}, "
                    f"cold {p['cold']['tok_per_s']:.1f} tok/s (compare {key} warm/cold above)"
                )
        caps = {k: v for k, v in summary.items() if "error" not in v and v.get("cap")}
        if caps:
            print(
                f"{CAPPED}: each run in a memory cgroup (bench/memory_cap.py) of 1.1x almanac cold, cache {budget}'s "
                "peak RSS in its round unless --cap-gb; the group's peak, page cache included: "
                + "; ".join(
                    f"{k}: {(v['cap_peak'] or 0) / 2**30:.2f} of {v['cap'] / 2**30:.2f} GB" for k, v in caps.items()
                )
            )
        for k, v in summary.items():
            if "error" in v:
                print(f"{k}: {v['error']}")
    print("peers: " + "; ".join(f"{k}: {v}" for k, v in notes.items()))
    print(
        f"load average after the runs: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs (other work on the machine skews the numbers)"
    )


if __name__ == "__main__":
    main()
