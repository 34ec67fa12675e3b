"""A GGUF file (llama.cpp's format, how most checkpoints are published) as a checkpoint to convert.

`gguf_to_checkpoint(file, out)` writes a Hugging Face-style directory that `convert` then takes
like any download: config.json rebuilt from the file's metadata, the tokenizer rebuilt by
transformers' own GGUF tokenizer builders (tokenizer.json, tokenizer_config.json with the chat
template when the file has one), and every tensor dequantized (`gguf.quants`, numpy: Q4_K,
Q6_K, Q5_0, Q8_0 and the rest) and stored in bf16 under mlx-lm's parameter names. `convert`
then quantizes it to MLX's format (4 bits by default) as it would a bf16 download.

Only what llama.cpp's converter changed is undone: Gemma's norm weights were stored plus one,
Llama's query and key rows were permuted for its rotary layout.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError, UnsupportedModelError

MAGIC = b"GGUF"
SHARD_BYTES = 1 << 30


def is_gguf(path: Path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


@dataclass
class Architecture:
    model_type: str
    architectures: list[str]
    extra: dict = field(default_factory=dict)  # fixed config fields
    norm_shift: float = 0.0  # llama.cpp stored norm weights + this
    permute_qk: bool = False  # llama.cpp permuted q/k rows (rotary layout)


# GGUF general.architecture -> how to rebuild its mlx-lm checkpoint.
ARCHITECTURES = {
    "gemma3": Architecture(
        "gemma3_text", ["Gemma3ForCausalLM"], norm_shift=1.0, extra={"hidden_activation": "gelu_pytorch_tanh"}
    ),
    "llama": Architecture("llama", ["LlamaForCausalLM"], permute_qk=True),
    "qwen2": Architecture("qwen2", ["Qwen2ForCausalLM"]),
    "qwen3": Architecture("qwen3", ["Qwen3ForCausalLM"]),
    "qwen3moe": Architecture(
        "qwen3_moe",
        ["Qwen3MoeForCausalLM"],
        extra={"decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True},
    ),
}

# GGUF metadata key (after "<arch>.") -> Hugging Face config field.
CONFIG_KEYS = {
    "context_length": "max_position_embeddings",
    "embedding_length": "hidden_size",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "attention.key_length": "head_dim",
    "attention.sliding_window": "sliding_window",
    "rope.freq_base": "rope_theta",
    "expert_count": "num_experts",
    "expert_used_count": "num_experts_per_tok",
    "expert_feed_forward_length": "moe_intermediate_size",
}


def _gguf():
    try:
        import gguf
    except ImportError:
        raise UnsupportedModelError("reading GGUF files needs the 'gguf' package (pip install gguf)") from None
    return gguf


def _value(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_config(reader, arch_name: str) -> dict:
    arch = ARCHITECTURES[arch_name]
    cfg = {"model_type": arch.model_type, "architectures": arch.architectures, "torch_dtype": "bfloat16", **arch.extra}
    for key, name in CONFIG_KEYS.items():
        v = _value(reader, f"{arch_name}.{key}")
        if v is not None:
            cfg[name] = v
    tokens = _value(reader, "tokenizer.ggml.tokens")
    names = {t.name for t in reader.tensors}
    embed = next(t for t in reader.tensors if t.name == "token_embd.weight")
    cfg["vocab_size"] = int(embed.shape[-1])
    if tokens is not None and len(tokens) > cfg["vocab_size"]:
        raise CheckpointError(f"{len(tokens)} tokens but an embedding of {cfg['vocab_size']} rows")
    cfg["tie_word_embeddings"] = "output.weight" not in names
    for key, name in (("eos_token_id", "eos_token_id"), ("bos_token_id", "bos_token_id")):
        v = _value(reader, f"tokenizer.ggml.{key}")
        if v is not None:
            cfg[name] = int(v)
    if arch_name == "gemma3":
        cfg.setdefault("query_pre_attn_scalar", cfg.get("head_dim", 256))
    if "head_dim" not in cfg and "hidden_size" in cfg and "num_attention_heads" in cfg:
        cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg


def write_tokenizer(reader, arch_name: str, out: Path) -> None:
    """tokenizer.json and tokenizer_config.json, built by transformers from the GGUF vocabulary."""
    try:
        from transformers import PreTrainedTokenizerFast
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer
    except ImportError as e:
        raise UnsupportedModelError(f"this transformers cannot rebuild a tokenizer from GGUF metadata ({e})") from None
    tokenizer, config = {}, {}
    for group, target in (("tokenizer", tokenizer), ("tokenizer_config", config)):
        for key, name in GGUF_TOKENIZER_MAPPING[group].items():
            v = _value(reader, f"tokenizer.{key}")
            if v is not None:
                target[name] = v
    if "tokens" not in tokenizer:
        raise CheckpointError("the GGUF file has no tokenizer (tokenizer.ggml.tokens)")
    if tokenizer.get("tokenizer_type") == "llama":
        config.setdefault("add_bos_token", True)
    try:
        backend, _ = convert_gguf_tokenizer(arch_name, tokenizer)
    except (KeyError, ValueError, NotImplementedError) as e:
        raise UnsupportedModelError(f"GGUF tokenizer {tokenizer.get('tokenizer_type')!r}: {e}") from None
    special = {}
    for name, key in (
        ("bos_token", "bos_token_id"),
        ("eos_token", "eos_token_id"),
        ("unk_token", "unk_token_id"),
        ("pad_token", "pad_token_id"),
    ):
        if tokenizer.get(key) is not None:
            special[name] = tokenizer["tokens"][int(tokenizer[key])]
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=backend, **special, **{k: v for k, v in config.items() if k != "chat_template"}
    )
    if config.get("chat_template"):
        wrapped.chat_template = config["chat_template"]
    wrapped.save_pretrained(str(out))


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary row permutation of a query or key projection."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _targets(cfg: dict) -> list[str]:
    """mlx-lm's parameter names for this config (unquantized), in model order."""
    from mlx.utils import tree_flatten

    from .architectures import build_model

    model = build_model(cfg)
    names = [k for k, _ in tree_flatten(model.parameters())]
    if cfg.get("tie_word_embeddings"):
        names = [k for k in names if not k.startswith("lm_head.")]
    return names


