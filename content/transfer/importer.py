"""Import ZIMs, map archives and converted models from a folder or a mounted drive.

Each file is checked where it lies (a ZIM by the child-process probe, a map by its header), compared with
what is installed (the same ZIM UUID and size, or the same SHA-256, is skipped), copied under a hidden
name with its SHA-256 taken on the way (checked against the folder's ``SHA256SUMS`` when it has one; a
ZIM with no listed digest gets libzim's full integrity check), then moved in atomically. A newer release
of an installed book (same name and flavour) replaces it in place, as an update does. Nothing is ever
written on the source.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..downloads.installers import check_map_archive, move_in
from ..downloads.provenance import Provenance
from ..library import Library
from ..zim_probe import ProbeError, deep_check, probe
from .checksums import SUMS, ChecksumError, copy_hashing, read_sums, sha256_file

MAP_SUFFIXES = (".pmtiles", ".mbtiles")
MANIFEST = "manifest.json"
MAX_DEPTH = 4


@dataclass
class ImportReport:
    imported: list[dict] = field(default_factory=list)  # kind, name, path, sha256
    skipped: list[dict] = field(default_factory=list)  # source, reason
    refused: list[dict] = field(default_factory=list)  # source, reason

    def to_json(self) -> dict:
        return {"imported": self.imported, "skipped": self.skipped, "refused": self.refused}


def find_candidates(root: Path) -> list[tuple[str, Path]]:
    """(kind, path) of every ZIM, map archive and converted model folder under ``root`` (symlinks not
    followed, hidden entries skipped, at most MAX_DEPTH folders deep)."""
    out: list[tuple[str, Path]] = []

    def walk(folder: Path, depth: int) -> None:
        if (folder / MANIFEST).is_file() and depth > 0:
            out.append(("model", folder))
            return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False) and depth < MAX_DEPTH:
                walk(path, depth + 1)
            elif entry.is_file(follow_symlinks=False):
                if entry.name.endswith(".zim"):
                    out.append(("zim", path))
                elif entry.name.endswith(MAP_SUFFIXES):
                    out.append(("map", path))

    walk(Path(root), 0)
    return out


def import_folder(
    root: Path,
    library: Library,
    provenance: Provenance,
    *,
    maps_dir: Path,
    models_dir: Path,
    model_check: Callable[[Path], list] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> ImportReport:
    """``almanac content import PATH``. ``model_check(folder)`` returns a converted model's problems
    (``llm_engine.checks.verify``); without it models are refused, never taken unchecked."""
    root = Path(root)
    report = ImportReport()
    if not root.is_dir():
        report.refused.append({"source": str(root), "reason": "no such folder (is the drive mounted?)"})
        return report
    for kind, path in find_candidates(root):
        try:
            sums = read_sums(path.parent)
        except ChecksumError as e:
            report.refused.append({"source": str(path), "reason": str(e)})
            continue
        try:
            if kind == "zim":
                _import_zim(path, sums.get(path.name), library, provenance, report, on_bytes)
            elif kind == "map":
                _import_map(path, sums.get(path.name), Path(maps_dir), provenance, report, on_bytes)
            else:
                _import_model(path, Path(models_dir), model_check, provenance, report)
        except _Refused as e:
            report.refused.append({"source": str(path), "reason": str(e)})
        except _Skipped as e:
            report.skipped.append({"source": str(path), "reason": str(e)})
        except OSError as e:
            report.refused.append({"source": str(path), "reason": f"copy failed: {e.strerror or e}"})
    return report


class _Refused(Exception):
    pass


class _Skipped(Exception):
    pass


def _copy_checked(src: Path, part: Path, listed: str | None, on_bytes) -> str:
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        digest = copy_hashing(src, part, on_bytes)
    except OSError:
        part.unlink(missing_ok=True)
        raise
    if listed and digest != listed:
        part.unlink(missing_ok=True)
        raise _Refused(f"checksum mismatch against {SUMS}: listed {listed}, copied {digest}")
    return digest


def _import_zim(src: Path, listed, library: Library, provenance: Provenance, report: ImportReport, on_bytes) -> None:
    try:
        info = probe(src)
    except ProbeError as e:
        raise _Refused(f"not a usable ZIM: {e}") from None
    size = src.stat().st_size
    for book in library.list():
        if book.uuid == info["uuid"] and book.size == size:
            raise _Skipped(f"already installed as {book.name}")
    name = src.stem
    existing = library.get(name)
    if existing is not None:
        try:
            old = probe(existing.path)
        except ProbeError:
            old = None
        same_book = (
            old is not None and (old["name"], old["flavour"]) == (info["name"], info["flavour"]) and info["name"]
        )
        if not same_book:
            raise _Refused(f"a different book named {name!r} is installed")
        if Path(existing.path) != (library.archives_dir / f"{name}.zim").absolute():
            raise _Refused(f"{name} is registered from {existing.path}, outside the archives folder")
        if info["date"] <= old["date"]:
            raise _Skipped(f"{name} on the box is as new or newer ({old['date']} vs {info['date']})")
    part = library.archives_dir / ".partial" / f"import-{name}.zim.part"
    digest = _copy_checked(src, part, listed, on_bytes)
    try:
        probe(part)  # the copy, not only the source: a flaky drive can differ from one read to the next
        if not listed:
            ok, message = deep_check(part)
            if not ok:
                raise _Refused(f"libzim's integrity check failed: {message}")
    except ProbeError as e:
        part.unlink(missing_ok=True)
        raise _Refused(f"the copy is not a usable ZIM: {e}") from None
    except _Refused:
        part.unlink(missing_ok=True)
        raise
    dest = (library.archives_dir / f"{name}.zim").absolute()
    move_in(part, dest)
    library.add(dest)
    provenance.record(
        kind="zim",
        name=name,
        path=dest,
        catalog_name=info["name"],
        flavour=info["flavour"],
        date=info["date"],
        url=f"file://{src}",
        sha256=digest,
        size=size,
    )
    report.imported.append({"kind": "zim", "name": name, "path": str(dest), "sha256": digest})


def _import_map(src: Path, listed, maps_dir: Path, provenance: Provenance, report: ImportReport, on_bytes) -> None:
    dest = (maps_dir / src.name).absolute()
    if dest.is_file() and dest.stat().st_size == src.stat().st_size and sha256_file(dest) == sha256_file(src):
        raise _Skipped(f"already installed as {dest.name}")
    part = maps_dir / ".partial" / f"import-{src.name}.part"
    digest = _copy_checked(src, part, listed, on_bytes)
    try:
        check_map_archive(part, src.name)
    except Exception as e:
        part.unlink(missing_ok=True)
        raise _Refused(f"not a usable map archive: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    move_in(part, dest)
    provenance.record(
        kind="map", name=src.name, path=dest, url=f"file://{src}", sha256=digest, size=dest.stat().st_size
    )
    report.imported.append({"kind": "map", "name": src.name, "path": str(dest), "sha256": digest})


def _import_model(src: Path, models_dir: Path, model_check, provenance: Provenance, report: ImportReport) -> None:
    if model_check is None:
        raise _Refused("no model checker was given, and a model is never imported unchecked")
    dest = (models_dir / src.name).absolute()
    if (dest / MANIFEST).is_file() and (dest / MANIFEST).read_bytes() == (src / MANIFEST).read_bytes():
        raise _Skipped(f"already installed as {dest.name} (same manifest)")
    if dest.exists():
        raise _Refused(f"a different model named {src.name!r} is installed")
    part = models_dir / ".partial" / f"import-{src.name}"
    shutil.rmtree(part, ignore_errors=True)
    part.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, part, symlinks=False)
    try:
        problems = model_check(part)
    except Exception as e:
        problems = [f"{type(e).__name__}: {e}"]
    if problems:
        shutil.rmtree(part, ignore_errors=True)
        raise _Refused(
            f"model check failed: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    os.replace(part, dest)
    provenance.record(
        kind="model",
        name=src.name,
        path=dest,
        url=f"file://{src}",
        sha256=sha256_file(dest / MANIFEST),
        size=sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()),
    )
    report.imported.append({"kind": "model", "name": src.name, "path": str(dest), "sha256": ""})
