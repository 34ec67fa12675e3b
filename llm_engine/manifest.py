"""The converted checkpoint's manifest: what is where, in which dtype, with which checksum.

Layout of a converted directory:
  config.json, tokenizer files          as mlx-lm writes them
  model*.safetensors                    resident (non-expert) weights
  experts/layer-NNN.bin                 one file per MoE layer; expert e is one contiguous
                                        blob at offset e * stride (stride a multiple of
                                        ALIGNMENT), holding every tensor of that expert
                                        back to back
  manifest.json                         this file's content
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import numpy as np

from .errors import CheckpointError

FORMAT = "almanac-moe-stream"
VERSION = 1
ALIGNMENT = 16384  # 16 KiB: the Apple Silicon page size, so each expert read is page aligned
MANIFEST_NAME = "manifest.json"

# dtype name -> (mlx dtype, numpy dtype with the same bytes). bf16 has no numpy dtype, so
# its bytes travel as uint16.
DTYPES = {
    "uint8": (mx.uint8, np.uint8),
    "uint16": (mx.uint16, np.uint16),
    "uint32": (mx.uint32, np.uint32),
    "int32": (mx.int32, np.int32),
    "float16": (mx.float16, np.float16),
    "bfloat16": (mx.bfloat16, np.uint16),
    "float32": (mx.float32, np.float32),
}


def dtype_name(dt: mx.Dtype) -> str:
    for name, (mdt, _) in DTYPES.items():
        if mdt == dt:
            return name
    raise CheckpointError(f"unsupported tensor dtype {dt}")


def mx_dtype(name: str) -> mx.Dtype:
    return DTYPES[name][0]


def np_dtype(name: str):
    return DTYPES[name][1]


def round_up(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


@dataclass
class TensorSpec:
    name: str  # path inside the switch module, e.g. "gate_proj.scales"
    shape: list[int]  # shape of ONE expert's slice
    dtype: str
    offset: int  # byte offset inside the expert blob
    nbytes: int


@dataclass
class LayerSpec:
    module: str  # dotted path of the switch module in the mlx-lm model
    file: str  # relative to the checkpoint directory
    num_experts: int
    blob_size: int
    stride: int
    tensors: list[TensorSpec]
    quantization: dict  # projection name -> {"group_size", "bits", "mode"}; {} if unquantized
    size: int
    sha256: str
    crc32: list[int]  # one per expert blob


@dataclass
class FileSpec:
    file: str
    size: int
    sha256: str


@dataclass
class Manifest:
    model_type: str
    mlx_lm_version: str
    layers: list[LayerSpec]
    files: list[FileSpec]  # every other file of the checkpoint (resident weights, config, tokenizer)
    source_quantization: dict = field(default_factory=dict)
    alignment: int = ALIGNMENT
    format: str = FORMAT
    version: int = VERSION

    def expert_bytes(self) -> int:
        return sum(layer.blob_size * layer.num_experts for layer in self.layers)

    def resident_bytes(self) -> int:
        return sum(f.size for f in self.files if f.file.endswith(".safetensors"))


def write_manifest(directory: Path, manifest: Manifest) -> None:
    with open(Path(directory) / MANIFEST_NAME, "w") as f:
        json.dump(asdict(manifest), f, indent=1)


def _field(obj: dict, key: str, kind, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise CheckpointError(f"{MANIFEST_NAME}: field '{where}{key}' is missing")
    value = obj[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise CheckpointError(f"{MANIFEST_NAME}: field '{where}{key}' has the wrong type ({type(value).__name__})")
    return value


def _tensor(obj: dict, where: str) -> TensorSpec:
    spec = TensorSpec(
        name=_field(obj, "name", str, where),
        shape=list(_field(obj, "shape", list, where)),
        dtype=_field(obj, "dtype", str, where),
        offset=_field(obj, "offset", int, where),
        nbytes=_field(obj, "nbytes", int, where),
    )
    if spec.dtype not in DTYPES:
        raise CheckpointError(f"{MANIFEST_NAME}: field '{where}dtype' = {spec.dtype!r} is unknown")
    expected = int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(np_dtype(spec.dtype)).itemsize
    if expected != spec.nbytes:
        raise CheckpointError(
            f"{MANIFEST_NAME}: field '{where}nbytes' = {spec.nbytes} does not match its shape and dtype ({expected})"
        )
    return spec


def _layer(obj: dict, where: str, alignment: int) -> LayerSpec:
    tensors = [_tensor(t, f"{where}tensors[{i}].") for i, t in enumerate(_field(obj, "tensors", list, where))]
    layer = LayerSpec(
        module=_field(obj, "module", str, where),
        file=_field(obj, "file", str, where),
        num_experts=_field(obj, "num_experts", int, where),
        blob_size=_field(obj, "blob_size", int, where),
        stride=_field(obj, "stride", int, where),
        tensors=tensors,
        quantization=_field(obj, "quantization", dict, where),
        size=_field(obj, "size", int, where),
        sha256=_field(obj, "sha256", str, where),
        crc32=list(_field(obj, "crc32", list, where)),
    )
    end = 0
    for i, t in enumerate(layer.tensors):
        if t.offset != end:
            raise CheckpointError(f"{MANIFEST_NAME}: field '{where}tensors[{i}].offset' = {t.offset}, expected {end}")
        end += t.nbytes
    if end != layer.blob_size:
        raise CheckpointError(f"{MANIFEST_NAME}: field '{where}blob_size' = {layer.blob_size}, expected {end}")
    if layer.stride < layer.blob_size or layer.stride % alignment:
        raise CheckpointError(f"{MANIFEST_NAME}: field '{where}stride' = {layer.stride} is not valid")
    if layer.size != layer.stride * layer.num_experts:
        raise CheckpointError(f"{MANIFEST_NAME}: field '{where}size' = {layer.size} does not match stride x experts")
    if len(layer.crc32) != layer.num_experts:
        raise CheckpointError(
            f"{MANIFEST_NAME}: field '{where}crc32' has {len(layer.crc32)} entries, expected {layer.num_experts}"
        )
    return layer


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; is this a directory made by 'almanac model convert'?")
    try:
        obj = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if _field(obj, "format", str, "") != FORMAT:
        raise CheckpointError(f"{MANIFEST_NAME}: field 'format' = {obj['format']!r}, expected {FORMAT!r}")
    if _field(obj, "version", int, "") != VERSION:
        raise CheckpointError(f"{MANIFEST_NAME}: field 'version' = {obj['version']}, this engine reads {VERSION}")
    alignment = _field(obj, "alignment", int, "")
    if alignment < ALIGNMENT or alignment & (alignment - 1):
        raise CheckpointError(f"{MANIFEST_NAME}: field 'alignment' = {alignment} is not a power of two >= {ALIGNMENT}")
    layers = [_layer(o, f"layers[{i}].", alignment) for i, o in enumerate(_field(obj, "layers", list, ""))]
    files = [
        FileSpec(
            file=_field(o, "file", str, f"files[{i}]."),
            size=_field(o, "size", int, f"files[{i}]."),
            sha256=_field(o, "sha256", str, f"files[{i}]."),
        )
        for i, o in enumerate(_field(obj, "files", list, ""))
    ]
    return Manifest(
        model_type=_field(obj, "model_type", str, ""),
        mlx_lm_version=_field(obj, "mlx_lm_version", str, ""),
        layers=layers,
        files=files,
        source_quantization=obj.get("source_quantization", {}),
        alignment=alignment,
    )


def sha256_file(path: Path) -> str:
    """The checksum the manifest records for a file, read in 8 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()
