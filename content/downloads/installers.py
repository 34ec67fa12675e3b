"""What makes a verified download part of the box, one class per kind of file.

Each installer names where a file of its kind lives (``destination``), where its part file grows
(``staging_dir``, on the same filesystem so the final move is atomic), checks a downloaded file the way
its kind is checked (``check``: a ZIM is opened by the child-process probe, a map's header is read), and
moves it in with ``os.replace`` — over an older version of the same book, which keeps serving until
then — and registers it (``place``). A refusal raises ``Refused``; the caller deletes the part file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..library import Library, LibraryError
from ..zim_probe import ProbeError, deep_check, probe
from .provenance import Provenance


class Refused(Exception):
    """A downloaded file that may not enter the library; the message says why (one line)."""


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def move_in(part: Path, dest: Path) -> None:
    """Atomic: readers see the old file or the new one, never a half."""
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, dest)
    fsync_dir(dest.parent)


class ZimInstaller:
    kind = "zim"
    suffix = ".zim"

    def __init__(self, library: Library, provenance: Provenance, *, deep_check_timeout_s: float = 3600):
        self.library = library
        self.provenance = provenance
        self.deep_check_timeout_s = deep_check_timeout_s

    @property
    def staging_dir(self) -> Path:
        return self.library.archives_dir / ".partial"  # a dot-folder: the library's scan never looks in

    def destination(self, name: str) -> Path:
        return self.library.archives_dir / f"{name}.zim"

    def conflict(self, name: str) -> str | None:
        """Why a download of ``name`` could not be installed (another file already holds the name)."""
        book = self.library.get(name)
        if book and Path(book.path) != self.destination(name).absolute() and Path(book.path).exists():
            return f"a book named {name!r} is already registered from {book.path}"
        return None

    def check(self, part: Path, job) -> dict:
        try:
            info = probe(part)
        except ProbeError as e:
            raise Refused(f"not a usable ZIM: {e}") from None
        want_name, want_flavour = job.meta.get("catalog_name"), job.meta.get("flavour")
        if (
            job.meta.get("replaces")
            and want_name
            and (info["name"], info["flavour"]) != (want_name, want_flavour or "")
        ):
            raise Refused(f"the update is {info['name']!r}/{info['flavour']!r}, not {want_name!r}/{want_flavour!r}")
        if not job.sha256:
            ok, message = deep_check(part, timeout_s=self.deep_check_timeout_s)
            if not ok:
                raise Refused(f"no published checksum, and libzim's own check failed: {message}")
        return info

    def place(self, part: Path, job, info: dict, sha256: str) -> Path:
        problem = self.conflict(job.name)
        if problem:
            raise Refused(problem)
        dest = self.destination(job.name).absolute()
        move_in(part, dest)
        try:
            self.library.add(dest)
        except LibraryError as e:  # cannot happen after check(); said plainly if it does
            raise Refused(f"moved in but not registered: {e}") from None
        self.provenance.record(
            kind=self.kind,
            name=job.name,
            path=dest,
            catalog_name=job.meta.get("catalog_name", info.get("name", "")),
            flavour=job.meta.get("flavour", info.get("flavour", "")),
            date=info.get("date") or job.meta.get("date", ""),
            url=job.source,
            sha256=sha256,
            size=dest.stat().st_size,
        )
        return dest


class FileInstaller:
    """Maps (``.pmtiles``/``.mbtiles``, header read before the move), models and plain files into a folder.
    These carry no checksum of their own, so a published SHA-256 is required."""

    def __init__(self, kind: str, folder: Path, provenance: Provenance, *, check=None):
        self.kind = kind
        self.folder = Path(folder)
        self.provenance = provenance
        self._check = check

    @property
    def staging_dir(self) -> Path:
        return self.folder / ".partial"

    def destination(self, name: str) -> Path:
        return self.folder / name

    def conflict(self, name: str) -> str | None:
        return None

    def check(self, part: Path, job) -> dict:
        if not job.sha256:
            raise Refused("no published checksum (.meta4 or .sha256) for a file that has none inside it")
        if self._check is not None:
            try:
                self._check(part, job.name)
            except Exception as e:  # the kind's own reader: any failure is a refusal, said in one line
                raise Refused(
                    f"not a usable {self.kind}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                ) from None
        return {}

    def place(self, part: Path, job, info: dict, sha256: str) -> Path:
        dest = self.destination(job.name).absolute()
        dest.parent.mkdir(parents=True, exist_ok=True)
        move_in(part, dest)
        self.provenance.record(
            kind=self.kind,
            name=job.name,
            path=dest,
            url=job.source,
            sha256=sha256,
            size=dest.stat().st_size,
            date=job.meta.get("date", ""),
        )
        return dest


def check_map_archive(path: Path, name: str) -> None:
    """A map archive's header and metadata read by the maps package (the part file has no suffix)."""
    from ..maps.tiles import EXTENSIONS, open_archive

    suffix = Path(name).suffix
    if suffix not in EXTENSIONS:
        raise ValueError(f"{name}: a map archive must end in {' or '.join(EXTENSIONS)}")
    link = path.with_name(path.name + suffix)
    os.link(path, link)  # the reader picks its format by suffix
    try:
        archive = open_archive(link)
        archive.metadata  # noqa: B018 - reading it is the check
        close = getattr(archive, "close", None)
        if close:
            close()
    finally:
        link.unlink()
