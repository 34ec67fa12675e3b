"""The console's Maps: the installed map archives (remove one), and a region added from a planet-scale
PMTiles archive, by country or by a box drawn on the map, with its size estimated before it starts (the cut
itself is `almanac maps add-region`, run as a task)."""

from __future__ import annotations

from flask import abort, request

from content.maps.registry import BASEMAP_NAME, valid_name
from content.maps.tiles import ArchiveError

from .. import worker_state
from ..render import page
from .common import done, form, start_task


def _region_args(values) -> tuple[tuple[float, float, float, float], str, int, str]:
    """(bbox, default name, maxzoom, source) from a form or query, or a 400 that says which is wrong."""
    from content.maps import region

    country, bbox_text = (values.get("country") or "").strip(), (values.get("bbox") or "").strip()
    if bool(country) == bool(bbox_text):
        abort(400, "give exactly one of country (ISO code) or bbox (W,S,E,N)")
    try:
        maxzoom = int(values.get("maxzoom") or 10)
    except ValueError:
        abort(400, "maxzoom must be a whole number")
    if not 0 <= maxzoom <= 16:
        abort(400, "maxzoom must be between 0 and 16")
    source = (values.get("source") or "").strip() or str(worker_state.get().config.get("maps.planet_source")).strip()
    if not source:
        abort(400, "no planet map source: give source, or set maps.planet_source in Settings")
    try:
        bbox = region.parse_bbox(bbox_text) if bbox_text else region.country_bbox(country)
    except region.RegionError as e:
        abort(400, str(e))
    name = f"region-{country.lower()}" if country else "region-" + "_".join(f"{v:.2f}" for v in bbox).replace("-", "m")
    return bbox, name, maxzoom, source


_COUNTRIES: list[dict] = []


def _countries() -> list[dict]:
    """ISO code and name of every country in Natural Earth (read once per worker), for the region form."""
    if not _COUNTRIES:
        from content.maps.basemap import countries

        try:
            seen = {}
            for _, rec in countries():
                code = rec.get("ISO_A2") if rec.get("ISO_A2") not in (None, "-99") else rec.get("ISO_A2_EH")
                if code and code != "-99":
                    seen.setdefault(code, str(rec.get("NAME") or rec.get("ADMIN") or code))
            _COUNTRIES.extend({"code": c, "name": n} for c, n in sorted(seen.items(), key=lambda kv: kv[1]))
        except Exception:  # no Natural Earth data on this box: the form still takes a drawn box
            return []
    return _COUNTRIES


def maps_page():
    """GET /admin/maps: installed maps, the region form (countries, the map to draw on)."""
    from content.maps import vendor

    s = worker_state.get()
    reg = s.maps.registry
    reg.paths(max_age_s=0)  # the admin sees a region cut a moment ago (readers' lookups keep the 5 s scan)
    data = {
        "maps": reg.describe_all(),
        "problems": reg.problems(),
        "countries": _countries(),
        "planet_source": str(s.config.get("maps.planet_source")),
        "maplibre": vendor.find(s.data.maps) is not None,
        "basemap": BASEMAP_NAME,
        "notice": request.args.get("notice", ""),
    }
    return page("console/maps.html", data)


def estimate():
    """GET /admin/maps/estimate?country=|bbox=&maxzoom=&source=: tiles and bytes the region would fetch."""
    from content.maps import region

    bbox, name, maxzoom, source = _region_args(request.args)
    try:
        p = region.plan(region.Source(source), bbox, maxzoom)
    except region.RegionError as e:
        abort(400, str(e))
    data = {"name": name, "bbox": list(bbox), "maxzoom": maxzoom, "source": source}
    data.update(tiles=len(p.entries), bytes_needed=p.bytes_needed)
    return page("console/estimate.html", data)


def add_region():
    """POST /admin/maps/region (country|bbox, maxzoom, source[, name]): the cut started as a task."""
    bbox, name, maxzoom, source = _region_args(request.form)
    name = form("name", required=False) or name
    if not valid_name(name):
        abort(400, f"{name!r}: a map name may hold letters, digits, '-', '_' and '.'")
    argv = ["maps", "add-region", "--bbox", ",".join(f"{v:.6f}" for v in bbox), "--maxzoom", str(maxzoom)]
    argv += ["--source", source, "--name", name]
    task = start_task("map-region", f"map region {name} to zoom {maxzoom}", argv)
    return done(f"task {task.id}: map region {name}", "/admin/jobs", task=task.to_json())


def remove_map(name: str):
    """POST /admin/maps/NAME/remove: no longer served; its file deleted only if it lives in maps/."""
    try:
        path, deleted = worker_state.get().maps.registry.remove(name)
    except ArchiveError as e:
        abort(404, str(e))
    message = f"removed {name} and deleted {path}" if deleted else f"removed {name} (file kept at {path})"
    return done(message, "/admin/maps", name=name, deleted=deleted)
