"""The downloader of a data directory, wired as every caller (CLI, service, tests) needs it: ZIMs into
``archives/`` through the library, map archives into ``maps/``, model files into ``models/``, jobs and
provenance in ``almanac.db``."""

from __future__ import annotations

from pathlib import Path

from ..library import Library
from .downloader import Downloader
from .installers import FileInstaller, ZimInstaller, check_map_archive
from .provenance import Provenance


def open_downloader(data_dir: Path, library: Library, **options) -> tuple[Downloader, Provenance]:
    """``options`` go to ``Downloader`` (max_parallel, chunk_bytes, retries, timeout_s, on_progress...)."""
    data_dir = Path(data_dir)
    db_path = data_dir / "almanac.db"
    provenance = Provenance(db_path)
    installers = {
        "zim": ZimInstaller(library, provenance),
        "map": FileInstaller("map", data_dir / "maps", provenance, check=check_map_archive),
        "model": FileInstaller("model", data_dir / "models", provenance),
        "file": FileInstaller("file", data_dir / "files", provenance),
    }
    return Downloader(db_path, installers=installers, **options), provenance
