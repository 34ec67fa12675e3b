"""Conversion gives exactly mlx-lm's quantized tensors, laid out as the manifest says."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from tinymoe import ARCHS, build_hf_checkpoint, mlx_lm_convert

import llm_engine
from llm_engine import manifest as mf
from llm_engine.device import cast_model
from mlx_lm.generate import generate_step
from mlx_lm.utils import load as mlx_lm_load


def _raw(a: mx.array) -> np.ndarray:
    if a.dtype == mx.bfloat16:
        a = a.view(mx.uint16)
    return np.asarray(a)


def _reference_tensors(mlx_dir) -> dict:
    out = {}
    for f in sorted(mlx_dir.glob("model*.safetensors")):
        out.update(mx.load(str(f)))
    return out


def _converted_tensors(path) -> tuple[dict, dict]:
    """Read a converted checkpoint back independently of the engine: (arrays, dtypes)."""
    m = json.loads((path / "manifest.json").read_text())
    arrays, dtypes = {}, {}
    for f in m["files"]:
        if f["file"].endswith(".safetensors"):
            for k, v in mx.load(str(path / f["file"])).items():
                arrays[k], dtypes[k] = _raw(v), mf.dtype_name(v.dtype)
    for layer in m["layers"]:
        data = np.fromfile(path / layer["file"], dtype=np.uint8)
        assert data.size == layer["stride"] * layer["num_experts"]
        assert layer["stride"] % 16384 == 0
        for t in layer["tensors"]:
            per_expert = [
                data[e * layer["stride"] + t["offset"] : e * layer["stride"] + t["offset"] + t["nbytes"]]
                .view(mf.np_dtype(t["dtype"]))
                .reshape(t["shape"])
                for e in range(layer["num_experts"])
            ]
            key = f"{layer['module']}.{t['name']}"
            arrays[key], dtypes[key] = np.stack(per_expert), t["dtype"]
    return arrays, dtypes


def _assert_same_tensors(converted, reference_dir):
    reference = _reference_tensors(reference_dir)
    arrays, dtypes = _converted_tensors(converted)
    assert set(arrays) == set(reference)
    for k, v in reference.items():
        assert dtypes[k] == mf.dtype_name(v.dtype), k
        np.testing.assert_array_equal(arrays[k], _raw(v), err_msg=k)
    got = json.loads((converted / "config.json").read_text())
    want = json.loads((reference_dir / "config.json").read_text())
    assert got["quantization"] == want["quantization"]


@pytest.mark.parametrize("arch", ARCHS)
def test_hf_conversion_gives_the_tensors_of_mlx_lm_convert(checkpoints, arch, tmp_path):
    dst = tmp_path / "converted"
    manifest = llm_engine.convert(checkpoints.hf(arch), dst, bits=4, group_size=64, progress=False)
    _assert_same_tensors(dst, checkpoints.mlx(arch))
    assert not (tmp_path / "converted.partial").exists()
    assert (dst / "tokenizer.json").read_bytes() == (checkpoints.hf(arch) / "tokenizer.json").read_bytes()
    assert manifest.model_type == json.loads((dst / "config.json").read_text())["model_type"]
    assert llm_engine.verify(dst) == []


@pytest.mark.parametrize("bits,group_size", [(2, 32), (3, 64), (6, 128), (8, 64)])
def test_other_bit_widths_and_group_sizes(checkpoints, tmp_path, bits, group_size):
    hf = checkpoints.hf("qwen3_moe")
    dst = tmp_path / "converted"
    llm_engine.convert(hf, dst, bits=bits, group_size=group_size, progress=False)
    reference = mlx_lm_convert(hf, tmp_path / "reference", bits, group_size)
    _assert_same_tensors(dst, reference)
    # With hidden size 64, group size 128 leaves every layer unquantized, in mlx-lm too.
    expected_bits = {bits} if 64 % group_size == 0 else set()
    assert {q["bits"] for q in llm_engine.info(dst)["expert_quantization"]} == expected_bits
    # And the streamed model runs these layouts exactly.
    model, _ = mlx_lm_load(str(reference))
    cast_model(model)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    want = [t for t, _ in generate_step(mx.array(prompt), model, max_tokens=16)]
    with llm_engine.load(dst) as engine:
        got = llm_engine.generate(engine, prompt, max_tokens=16, ignore_eos=True).tokens
    assert got == want


def test_mlx_checkpoint_keeps_its_quantization(checkpoints, tmp_path):
    src = checkpoints.mlx("mixtral")
    llm_engine.convert(src, tmp_path / "a", progress=False)
    _assert_same_tensors(tmp_path / "a", src)
    with pytest.raises(llm_engine.EngineError, match="already quantized with 4 bits"):
        llm_engine.convert(src, tmp_path / "b", bits=8, progress=False)
    assert not (tmp_path / "b").exists()


def test_expert_blobs_are_aligned_and_contiguous(checkpoints):
    m = mf.read_manifest(checkpoints.streamed("qwen3_moe"))
    for layer in m.layers:
        assert layer.stride % mf.ALIGNMENT == 0 and layer.stride >= layer.blob_size
        assert [t.offset for t in layer.tensors] == list(np.cumsum([0] + [t.nbytes for t in layer.tensors[:-1]]))
        names = {t.name.split(".")[0] for t in layer.tensors}
        assert names == {"gate_proj", "up_proj", "down_proj"}
        assert {q["bits"] for q in layer.quantization.values()} == {4}


def test_conversion_works_layer_by_layer(tmp_path):
    """Peak MLX memory while converting stays near one layer, far below the whole model."""
    import tinymoe

    cfg = dict(
        tinymoe.CONFIGS["qwen3_moe"], hidden_size=256, moe_intermediate_size=256, num_experts=32, num_hidden_layers=6
    )
    saved = tinymoe.CONFIGS["qwen3_moe"]
    tinymoe.CONFIGS["qwen3_moe"] = cfg
    try:
        hf = build_hf_checkpoint("qwen3_moe", tmp_path / "hf")
    finally:
        tinymoe.CONFIGS["qwen3_moe"] = saved
    model_bytes = (hf / "model.safetensors").stat().st_size
    layer_bytes = model_bytes / cfg["num_hidden_layers"]
    mx.clear_cache()
    mx.reset_peak_memory()
    llm_engine.convert(hf, tmp_path / "out", progress=False)
    peak = mx.get_peak_memory()
    assert peak < 2.5 * layer_bytes, (peak, layer_bytes, model_bytes)
