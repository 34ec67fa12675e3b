"""Tiny random MoE checkpoints in Hugging Face layout, quantized by mlx-lm, converted by us.

Every checkpoint is built from mlx-lm's own model class (random weights), then written
under the tensor names and shapes of the real Hugging Face checkpoints (per-expert tensors,
fused gate_up for Qwen3.5, mxfp4 blocks for gpt-oss), so the conversion path exercised is
the one real downloads take.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

VOCAB = 320

CONFIGS = {
    "qwen3_moe": {
        "model_type": "qwen3_moe",
        "architectures": ["Qwen3MoeForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_experts": 16,
        "num_experts_per_tok": 4,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "moe_intermediate_size": 64,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "max_position_embeddings": 4096,
        "norm_topk_prob": True,
    },
    "mixtral": {
        "model_type": "mixtral",
        "architectures": ["MixtralForCausalLM"],
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1e6,
        "tie_word_embeddings": False,
    },
    "deepseek_v3": {
        "model_type": "deepseek_v3",
        "architectures": ["DeepseekV3ForCausalLM"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "n_shared_experts": 1,
        "n_routed_experts": 16,
        "routed_scaling_factor": 2.5,
        "kv_lora_rank": 64,
        "q_lora_rank": 64,
        "qk_rope_head_dim": 16,
        "v_head_dim": 32,
        "qk_nope_head_dim": 32,
        "topk_method": "noaux_tc",
        "scoring_func": "sigmoid",
        "norm_topk_prob": True,
        "n_group": 2,
        "topk_group": 1,
        "num_experts_per_tok": 4,
        "moe_layer_freq": 1,
        "first_k_dense_replace": 1,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": False,
    },
    "gpt_oss": {
        "model_type": "gpt_oss",
        "architectures": ["GptOssForCausalLM"],
        "num_hidden_layers": 2,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "rms_norm_eps": 1e-5,
        "hidden_size": 64,
        "intermediate_size": 64,
        "head_dim": 16,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "sliding_window": 16,
        "rope_theta": 150000,
        "layer_types": ["sliding_attention", "full_attention"],
        "quantization_config": {"quant_method": "mxfp4"},
    },
    "qwen3_5_moe": {
        "model_type": "qwen3_5_moe",
        "architectures": ["Qwen3_5MoeForConditionalGeneration"],
        "text_config": {
            "model_type": "qwen3_5_moe_text",
            "hidden_size": 64,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 4096,
            "linear_num_value_heads": 4,
            "linear_num_key_heads": 2,
            "linear_key_head_dim": 16,
            "linear_value_head_dim": 16,
            "linear_conv_kernel_dim": 4,
            "full_attention_interval": 2,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "num_experts": 16,
            "num_experts_per_tok": 4,
            "decoder_sparse_step": 1,
            "shared_expert_intermediate_size": 64,
            "moe_intermediate_size": 64,
            "norm_topk_prob": True,
            "intermediate_size": 128,
            "rope_parameters": {
                "type": "default",
                "mrope_section": [2, 1, 1],
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.5,
            },
        },
    },
}
ARCHS = list(CONFIGS)


def _config(arch: str) -> dict:
    cfg = json.loads(json.dumps(CONFIGS[arch]))
    target = cfg.get("text_config", cfg)
    target["vocab_size"] = VOCAB
    cfg["torch_dtype"] = "bfloat16"
    if "text_config" in cfg:
        cfg["text_config"]["dtype"] = "bfloat16"
    cfg["eos_token_id"] = 0
    return cfg


def _mlx_params(cfg: dict, seed: int) -> dict:
    from mlx_lm.utils import _get_classes

    model_class, args_class = _get_classes(cfg)
    mx.random.seed(seed)
    model = model_class(args_class.from_dict(cfg))
    params = dict(tree_flatten(model.parameters()))
    # Spread the routers so that different tokens really pick different experts.
    for k, v in params.items():
        if k.endswith(("mlp.gate.weight", "mlp.router.weight")):
            params[k] = mx.random.normal(v.shape) * 0.5
    return params


def _per_expert(params: dict, old: str, new: str, names: list[tuple[str, str]]) -> None:
    """Split stacked switch weights `…{old}.{mlx}.weight` into `…experts.{e}.{hf}.weight`."""
    for k in [k for k in params if f".{old}." in k]:
        stacked = params.pop(k)
        prefix, rest = k.split(f".{old}.")
        proj, kind = rest.split(".")
        hf = dict(names)[proj]
        for e in range(stacked.shape[0]):
            params[f"{prefix}.{new}.{e}.{hf}.{kind}"] = stacked[e]


def _to_hf(arch: str, params: dict, cfg: dict) -> dict:
    glu = [("gate_proj", "gate_proj"), ("up_proj", "up_proj"), ("down_proj", "down_proj")]
    if arch == "qwen3_moe":
        _per_expert(params, "switch_mlp", "experts", glu)
    elif arch == "mixtral":
        _per_expert(params, "switch_mlp", "experts", [("gate_proj", "w1"), ("down_proj", "w2"), ("up_proj", "w3")])
    elif arch == "deepseek_v3":
        _per_expert(params, "switch_mlp", "experts", glu)
        heads = cfg["num_attention_heads"]
        rows = heads * (cfg["qk_nope_head_dim"] + cfg["v_head_dim"])
        for k in [k for k in params if k.endswith("self_attn.embed_q.weight")]:
            prefix = k[: -len("embed_q.weight")]
            params.pop(prefix + "embed_q.weight")
            params.pop(prefix + "unembed_out.weight")
            params[prefix + "kv_b_proj.weight"] = mx.random.normal((rows, cfg["kv_lora_rank"])) * 0.1
    elif arch == "gpt_oss":
        # The original gpt-oss release: experts in mxfp4 blocks, gate/up rows interleaved.
        rng = np.random.default_rng(1)
        E, H, I = cfg["num_local_experts"], cfg["hidden_size"], cfg["intermediate_size"]
        for k in [k for k in params if ".mlp.experts." in k]:
            params.pop(k)
        for layer in range(cfg["num_hidden_layers"]):
            base = f"model.layers.{layer}.mlp.experts."
            for name, rows, cols in (("gate_up_proj", 2 * I, H), ("down_proj", H, I)):
                blocks = rng.integers(0, 256, size=(E, rows, cols // 32, 16), dtype=np.uint8)
                scales = rng.integers(118, 124, size=(E, rows, cols // 32), dtype=np.uint8)
                params[base + name + "_blocks"] = mx.array(blocks)
                params[base + name + "_scales"] = mx.array(scales)
                params[base + name + "_bias"] = mx.random.normal((E, rows)) * 0.1
    elif arch == "qwen3_5_moe":
        out = {}
        for k, v in params.items():
            k = k.replace("language_model.model.", "model.language_model.")
            k = k.replace("language_model.lm_head", "lm_head")
            if "conv1d.weight" in k:
                v = v.moveaxis(2, 1)
            out[k] = v
        params = out
        for k in [k for k in params if k.endswith("switch_mlp.gate_proj.weight")]:
            prefix = k[: -len("switch_mlp.gate_proj.weight")]
            g = params.pop(k)
            u = params.pop(prefix + "switch_mlp.up_proj.weight")
            d = params.pop(prefix + "switch_mlp.down_proj.weight")
            params[prefix + "experts.gate_up_proj"] = mx.concatenate([g, u], axis=-2)
            params[prefix + "experts.down_proj"] = d
        # Hugging Face keeps these norms zero-centred; mlx-lm adds 1 when it sanitizes.
        for k in list(params):
            if k.endswith(
                (
                    "input_layernorm.weight",
                    "post_attention_layernorm.weight",
                    "model.language_model.norm.weight",
                    "q_norm.weight",
                    "k_norm.weight",
                )
            ):
                params[k] = mx.random.normal(params[k].shape) * 0.1
    return params


def _train_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = [
        "The quick brown fox jumps over the lazy dog.",
        "An offline library holds encyclopedias, maps and manuals for everyone.",
        "Water boils at one hundred degrees Celsius at sea level.",
    ] * 20
    tok.train_from_iterator(text, trainer)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|endoftext|>",
                "model_max_length": 4096,
            }
        )
    )


def build_hf_checkpoint(arch: str, directory: Path, seed: int = 0) -> Path:
    """A random bf16 checkpoint for `arch` in Hugging Face layout."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = _config(arch)
    params = _mlx_params(cfg, seed)
    params = _to_hf(arch, params, cfg.get("text_config", cfg))
    params = {k: (v.astype(mx.bfloat16) if mx.issubdtype(v.dtype, mx.floating) else v) for k, v in params.items()}
    mx.save_safetensors(str(directory / "model.safetensors"), params, metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(cfg, indent=1))
    _train_tokenizer(directory)
    return directory


