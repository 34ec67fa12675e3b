"""Bad input gives a clear error naming the file or field, before any token; never garbage."""

from __future__ import annotations

import json
import shutil

import pytest

import llm_engine
from llm_engine import CheckpointError, UnsupportedModelError


@pytest.fixture
def ckpt(checkpoints, tmp_path):
    """A private copy of a converted checkpoint the test may damage."""
    return shutil.copytree(checkpoints.streamed("qwen3_moe"), tmp_path / "ckpt")


def _edit_manifest(path, change):
    m = json.loads((path / "manifest.json").read_text())
    change(m)
    (path / "manifest.json").write_text(json.dumps(m))


LONG_PROMPT = list(range(1, 301))  # routes to every expert of every layer during prefill


def test_truncated_expert_file_is_refused_at_load(ckpt):
    f = ckpt / "experts" / "layer-001.bin"
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size - 100)
    with pytest.raises(CheckpointError, match=r"layer-001\.bin.*truncated"):
        llm_engine.load(ckpt)
    assert any("layer-001.bin" in str(p) for p in llm_engine.verify(ckpt))


def test_corrupt_expert_stops_generation_before_any_token(ckpt):
    m = json.loads((ckpt / "manifest.json").read_text())
    layer = m["layers"][0]
    offset = 5 * layer["stride"] + 100  # inside expert 5's blob
    f = ckpt / layer["file"]
    data = bytearray(f.read_bytes())
    data[offset] ^= 0xFF
    f.write_bytes(bytes(data))
    with llm_engine.load(ckpt) as engine:
        steps = llm_engine.stream_generate(engine, LONG_PROMPT, max_tokens=8)
        with pytest.raises(CheckpointError, match=r"layer-000\.bin: expert 5 is corrupt"):
            next(steps)
    problems = [str(p) for p in llm_engine.verify(ckpt)]
    assert any("layer-000.bin: expert 5 checksum mismatch" in p for p in problems)


def test_corrupt_resident_weights_are_found_by_verify_and_load(ckpt):
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0x01
    f.write_bytes(bytes(data))
    assert [str(p) for p in llm_engine.verify(ckpt)] == [f"{f}: sha256 mismatch"]
    f.write_bytes(bytes(data[:-50]))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .* bytes but manifest"):
        llm_engine.load(ckpt)


def test_sound_checkpoint_verifies(checkpoints):
    assert llm_engine.verify(checkpoints.streamed("qwen3_moe")) == []


@pytest.mark.parametrize(
    "change,field",
    [
        (lambda m: m["layers"][0]["tensors"][0].__setitem__("shape", [64, 16]), r"layers\[0\]\.tensors\[0\]\.nbytes"),
        (lambda m: m["layers"][1].__setitem__("num_experts", 8), r"layers\[1\]\.size"),
        (lambda m: m["layers"][0].pop("crc32"), r"layers\[0\]\.crc32"),
        (lambda m: m.__setitem__("model_type", "mixtral"), r"model_type"),
        (lambda m: m.__setitem__("version", 99), r"version"),
        (lambda m: m["layers"].pop(), r"'layers'"),
        (lambda m: m["layers"][0].__setitem__("module", "model.layers.0.mlp.experts"), r"'layers'"),
    ],
)
def test_manifest_that_does_not_match_names_the_field(ckpt, change, field):
    _edit_manifest(ckpt, change)
    with pytest.raises(CheckpointError, match=field):
        llm_engine.load(ckpt)


def test_manifest_shapes_that_do_not_match_the_model(ckpt):
    def change(m):
        for t in m["layers"][0]["tensors"]:
            if t["name"] == "down_proj.weight":
                t["shape"], t["nbytes"] = [32, 16], t["nbytes"]

    _edit_manifest(ckpt, change)
    with pytest.raises(CheckpointError, match=r"layers\[0\]\.tensors\[6\]\.shape"):
        llm_engine.load(ckpt)


def test_not_json_manifest(ckpt):
    (ckpt / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json: not valid JSON"):
        llm_engine.load(ckpt)


def test_missing_manifest_means_not_converted(checkpoints):
    with pytest.raises(CheckpointError, match="manifest.json: not found"):
        llm_engine.load(checkpoints.mlx("qwen3_moe"))


def test_unknown_architecture_is_refused(checkpoints, tmp_path):
    src = shutil.copytree(checkpoints.hf("mixtral"), tmp_path / "src")
    cfg = json.loads((src / "config.json").read_text())
    cfg["model_type"] = "no_such_model"
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="no_such_model"):
        llm_engine.convert(src, tmp_path / "dst", progress=False)
    assert not (tmp_path / "dst").exists() and not (tmp_path / "dst.partial").exists()


def test_existing_destination_is_not_overwritten(checkpoints, tmp_path):
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep.txt").write_text("mine")
    with pytest.raises(llm_engine.EngineError, match="already exists"):
        llm_engine.convert(checkpoints.hf("qwen3_moe"), tmp_path / "dst", progress=False)
    assert (tmp_path / "dst" / "keep.txt").read_text() == "mine"


def test_bad_generation_arguments(checkpoints):
    with llm_engine.load(checkpoints.streamed("qwen3_moe")) as engine:
        with pytest.raises(llm_engine.EngineError, match="prompt is empty"):
            llm_engine.generate(engine, "")
        with pytest.raises(llm_engine.EngineError, match=r"token ids must be in \[0, 320\)"):
            llm_engine.generate(engine, [5, 999])
    with pytest.raises(llm_engine.EngineError, match="out of range"):
        llm_engine.load(checkpoints.streamed("qwen3_moe"), experts_per_token=17)
