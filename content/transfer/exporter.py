"""Export books and map archives to a folder (a mounted drive) with ``SHA256SUMS`` beside them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..library import Library
from .checksums import copy_hashing, read_sums, sha256_file, write_sums


class ExportError(Exception):
    pass


@dataclass
class ExportReport:
    folder: str
    exported: list[dict] = field(default_factory=list)  # name, file, size, sha256
    unchanged: list[str] = field(default_factory=list)  # already on the drive with the same content

    def to_json(self) -> dict:
        return {"folder": self.folder, "exported": self.exported, "unchanged": self.unchanged}


def export_library(
    folder: Path,
    library: Library,
    *,
    names: list[str] | None = None,
    map_files: tuple = (),
    on_bytes: Callable[[int], None] | None = None,
) -> ExportReport:
    """``almanac content export PATH [NAME...]``: each file copied to ``PATH`` under a temporary name, then
    renamed; the checksum list is rewritten last, so a drive pulled out early has no listed partial file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"{folder}: no such folder (mount the drive and give its path)")
    books = library.list()
    if names:
        known = {b.name for b in books}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ExportError(f"no book named {unknown[0]!r} in the library")
        books = [b for b in books if b.name in names]
    sources = [(b.name, Path(b.path), f"{b.name}.zim") for b in books]
    sources += [(Path(p).stem, Path(p), Path(p).name) for p in map_files]
    sums = read_sums(folder)
    report = ExportReport(str(folder))
    for name, src, file_name in sources:
        target = folder / file_name
        if (
            target.is_file()
            and file_name in sums
            and target.stat().st_size == src.stat().st_size
            and sha256_file(src) == sums[file_name]
        ):
            report.unchanged.append(name)
            continue
        tmp = folder / f".{file_name}.part"
        try:
            digest = copy_hashing(src, tmp, on_bytes)
            os.replace(tmp, target)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ExportError(f"{target}: {e.strerror or e}") from None
        sums[file_name] = digest
        write_sums(folder, sums)
        report.exported.append({"name": name, "file": file_name, "size": target.stat().st_size, "sha256": digest})
    write_sums(folder, sums)
    return report
