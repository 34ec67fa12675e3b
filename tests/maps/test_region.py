"""Region extraction from a 'planet' archive (the shared 10m world), locally and over HTTP Range, resumable."""

from __future__ import annotations

import pytest
from pmtiles.reader import MmapSource, all_tiles

from content.maps import region
from content.maps.pmtiles_archive import PMTilesArchive
from almanac_testing import almanac

from .maps_testing import shared_map

FINLAND = (20.6, 59.8, 31.6, 70.1)


def _expected(bbox, maxzoom):
    want = {(z, x, y) for z, x, y in region.tiles_in_bbox(bbox, 0, maxzoom)}
    with open(shared_map("protomaps10m"), "rb") as f:
        return {zxy: data for zxy, data in all_tiles(MmapSource(f)) if zxy in want}


def test_extract_copies_exactly_the_tiles_in_the_box(tmp_path):
    out = region.extract(
        region.Source(str(shared_map("protomaps10m"))), tmp_path / "fi.pmtiles", FINLAND, 5, log=lambda m: None
    )
    got = PMTilesArchive(out)
    expected = _expected(FINLAND, 5)
    with open(out, "rb") as f:
        copied = dict(all_tiles(MmapSource(f)))
    assert copied == expected
    assert got.maxzoom == 5 and got.bounds() == pytest.approx(list(FINLAND), abs=1e-6)
    assert got.metadata["vector_layers"] == PMTilesArchive(shared_map("protomaps10m")).metadata["vector_layers"]


def test_interrupted_extract_resumes(tmp_path):
    src = region.Source(str(shared_map("protomaps10m")))
    out = tmp_path / "fi.pmtiles"
    bbox = (19.0, 59.0, 32.0, 71.0)
    with pytest.raises(region.RegionError, match="interrupted"):
        region.extract(src, out, bbox, 6, log=lambda m: None, stop_after_spans=1)
    assert not out.exists() and (tmp_path / ".fi.pmtiles.download").exists()
    lines = []
    region.extract(src, out, bbox, 6, log=lines.append)
    assert any(line.startswith("resuming: 1 of") for line in lines), lines
    with open(out, "rb") as f:
        assert dict(all_tiles(MmapSource(f))) == _expected(bbox, 6)
    assert not (tmp_path / ".fi.pmtiles.download").exists()


def test_bad_boxes_and_sources(tmp_path):
    with pytest.raises(region.RegionError, match="W,S,E,N"):
        region.parse_bbox("1,2,3")
    with pytest.raises(region.RegionError, match="need"):
        region.parse_bbox("10,50,5,60")
    with pytest.raises(region.RegionError, match="no such file"):
        region.Source(str(tmp_path / "planet.pmtiles"))
    with pytest.raises(region.RegionError, match="ISO code"):
        region.country_bbox("XX")
    assert region.country_bbox("FI") == pytest.approx(FINLAND, abs=0.5)


def test_add_region_over_http_range_from_a_live_server(data_dir, live_server):
    """The remote path: the 'planet' is served by another Almanac's /maps/archives endpoint (HTTP Range)."""
    assert almanac("maps", "add", str(shared_map("protomaps10m")), "--name", "planet").returncode == 0
    url = f"{live_server}/maps/archives/planet.pmtiles"
    dry = almanac(
        "maps",
        "add-region",
        "--bbox",
        "24.5,60.0,25.5,60.5",
        "--maxzoom",
        "6",
        "--source",
        url,
        "--name",
        "helsinki",
        "--dry-run",
    )
    assert dry.returncode == 0, dry.stderr
    assert "tiles," in dry.stdout and "MB to fetch" in dry.stdout
    proc = almanac("maps", "add-region", "--country", "FI", "--maxzoom", "4", "--source", url)
    assert proc.returncode == 0, proc.stderr
    assert "MB to fetch" in proc.stdout and "it is served now" in proc.stdout
    out = data_dir / "maps" / "region-fi.pmtiles"
    assert PMTilesArchive(out).maxzoom == 4
    listed = almanac("maps", "list").stdout
    assert "region-fi" in listed and "planet" in listed
    both = almanac("maps", "add-region", "--bbox", "1,2,3,4", "--country", "FI", "--maxzoom", "4", "--source", url)
    assert both.returncode == 2 and "exactly one" in both.stderr
