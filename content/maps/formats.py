"""What both archive readers (pmtiles_archive.py, mbtiles.py) share: the tile format and the one error type."""

from __future__ import annotations

from dataclasses import dataclass


class ArchiveError(Exception):
    """A map archive that cannot be used, in one line."""


@dataclass(frozen=True)
class TileFormat:
    ext: str
    mimetype: str
    vector: bool = False
