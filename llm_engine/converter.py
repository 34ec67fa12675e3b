"""Convert an MLX or Hugging Face checkpoint to the expert-packed streaming layout.

The model is loaded lazily through mlx-lm (its sanitize, dtype and quantization rules are
reused, so the quantized tensors are the ones `mlx_lm.convert -q` produces) and then
evaluated and written one layer at a time, so peak memory stays near one layer's weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import zlib
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_map_with_path

from . import manifest as mf
from .errors import CheckpointError, EngineError, UnsupportedModelError
from .architectures import switch_modules
from .gguf_source import gguf_to_checkpoint, is_gguf

VALID_BITS = (2, 3, 4, 5, 6, 8)
VALID_GROUP_SIZES = (32, 64, 128)
SHARD_BYTES = 2 << 30
CONVERSION_DTYPES = ("float16", "bfloat16", "float32")  # as mlx_lm.convert
TOKENIZER_PATTERNS = (
    "tokenizer*.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "*.tiktoken",
    "tokenizer.model",
    "generation_config.json",
    "chat_template.*",
    "added_tokens.json",
)


def _mlx_lm_version() -> str:
    import mlx_lm

    return mlx_lm.__version__


def _check_settings(bits, group_size) -> None:
    if bits is not None and bits not in VALID_BITS:
        raise EngineError(f"--bits {bits} is not supported; choose one of {VALID_BITS}")
    if group_size is not None and group_size not in VALID_GROUP_SIZES:
        raise EngineError(f"--group-size {group_size} is not supported; choose one of {VALID_GROUP_SIZES}")


def _load_source(src: Path):
    from mlx_lm.utils import load_model

    if not (src / "config.json").is_file():
        raise CheckpointError(f"{src / 'config.json'}: not found; SRC must be a model directory")
    try:
        # mlx-lm prints progress to stdout; keep stdout for our own output.
        with contextlib.redirect_stdout(sys.stderr):
            return load_model(src, lazy=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{src}: {e}") from None
    except ValueError as e:
        if "not supported" in str(e):
            raise UnsupportedModelError(f"{src / 'config.json'}: {e}") from None
        raise CheckpointError(f"{src}: {e}") from None


def _quantize_like_mlx_lm(model, config: dict, bits: int, group_size: int):
    """The same dtype cast and quantization `mlx_lm.convert -q` applies."""
    from mlx_lm.utils import quantize_model

    dtype = config.get("torch_dtype", None)
    if dtype is None and (text_config := config.get("text_config", None)):
        dtype = text_config.get("dtype", None)
    if dtype in CONVERSION_DTYPES:
        dtype = getattr(mx, dtype)
        cast_predicate = getattr(model, "cast_predicate", lambda _: True)

        def set_dtype(k, v):
            if cast_predicate(k) and mx.issubdtype(v.dtype, mx.floating):
                return v.astype(dtype)
            return v

        model.update(tree_map_with_path(set_dtype, model.parameters()))
    with contextlib.redirect_stdout(sys.stderr):
        return quantize_model(model, config, group_size, bits)


def _np_bytes(a: mx.array) -> np.ndarray:
    """The raw bytes of an evaluated MLX array as a flat uint8 numpy array."""
    name = mf.dtype_name(a.dtype)
    if a.dtype == mx.bfloat16:
        a = a.view(mx.uint16)
    return np.ascontiguousarray(np.asarray(a)).view(np.uint8).reshape(-1), name


def _write_expert_file(path: Path, rel: str, module_path: str, switch, alignment: int) -> mf.LayerSpec:
    params = tree_flatten(switch.parameters())
    mx.eval([v for _, v in params])
    num_experts = params[0][1].shape[0]
    tensors, per_tensor, offset = [], [], 0
    for name, value in params:
        if value.shape[0] != num_experts:
            raise CheckpointError(f"{module_path}.{name}: leading dimension is not the expert count")
        raw, dtype = _np_bytes(value)
        raw = raw.reshape(num_experts, -1)
        tensors.append(mf.TensorSpec(name, list(value.shape[1:]), dtype, offset, raw.shape[1]))
        per_tensor.append(raw)
        offset += raw.shape[1]
    blob_size = offset
    stride = mf.round_up(blob_size, alignment)
    pad = bytes(stride - blob_size)
    crcs, digest = [], hashlib.sha256()
    with open(path, "wb") as f:
        for e in range(num_experts):
            crc = 0
            for raw in per_tensor:
                chunk = raw[e].tobytes()
                crc = zlib.crc32(chunk, crc)
                digest.update(chunk)
                f.write(chunk)
            digest.update(pad)
            f.write(pad)
            crcs.append(crc)
    quant = {}
    for child_name, child in switch.children().items():
        if hasattr(child, "bits") and hasattr(child, "group_size"):
            quant[child_name] = {
                "group_size": child.group_size,
                "bits": child.bits,
                "mode": getattr(child, "mode", "affine"),
            }
    return mf.LayerSpec(
        module=module_path,
        file=rel,
        num_experts=num_experts,
        blob_size=blob_size,
        stride=stride,
        tensors=tensors,
        quantization=quant,
        size=stride * num_experts,
        sha256=digest.hexdigest(),
        crc32=crcs,
    )


def _group_of(key: str) -> str:
    """Resident weights are evaluated per transformer layer to bound peak memory."""
    m = re.search(r"layers\.(\d+)\.", key)
    return f"layer{int(m.group(1)):06d}" if m else "zz-rest"


def _write_resident(dst: Path, model, skip_prefixes: list[str], progress) -> list[str]:
    weights = {
        k: v for k, v in tree_flatten(model.parameters()) if not any(k.startswith(p + ".") for p in skip_prefixes)
    }
    groups: dict[str, list[str]] = {}
    for k in weights:
        groups.setdefault(_group_of(k), []).append(k)
    shards, current, current_bytes = [], {}, 0

    def flush():
        nonlocal current, current_bytes
        if current:
            shards.append(dict(current))
            name = f"model-{len(shards):05d}.safetensors"
            mx.save_safetensors(str(dst / name), current, metadata={"format": "mlx"})
            current, current_bytes = {}, 0

    for g in sorted(groups):
        arrays = {k: weights.pop(k) for k in groups[g]}
        mx.eval(list(arrays.values()))
        current.update(arrays)
        current_bytes += sum(a.nbytes for a in arrays.values())
        if current_bytes >= SHARD_BYTES:
            flush()
        progress.update(1)
    flush()
    names = [f"model-{i + 1:05d}.safetensors" for i in range(len(shards))]
    if len(names) == 1:
        os.rename(dst / names[0], dst / "model.safetensors")
        names = ["model.safetensors"]
    return names, len(groups)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for pattern in TOKENIZER_PATTERNS:
        for p in src.glob(pattern):
            if p.is_file():
                shutil.copy2(p, dst / p.name)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    bits: int | None = None,
    group_size: int | None = None,
    progress: bool = True,
    alignment: int = mf.ALIGNMENT,
) -> mf.Manifest:
    """Convert SRC (MLX or Hugging Face checkpoint directory, or a GGUF file) into DST.

    An unquantized SRC is quantized with `bits` (default 4) and `group_size` (default 64),
    exactly as `mlx_lm.convert -q` would. An already quantized SRC keeps its quantization;
    asking for different settings is an error. A GGUF file is first dequantized into a bf16
    checkpoint beside DST (see gguf_source), then converted like one. A model without
    experts (a dense one) gets the same layout with no expert files and runs resident.
    DST must not exist; it is built in a sibling temporary directory and renamed at the
    end, so a failure leaves nothing half-written.
    """
    from mlx_lm.utils import save_config
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    _check_settings(bits, group_size)
    if dst.exists():
        raise EngineError(f"{dst}: already exists; choose a new destination")
    if alignment < mf.ALIGNMENT or alignment & (alignment - 1):
        raise EngineError(f"alignment {alignment} must be a power of two >= {mf.ALIGNMENT}")

    if is_gguf(src):
        staging = dst.with_name(dst.name + ".gguf-source")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            gguf_to_checkpoint(src, staging)
            return convert(staging, dst, bits, group_size, progress, alignment)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if src.is_file():
        raise CheckpointError(f"{src}: neither a model directory nor a GGUF file")
    try:
        # An MLX checkpoint says "quantization" in its own config.json; a Hugging Face one
        # may carry a "quantization_config" (mxfp4, fp8...) that mlx_lm.convert -q extends.
        mlx_quantized = "quantization" in json.loads((src / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{src / 'config.json'}: cannot be read ({e})") from None
    model, config = _load_source(src)
    model_type = config.get("model_type", "")
    switches = switch_modules(model)  # none: a dense model, every weight resident
    if mlx_quantized:
        q = config["quantization"]
        if (bits is not None and bits != q.get("bits")) or (
            group_size is not None and group_size != q.get("group_size")
        ):
            raise EngineError(
                f"{src}: already quantized with {q.get('bits')} bits, group size "
                f"{q.get('group_size')}; convert from the unquantized checkpoint to change that"
            )
    else:
        model, config = _quantize_like_mlx_lm(model, config, bits or 4, group_size or 64)

    tmp = dst.with_name(dst.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "experts").mkdir(parents=True)
    try:
        n_groups = len({_group_of(k) for k, _ in tree_flatten(model.parameters())})
        bar = tqdm(total=len(switches) + n_groups, desc="convert", unit="layer", disable=not progress, file=sys.stderr)
        layers = []
        for i, (path, switch) in enumerate(switches):
            rel = f"experts/layer-{i:03d}.bin"
            layers.append(_write_expert_file(tmp / rel, rel, path, switch, alignment))
            # Drop this layer's expert weights (and the lazy graph behind them) right away.
            switch.update(tree_map(lambda _: mx.array([]), switch.parameters()))
            bar.update(1)
        _write_resident(tmp, model, [p for p, _ in switches], bar)
        bar.close()
        save_config(dict(config), config_path=tmp / "config.json")
        _copy_tokenizer(src, tmp)
        files = [mf.FileSpec(p.name, p.stat().st_size, mf.sha256_file(p)) for p in sorted(tmp.iterdir()) if p.is_file()]
        manifest = mf.Manifest(
            model_type=model_type,
            mlx_lm_version=_mlx_lm_version(),
            layers=layers,
            files=files,
            source_quantization={
                k: v for k, v in config.get("quantization", {}).items() if k in ("bits", "group_size", "mode")
            },
            alignment=alignment,
        )
        mf.write_manifest(tmp, manifest)
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
