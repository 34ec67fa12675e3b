"""SHA-256 of files and the ``SHA256SUMS`` list (``HEX  NAME`` per line, as ``sha256sum`` writes and
checks it), plus a copy that hashes as it goes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from ..downloads.metalink import MetalinkError, check_sha256

SUMS = "SHA256SUMS"
BLOCK = 4 << 20


class ChecksumError(Exception):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def copy_hashing(src: Path, dst: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Copy ``src`` to ``dst`` (created or truncated), fsync it, return the SHA-256 of what was written."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(BLOCK):
            fout.write(block)
            h.update(block)
            if on_bytes:
                on_bytes(len(block))
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def read_sums(folder: Path) -> dict[str, str]:
    """name -> digest from ``folder/SHA256SUMS`` (empty if there is none)."""
    path = Path(folder) / SUMS
    if not path.is_file():
        return {}
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        try:
            out[name] = check_sha256(digest)
        except MetalinkError as e:
            raise ChecksumError(f"{path}: line {n}: {e}") from None
    return out


def write_sums(folder: Path, sums: dict[str, str]) -> Path:
    path = Path(folder) / SUMS
    tmp = path.with_name(f".{SUMS}.tmp")
    tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())), encoding="utf-8")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
