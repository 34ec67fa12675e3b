"""Tile archives read in place: every tile equals what the reference PMTiles reader returns."""

from __future__ import annotations

import gzip
import sqlite3

import pytest
from pmtiles.reader import MmapSource, Reader, all_tiles

from content.maps.mbtiles import MBTilesArchive
from content.maps.pmtiles_archive import PMTilesArchive
from content.maps.registry import MapRegistry
from content.maps.tiles import ArchiveError, describe, open_archive, schema

from .maps_testing import ARCHIVES, shared_map


@pytest.mark.parametrize("key", list(ARCHIVES))
def test_every_tile_matches_reference_reader(key):
    path = shared_map(key)
    archive = PMTilesArchive(path)
    with open(path, "rb") as f:
        reference = list(all_tiles(MmapSource(f)))
        ref_reader = Reader(MmapSource(f))
        assert archive.metadata == ref_reader.metadata()
    assert reference, "the shared archive holds tiles"
    for (z, x, y), data in reference:
        assert archive.tile(z, x, y) == data, (z, x, y)
    archive.close()


def test_header_schema_and_description():
    world = PMTilesArchive(shared_map("protomaps10m"))
    assert (world.minzoom, world.maxzoom) == (0, 6)
    assert schema(world) == "protomaps"
    info = describe("w", world)
    assert {"earth", "places", "boundaries"} <= set(info["vector_layers"])
    assert info["bounds"][0] == pytest.approx(-180) and info["bounds"][2] == pytest.approx(180)
    assert "Natural Earth" in info["attribution"]
    assert schema(PMTilesArchive(shared_map("openmaptiles"))) == "openmaptiles"
    toner = PMTilesArchive(shared_map("raster"))
    assert schema(toner) == "raster" and toner.format.mimetype == "image/png"
    assert toner.tile(0, 0, 0)[:8] == b"\x89PNG\r\n\x1a\n"


def test_absent_and_out_of_range_tiles_are_none():
    world = PMTilesArchive(shared_map("protomaps"))
    assert world.tile(5, 0, 0) is None  # beyond max zoom 4
    assert world.tile(2, 4, 0) is None  # x outside 0..3
    assert world.tile(-1, 0, 0) is None


def test_bad_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pmtiles"
    junk.write_bytes(b"not a map at all" * 20)
    with pytest.raises(ArchiveError, match="not a PMTiles archive"):
        open_archive(junk)
    truncated = tmp_path / "cut.pmtiles"
    truncated.write_bytes(shared_map("protomaps").read_bytes()[:300])
    with pytest.raises(ArchiveError, match="cut.pmtiles"):
        open_archive(truncated)
    other = tmp_path / "world.zip"
    other.write_bytes(b"PK")
    with pytest.raises(ArchiveError, match="not a map archive"):
        open_archive(other)
    with pytest.raises(ArchiveError, match="no such file"):
        open_archive(tmp_path / "missing.pmtiles")


def test_mbtiles_serves_the_same_tiles(tmp_path):
    from pmtiles.convert import pmtiles_to_mbtiles

    src = shared_map("openmaptiles")
    out = tmp_path / "helsinki.mbtiles"
    pmtiles_to_mbtiles(str(src), str(out))
    mb = open_archive(out)
    assert isinstance(mb, MBTilesArchive) and mb.format.vector and schema(mb) == "openmaptiles"
    pm = PMTilesArchive(src)
    with open(src, "rb") as f:
        reference = list(all_tiles(MmapSource(f)))
    for (z, x, y), data in reference:
        assert mb.tile(z, x, y) == data
    assert mb.tile_encoding() == "gzip"
    (z, x, y), biggest = max(reference, key=lambda t: len(t[1]))
    assert len(gzip.decompress(mb.tile(z, x, y))) > len(biggest)  # stored gzip, decodes
    assert mb.tile(14, 0, 0) is None
    assert (mb.minzoom, mb.maxzoom) == (pm.minzoom, pm.maxzoom)
    bad = tmp_path / "bad.mbtiles"
    sqlite3.connect(bad).execute("CREATE TABLE x (y)").connection.commit()
    with pytest.raises(ArchiveError, match="bad.mbtiles"):
        open_archive(bad)


def test_registry_folder_and_registered_paths(tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    reg = MapRegistry(tmp_path / "state.db", maps)
    assert reg.names() == []
    info = reg.add(shared_map("raster"))
    assert info["name"] == "stamen-toner-z0-3" and info["schema"] == "raster"
    (maps / "own.pmtiles").write_bytes(shared_map("protomaps").read_bytes())
    (maps / "broken.pmtiles").write_bytes(b"nope")
    assert set(reg.paths(0)) == {"stamen-toner-z0-3", "own", "broken"}
    assert reg.get("broken") is None and any("broken.pmtiles" in p for p in reg.problems())
    assert reg.get("own").maxzoom == 4
    with pytest.raises(ArchiveError, match="already served"):
        reg.add(shared_map("openmaptiles"), name="own")
    path, deleted = reg.remove("stamen-toner-z0-3")
    assert not deleted and path.exists()  # a registered file elsewhere is never deleted
    path, deleted = reg.remove("own")
    assert deleted and not path.exists()
    with pytest.raises(ArchiveError, match="no map named"):
        reg.remove("own")
    reg.close()
