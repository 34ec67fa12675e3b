"""A PMTiles v3 reader that parses each directory once.

The PyPI `pmtiles` Reader re-reads and re-parses the header and directories on every tile (milliseconds per
tile); here the header and root directory are parsed at open and leaf directories stay in a small LRU, so a
tile costs one binary search and one pread.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

from pmtiles.tile import Compression, Entry, TileType, deserialize_header, find_tile, read_varint, zxy_to_tileid

from .formats import ArchiveError, TileFormat

HEADER_BYTES = 127
LEAF_CACHE_ENTRIES = 64
MAX_DEPTH = 4  # the spec's bound on directory nesting

TILE_FORMATS = {
    TileType.MVT: TileFormat("pbf", "application/x-protobuf", vector=True),
    TileType.PNG: TileFormat("png", "image/png"),
    TileType.JPEG: TileFormat("jpg", "image/jpeg"),
    TileType.WEBP: TileFormat("webp", "image/webp"),
    TileType.AVIF: TileFormat("avif", "image/avif"),
}


def _decompress(data: bytes, compression: Compression) -> bytes:
    if compression in (Compression.NONE, Compression.UNKNOWN):
        return data
    if compression == Compression.GZIP:
        return gzip.decompress(data)
    raise ArchiveError(f"unsupported internal compression {compression.name}")


def parse_directory(raw: bytes) -> list:
    """Entries of an (already decompressed) directory, as the spec lays them out: ids, runs, lengths, offsets."""
    buf = io.BytesIO(raw)
    n = read_varint(buf)
    entries = []
    last_id = 0
    for _ in range(n):
        last_id += read_varint(buf)
        entries.append(Entry(last_id, 0, 0, 0))
    for e in entries:
        e.run_length = read_varint(buf)
    for e in entries:
        e.length = read_varint(buf)
    for i, e in enumerate(entries):
        v = read_varint(buf)
        e.offset = entries[i - 1].offset + entries[i - 1].length if (i > 0 and v == 0) else v - 1
    return entries


class PMTilesArchive:
    kind = "pmtiles"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._lock = threading.Lock()
        self._leaves: OrderedDict[int, list] = OrderedDict()
        try:
            raw = os.pread(self._fd, HEADER_BYTES, 0)
            if len(raw) < HEADER_BYTES or raw[:7] != b"PMTiles":
                raise ArchiveError(f"{self.path.name}: not a PMTiles archive")
            if raw[7] != 3:
                raise ArchiveError(f"{self.path.name}: PMTiles version {raw[7]} (only version 3 is supported)")
            self.header = deserialize_header(raw)
            self._root = parse_directory(self._internal(self.header["root_offset"], self.header["root_length"]))
            meta_raw = self._internal(self.header["metadata_offset"], self.header["metadata_length"])
            self.metadata = json.loads(meta_raw) if meta_raw.strip() else {}
        except ArchiveError:
            os.close(self._fd)
            raise
        except Exception as e:  # a truncated or corrupt file: one clear line, not a traceback
            os.close(self._fd)
            raise ArchiveError(f"{self.path.name}: unreadable PMTiles archive ({e})") from None
        tile_type = self.header["tile_type"]
        if tile_type not in TILE_FORMATS:
            raise ArchiveError(f"{self.path.name}: unsupported tile type {tile_type}")
        self.format = TILE_FORMATS[tile_type]
        self.tile_compression = self.header["tile_compression"]
        self.minzoom = self.header["min_zoom"]
        self.maxzoom = self.header["max_zoom"]

    # -- raw access ------------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise ArchiveError(f"{self.path.name}: truncated (wanted {length} bytes at {offset})")
        return data

    def _internal(self, offset: int, length: int) -> bytes:
        return _decompress(self.read(offset, length), self.header["internal_compression"])

    def _leaf(self, offset: int, length: int) -> list:
        with self._lock:
            entries = self._leaves.get(offset)
            if entries is not None:
                self._leaves.move_to_end(offset)
                return entries
        entries = parse_directory(self._internal(self.header["leaf_directory_offset"] + offset, length))
        with self._lock:
            self._leaves[offset] = entries
            if len(self._leaves) > LEAF_CACHE_ENTRIES:
                self._leaves.popitem(last=False)
        return entries

    # -- tiles -----------------------------------------------------------------------------------
    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """The stored bytes of one tile (still in the archive's tile compression), or None if absent."""
        if not (0 <= z <= 31 and 0 <= x < (1 << z) and 0 <= y < (1 << z)):
            return None
        tile_id = zxy_to_tileid(z, x, y)
        directory = self._root
        for _ in range(MAX_DEPTH):
            entry = find_tile(directory, tile_id)
            if entry is None:
                return None
            if entry.run_length == 0:
                directory = self._leaf(entry.offset, entry.length)
                continue
            return self.read(self.header["tile_data_offset"] + entry.offset, entry.length)
        return None

    @property
    def tiles_gzipped(self) -> bool:
        return self.tile_compression == Compression.GZIP

    def tile_encoding(self) -> str | None:
        return {Compression.GZIP: "gzip", Compression.BROTLI: "br", Compression.ZSTD: "zstd"}.get(self.tile_compression)

    def bounds(self) -> list[float]:
        h = self.header
        b = [h["min_lon_e7"] / 1e7, h["min_lat_e7"] / 1e7, h["max_lon_e7"] / 1e7, h["max_lat_e7"] / 1e7]
        return b if b[0] < b[2] and b[1] < b[3] else [-180.0, -85.0511, 180.0, 85.0511]

    def center(self) -> list[float]:
        h = self.header
        return [h["center_lon_e7"] / 1e7, h["center_lat_e7"] / 1e7, h["center_zoom"]]

    def entries(self):
        """Every (tile_id, offset, length, run_length) the archive addresses, leaf directories expanded."""

        def walk(directory):
            for e in directory:
                if e.run_length == 0:
                    yield from walk(self._leaf(e.offset, e.length))
                else:
                    yield e

        yield from walk(self._root)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
