"""`almanac maps ...` as a user runs it."""

from __future__ import annotations

import json
import shutil

from almanac_testing import almanac

from .maps_testing import shared_map


def test_add_list_remove(data_dir):
    added = almanac("maps", "add", str(shared_map("openmaptiles")))
    assert added.returncode == 0, added.stderr
    assert "added helsinki-omt-z0-14: openmaptiles pbf tiles, zooms 0-14" in added.stdout
    listed = json.loads(almanac("maps", "list", "--json").stdout)
    assert [m["name"] for m in listed] == ["helsinki-omt-z0-14"] and listed[0]["maxzoom"] == 14
    again = almanac("maps", "add", str(shared_map("raster")), "--name", "helsinki-omt-z0-14")
    assert again.returncode == 1 and "already served" in again.stderr
    bad = data_dir.parent / "notes.pmtiles"
    bad.write_text("hello")
    refused = almanac("maps", "add", str(bad))
    assert refused.returncode == 1 and "not a PMTiles archive" in refused.stderr
    removed = almanac("maps", "remove", "helsinki-omt-z0-14")
    assert removed.returncode == 0 and "file kept" in removed.stdout
    assert shared_map("openmaptiles").exists()
    assert almanac("maps", "remove", "helsinki-omt-z0-14").returncode == 1
    assert almanac("maps", "list").stdout == ""


def test_init_is_idempotent(built_maps, data_dir):
    from .maps_testing import install_built

    install_built(built_maps, data_dir)
    proc = almanac("maps", "init", "--no-npm")
    assert proc.returncode == 0, proc.stderr
    assert "world basemap: present" in proc.stdout and "place index: present" in proc.stdout
    assert "MapLibre GL JS" in proc.stdout
    listed = json.loads(almanac("maps", "list", "--json").stdout)
    world = next(m for m in listed if m["name"] == "world")
    assert world["basemap"] and world["schema"] == "protomaps" and world["maxzoom"] == 6
    assert {"earth", "boundaries", "places"} <= set(world["vector_layers"])


def test_built_basemap_has_land_borders_and_cities(built_maps):
    """The basemap `maps init` built offline: real content at every zoom, cities named."""
    import gzip

    from content.maps.pmtiles_archive import PMTilesArchive

    world = PMTilesArchive(built_maps / "world.pmtiles")
    assert (world.minzoom, world.maxzoom) == (0, 6)
    assert "GeoNames" in world.metadata["attribution"]
    z0 = gzip.decompress(world.tile(0, 0, 0))
    assert b"earth" in z0 and b"boundaries" in z0
    z3 = gzip.decompress(world.tile(3, 4, 2))  # northern Europe: country names and big cities
    assert b"places" in z3 and b"Finland" in z3
    # Zoom 6 tile over Helsinki (x=36, y=18): the city's name is in it.
    z6 = gzip.decompress(world.tile(6, 36, 18))
    assert b"Helsinki" in z6 and b"Tallinn" in z6
    assert world.path.stat().st_size > 2_000_000


def test_init_unpacks_the_newest_tarball_of_a_folder_and_refuses_a_bad_one(built_maps, data_dir, tmp_path):
    from content.maps import vendor

    from .maps_testing import install_built
    from .test_vendor import make_tarball

    install_built(built_maps, data_dir)
    vendor_dir = data_dir / "maps" / "vendor"
    if vendor_dir.exists():  # the session's maps may carry the wheelhouse's MapLibre; start from PyPI's here
        shutil.rmtree(vendor_dir)
    old = make_tarball(tmp_path / "maplibre-gl-5.3.0.tgz", version="5.3.0")
    refused = almanac("maps", "init", "--no-npm", "--maplibre-tarball", str(old))
    assert refused.returncode == 1
    assert (
        refused.stderr.strip() == f"Error: map viewer: {old}: maplibre-gl 5.3.0 is too old; labels need "
        f">= 5.11.0 ({vendor.NPM_SPEC})"
    )
    assert "MapLibre GL JS 5.3.0 from pypi (too old for labels" in refused.stdout  # the viewer still works

    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    empty = almanac("maps", "init", "--no-npm", "--maplibre-tarball", str(wheelhouse))
    assert empty.returncode == 1 and "holds no maplibre-gl-X.Y.Z.tgz" in empty.stderr
    for v in ("5.12.0", "5.20.3"):
        make_tarball(wheelhouse / f"maplibre-gl-{v}.tgz", version=v)
    done = almanac("maps", "init", "--no-npm", "--maplibre-tarball", str(wheelhouse))
    assert done.returncode == 0, done.stderr
    assert "map viewer: maplibre-gl 5.20.3 unpacked from maplibre-gl-5.20.3.tgz" in done.stdout
    assert "map viewer: MapLibre GL JS 5.20.3 from tarball" in done.stdout
    again = almanac("maps", "init", "--no-npm", "--maplibre-tarball", str(wheelhouse / "maplibre-gl-5.12.0.tgz"))
    assert again.returncode == 0 and "already in place (not older than maplibre-gl-5.12.0.tgz)" in again.stdout
    assert "5.20.3 from tarball" in again.stdout
