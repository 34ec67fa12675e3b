"""`info` and `verify` of a converted checkpoint, without loading the model."""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import manifest as mf


def info(path: str | os.PathLike) -> dict:
    """A summary of a converted checkpoint (reads only manifest.json)."""
    m = mf.read_manifest(Path(path))
    experts = {layer.num_experts for layer in m.layers}
    quant = sorted(
        {
            (q["bits"], q["group_size"], q.get("mode", "affine"))
            for layer in m.layers
            for q in layer.quantization.values()
        }
    )
    return {
        "path": str(path),
        "model_type": m.model_type,
        "mlx_lm_version": m.mlx_lm_version,
        "moe_layers": len(m.layers),
        "experts_per_layer": sorted(experts),
        "expert_bytes": m.expert_bytes(),
        "expert_blob_bytes": sorted({layer.blob_size for layer in m.layers}),
        "resident_bytes": m.resident_bytes(),
        "expert_quantization": [{"bits": b, "group_size": g, "mode": mode} for b, g, mode in quant],
        "alignment": m.alignment,
    }


@dataclass
class Problem:
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def verify(path: str | os.PathLike) -> list[Problem]:
    """Check every file against manifest.json. Returns the problems found (empty if sound).

    Expert files are checked blob by blob, so a problem names the layer file and expert.
    """
    path = Path(path)
    m = mf.read_manifest(path)
    problems: list[Problem] = []
    for f in m.files:
        p = path / f.file
        if not p.is_file():
            problems.append(Problem(str(p), "missing"))
        elif p.stat().st_size != f.size:
            problems.append(Problem(str(p), f"{p.stat().st_size} bytes, expected {f.size}"))
        elif mf.sha256_file(p) != f.sha256:
            problems.append(Problem(str(p), "sha256 mismatch"))
    for layer in m.layers:
        p = path / layer.file
        if not p.is_file():
            problems.append(Problem(str(p), "missing"))
            continue
        size = p.stat().st_size
        if size != layer.size:
            problems.append(Problem(str(p), f"{size} bytes, expected {layer.size} (truncated?)"))
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            for e in range(layer.num_experts):
                chunk = fh.read(layer.stride)
                digest.update(chunk)
                if zlib.crc32(chunk[: layer.blob_size]) != layer.crc32[e]:
                    problems.append(Problem(str(p), f"expert {e} checksum mismatch"))
            digest.update(fh.read())
        if size == layer.size and digest.hexdigest() != layer.sha256:
            problems.append(Problem(str(p), "sha256 mismatch"))
    return problems
