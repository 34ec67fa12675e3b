"""A Qwen3-30B-A3B-shaped checkpoint (hidden 2048, 32 heads, expert width 768, top-8) with random
4-bit weights written straight as packed bytes, so a 12-layer model builds in seconds: mlx-lm's
model class gives every tensor's name, shape and dtype (lazily, nothing computed), numpy fills them."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np

SHAPES = {
    "model_type": "qwen3_moe",
    "architectures": ["Qwen3MoeForCausalLM"],
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
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
}


def build(dst: Path, layers: int = 12, experts: int = 32, vocab: int = 32000, seed: int = 0) -> Path:
    """An MLX 4-bit checkpoint (router 8-bit, as mlx-lm quantizes it) in dst; returns dst."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes, save_config

    cfg = dict(SHAPES, num_hidden_layers=layers, num_experts=experts, vocab_size=vocab)
    model_class, args_class = _get_classes(cfg)
    model = model_class(args_class.from_dict(cfg))

    def bits(path, module):
        if not hasattr(module, "to_quantized"):
            return False
        return {"group_size": 64, "bits": 8} if path.endswith("mlp.gate") else True

    nn.quantize(model, group_size=64, bits=4, class_predicate=bits)
    rng = np.random.default_rng(seed)
    weights = {}
    for name, v in tree_flatten(model.parameters()):
        if v.dtype == mx.uint32:  # packed 4- or 8-bit values: any bytes are valid
            weights[name] = mx.array(rng.integers(0, 2**32, size=v.shape, dtype=np.uint32))
        elif name.endswith(".scales"):
            weights[name] = mx.array(rng.uniform(0.002, 0.006, size=v.shape).astype(np.float32)).astype(mx.bfloat16)
        elif name.endswith(".biases"):
            # centred: value = scale * q + bias with q uniform in [0, 2^bits)
            scales = weights[name[: -len("biases")] + "scales"].astype(mx.float32)
            levels = 255 if name.endswith("mlp.gate.biases") else 15
            weights[name] = (-scales * (levels / 2)).astype(mx.bfloat16)
        else:  # norms
            weights[name] = mx.ones(v.shape, dtype=mx.bfloat16)
    dst.mkdir(parents=True)
    mx.save_safetensors(str(dst / "model.safetensors"), weights, metadata={"format": "mlx"})
    cfg["quantization"] = {"group_size": 64, "bits": 4}
    for i in range(layers):
        cfg["quantization"][f"model.layers.{i}.mlp.gate"] = {"group_size": 64, "bits": 8}
    save_config(cfg, config_path=dst / "config.json")
    _tokenizer(dst)
    return dst


def _tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["an offline library for everyone"] * 10, trainer)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"})
    )
