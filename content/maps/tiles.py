"""What every tile archive offers, whatever its container: format, zooms, bounds, layers, attribution."""

from __future__ import annotations

import json
from pathlib import Path

from .formats import ArchiveError, TileFormat
from .mbtiles import MBTilesArchive
from .pmtiles_archive import PMTilesArchive

__all__ = ["EXTENSIONS", "ArchiveError", "TileFormat", "describe", "open_archive", "schema", "vector_layers"]

EXTENSIONS = (".pmtiles", ".mbtiles")


def open_archive(path: Path):
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    if path.suffix == ".pmtiles":
        return PMTilesArchive(path)
    if path.suffix == ".mbtiles":
        return MBTilesArchive(path)
    raise ArchiveError(f"{path.name}: not a map archive (expected {' or '.join(EXTENSIONS)})")


def vector_layers(metadata: dict) -> list[dict]:
    """vector_layers from PMTiles metadata, or from the MBTiles-style 'json' string some tools write."""
    layers = metadata.get("vector_layers")
    if layers is None and isinstance(metadata.get("json"), str):
        try:
            layers = json.loads(metadata["json"]).get("vector_layers")
        except ValueError:
            layers = None
    return [layer for layer in (layers or []) if isinstance(layer, dict) and "id" in layer]


def schema(archive) -> str:
    """'protomaps', 'openmaptiles', 'raster' or 'unknown': which style family can draw it."""
    if not archive.format.vector:
        return "raster"
    ids = {layer["id"] for layer in vector_layers(archive.metadata)}
    if {"earth", "places"} & ids or {"roads", "landuse", "pois"} <= ids:
        return "protomaps"
    if {"transportation", "place", "water", "boundary", "landcover"} & ids:
        return "openmaptiles"
    return "unknown"


def describe(name: str, archive) -> dict:
    meta = archive.metadata
    return {
        "name": name,
        "kind": archive.kind,
        "schema": schema(archive),
        "format": archive.format.ext,
        "minzoom": archive.minzoom,
        "maxzoom": archive.maxzoom,
        "bounds": archive.bounds(),
        "center": archive.center(),
        "title": str(meta.get("name") or name),
        "description": str(meta.get("description") or ""),
        "attribution": str(meta.get("attribution") or ""),
        "vector_layers": [layer["id"] for layer in vector_layers(meta)],
        "size": archive.path.stat().st_size,
    }