def _gguf_name(name_map, mlx_name: str) -> str | None:
    # mlx-lm stacks experts in "switch_mlp"; GGUF's map knows the merged Hugging Face names.
    key = mlx_name.replace(".mlp.switch_mlp.", ".mlp.experts.")
    for suffix in (".weight", ".bias"):
        if key.endswith(suffix):
            base = name_map.get_name(key[: -len(suffix)])
            return base + suffix if base else None
    return name_map.get_name(key)


def gguf_to_checkpoint(gguf_path: Path, out: Path, progress=None) -> dict:
    """Write `out` (a new directory): config.json, tokenizer files and bf16 safetensors."""
    import mlx.core as mx

    gguf = _gguf()
    gguf_path, out = Path(gguf_path), Path(out)
    try:
        reader = gguf.GGUFReader(str(gguf_path))
    except (ValueError, OSError, struct.error) as e:
        raise CheckpointError(f"{gguf_path}: not a readable GGUF file ({e})") from None
    arch_name = _value(reader, "general.architecture")
    if arch_name not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{gguf_path}: GGUF architecture {arch_name!r} is not supported "
            f"(supported: {', '.join(sorted(ARCHITECTURES))})"
        )
    arch = ARCHITECTURES[arch_name]
    cfg = read_config(reader, arch_name)
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    write_tokenizer(reader, arch_name, out)

    tensors = {t.name: t for t in reader.tensors}
    arch_enum = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    name_map = gguf.get_tensor_name_map(arch_enum, cfg["num_hidden_layers"])
    targets = _targets(cfg)
    used, shard, shard_bytes, index = set(), {}, 0, {}

    def flush():
        nonlocal shard, shard_bytes
        if shard:
            name = f"model-{len(set(index.values())) + 1:05d}.safetensors"
            mx.save_safetensors(str(out / name), shard, metadata={"format": "pt"})
            index.update({k: name for k in shard})
            shard, shard_bytes = {}, 0

    for name in targets:
        source = _gguf_name(name_map, name)
        if source not in tensors:
            raise CheckpointError(f"{gguf_path}: no tensor for {name} (looked for {source!r})")
        t = tensors[source]
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if arch.norm_shift and name.endswith("norm.weight"):
            w = w - arch.norm_shift
        if arch.permute_qk and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg["num_attention_heads"] if "q_proj" in name else cfg["num_key_value_heads"]
            w = _unpermute(w, heads)
        arr = mx.array(w).astype(mx.bfloat16)
        mx.eval(arr)
        shard[name] = arr
        shard_bytes += arr.nbytes
        used.add(source)
        if shard_bytes >= SHARD_BYTES:
            flush()
        if progress is not None:
            progress.update(1)
    flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    left = sorted(set(tensors) - used - {"rope_freqs.weight"})
    if left:
        raise CheckpointError(f"{gguf_path}: tensors the model has no place for: {', '.join(left[:5])}")
    return cfg