def mlx_lm_convert(src: Path, dst: Path, bits: int = 4, group_size: int = 64) -> Path:
    """The reference: mlx-lm's own quantizing conversion."""
    import contextlib
    import io

    from mlx_lm.convert import convert

    with contextlib.redirect_stdout(io.StringIO()):
        convert(str(src), str(dst), quantize=True, q_bits=bits, q_group_size=group_size)
    return dst


class Checkpoints:
    """Lazily built, cached per test session: hf / mlx-lm quantized / Almanac converted."""

    def __init__(self, root: Path):
        self.root = root
        self._done: dict = {}

    def hf(self, arch: str) -> Path:
        key = ("hf", arch)
        if key not in self._done:
            dst = self.root / f"{arch}-hf"
            self._done[key] = dst if dst.exists() else build_hf_checkpoint(arch, dst)
        return self._done[key]

    def mlx(self, arch: str, bits: int = 4, group_size: int = 64) -> Path:
        key = ("mlx", arch, bits, group_size)
        if key not in self._done:
            dst = self.root / f"{arch}-mlx-q{bits}g{group_size}"
            if not dst.exists():
                mlx_lm_convert(self.hf(arch), dst, bits, group_size)
            self._done[key] = dst
        return self._done[key]

    def streamed(self, arch: str, bits: int = 4, group_size: int = 64) -> Path:
        """Converted by Almanac from the mlx-lm quantized checkpoint."""
        from llm_engine import convert

        key = ("stream", arch, bits, group_size)
        if key not in self._done:
            dst = self.root / f"{arch}-stream-q{bits}g{group_size}"
            if not dst.exists():
                convert(self.mlx(arch, bits, group_size), dst, progress=False)
            self._done[key] = dst
        return self._done[key]
