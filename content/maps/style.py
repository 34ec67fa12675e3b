"""MapLibre styles generated from the archives this box serves.

One composite basemap draws every Protomaps-schema archive (the world basemap first, then regions by rising
detail, so a region paints over the world where it has data); an OpenMapTiles or raster archive gets a style
of its own. Text layers name a CSS font family and the style carries no `glyphs`: MapLibre >= 5.11 then draws
labels with the browser's fonts, so no glyph files are needed. Older MapLibre needs glyphs, so `labels=False`
leaves text out (places still show as dots).
"""

from __future__ import annotations

from dataclasses import dataclass

FONT = ["sans-serif"]

THEMES = {
    "light": {
        "background": "#aad3df",
        "water": "#aad3df",
        "earth": "#f2efe9",
        "park": "#cde6b8",
        "forest": "#bcd9a5",
        "urban": "#e8e3dc",
        "industrial": "#e4dde4",
        "farmland": "#eef0d5",
        "glacier": "#f4fbff",
        "sand": "#f1e6c8",
        "building": "#d9d0c9",
        "highway": "#f4b860",
        "major": "#fcd88a",
        "minor": "#ffffff",
        "path": "#c2b6a6",
        "rail": "#a8a39c",
        "casing": "#c9bfb3",
        "country": "#8d7f9f",
        "region": "#bdb3c8",
        "text": "#2d2a26",
        "halo": "#ffffff",
        "water_text": "#3f6f8f",
        "city": "#4a4a4a",
    },
    "dark": {
        "background": "#17263a",
        "water": "#17263a",
        "earth": "#2a2d31",
        "park": "#2c3a2e",
        "forest": "#29372b",
        "urban": "#303338",
        "industrial": "#33303a",
        "farmland": "#2e3229",
        "glacier": "#3a4450",
        "sand": "#3a3628",
        "building": "#3b3f45",
        "highway": "#8c6a34",
        "major": "#5a5f66",
        "minor": "#464a50",
        "path": "#4f4a44",
        "rail": "#5c5955",
        "casing": "#1f2124",
        "country": "#8b80a0",
        "region": "#5a5366",
        "text": "#e6e2dc",
        "halo": "#101214",
        "water_text": "#8fb6d4",
        "city": "#d0ccc6",
    },
}

ATTRIBUTION_OSM = '© <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors (ODbL)'


@dataclass(frozen=True)
class Source:
    name: str
    schema: str  # protomaps | openmaptiles | raster
    ext: str
    minzoom: int
    maxzoom: int
    bounds: list
    attribution: str


def _zoom_width(pairs):
    expr = ["interpolate", ["exponential", 1.6], ["zoom"]]
    for z, w in pairs:
        expr += [z, w]
    return expr


def _layer(lid, source, source_layer, kind, paint, group, filter_=None, layout=None, minzoom=None):
    layer = {
        "id": lid,
        "type": kind,
        "source": source,
        "source-layer": source_layer,
        "paint": paint,
        "metadata": {"almanac:group": group},
    }
    if filter_ is not None:
        layer["filter"] = filter_
    if layout:
        layer["layout"] = layout
    if minzoom is not None:
        layer["minzoom"] = minzoom
    return layer


def _label(
    lid, source, source_layer, t, size, filter_, group="labels", color=None, minzoom=None, placement="point", sort=None
):
    layout = {
        "text-field": ["coalesce", ["get", "name:en"], ["get", "name"], ["get", "name:latin"]],
        "text-font": FONT,
        "text-size": size,
        "text-max-width": 8,
    }
    if placement == "line":
        layout.update({"symbol-placement": "line", "text-max-angle": 30})
    if sort is not None:
        layout["symbol-sort-key"] = sort
    return _layer(
        lid,
        source,
        source_layer,
        "symbol",
        {"text-color": color or t["text"], "text-halo-color": t["halo"], "text-halo-width": 1.4},
        group,
        filter_,
        layout,
        minzoom,
    )


def _kind_in_class(*classes):
    return ["in", ["get", "class"], ["literal", list(classes)]]


def _kind_in(*kinds):
    return ["in", ["get", "kind"], ["literal", list(kinds)]]


def protomaps_layers(src: str, t: dict, labels: bool) -> dict[str, list]:
    """Layers for one Protomaps-schema source, grouped by drawing order (earth first, labels last)."""
    g: dict[str, list] = {k: [] for k in ("earth", "landuse", "water", "roads", "buildings", "boundaries", "labels")}
    g["earth"].append(_layer(f"{src}-earth", src, "earth", "fill", {"fill-color": t["earth"]}, "base"))
    g["landuse"] += [
        _layer(
            f"{src}-landcover",
            src,
            "landcover",
            "fill",
            {
                "fill-color": [
                    "match",
                    ["get", "kind"],
                    "forest",
                    t["forest"],
                    "grassland",
                    t["park"],
                    "glacier",
                    t["glacier"],
                    "barren",
                    t["sand"],
                    "farmland",
                    t["farmland"],
                    "urban_area",
                    t["urban"],
                    t["earth"],
                ],
                "fill-opacity": 0.6,
            },
            "landuse",
        ),
        _layer(
            f"{src}-landuse",
            src,
            "landuse",
            "fill",
            {
                "fill-color": [
                    "match",
                    ["get", "kind"],
                    [
                        "park",
                        "nature_reserve",
                        "garden",
                        "grass",
                        "meadow",
                        "playground",
                        "golf_course",
                        "cemetery",
                        "recreation_ground",
                        "village_green",
                    ],
                    t["park"],
                    ["forest", "wood", "scrub"],
                    t["forest"],
                    ["industrial", "railway", "military", "quarry", "landfill"],
                    t["industrial"],
                    ["farmland", "farm", "orchard", "vineyard", "allotments"],
                    t["farmland"],
                    ["beach", "sand", "bare_rock", "desert"],
                    t["sand"],
                    ["glacier"],
                    t["glacier"],
                    t["urban"],
                ],
                "fill-opacity": 0.8,
            },
            "landuse",
        ),
    ]
    g["water"] += [
        _layer(
            f"{src}-water",
            src,
            "water",
            "fill",
            {"fill-color": t["water"]},
            "base",
            ["==", ["geometry-type"], "Polygon"],
        ),
        _layer(
            f"{src}-waterways",
            src,
            "water",
            "line",
            {"line-color": t["water"], "line-width": _zoom_width([(8, 0.5), (16, 4)])},
            "base",
            ["==", ["geometry-type"], "LineString"],
        ),
    ]
    road_color = [
        "match",
        ["get", "kind"],
        "highway",
        t["highway"],
        "major_road",
        t["major"],
        ["path"],
        t["path"],
        "rail",
        t["rail"],
        t["minor"],
    ]

    def road_width(extra: float = 0.0):
        return [
            "interpolate",
            ["exponential", 1.6],
            ["zoom"],
            5,
            ["match", ["get", "kind"], "highway", 0.8 + extra, "major_road", 0.4 + extra, 0.1 + extra],
            18,
            ["match", ["get", "kind"], "highway", 18 + extra, "major_road", 14 + extra, "path", 3 + extra, 9 + extra],
        ]

    g["roads"] += [
        _layer(
            f"{src}-roads-casing",
            src,
            "roads",
            "line",
            {
                "line-color": t["casing"],
                "line-width": road_width(1.5),
                "line-opacity": ["interpolate", ["linear"], ["zoom"], 11, 0, 12, 1],
            },
            "roads",
            _kind_in("highway", "major_road", "minor_road"),
            {"line-cap": "round", "line-join": "round"},
            11,
        ),
        _layer(
            f"{src}-roads",
            src,
            "roads",
            "line",
            {"line-color": road_color, "line-width": road_width()},
            "roads",
            None,
            {"line-cap": "round", "line-join": "round"},
        ),
        _layer(
            f"{src}-transit",
            src,
            "transit",
            "line",
            {"line-color": t["rail"], "line-width": 1, "line-dasharray": [3, 2]},
            "roads",
        ),
    ]
    g["buildings"].append(
        _layer(
            f"{src}-buildings",
            src,
            "buildings",
            "fill",
            {"fill-color": t["building"], "fill-opacity": 0.9},
            "buildings",
            minzoom=13,
        )
    )
    g["boundaries"].append(
        _layer(
            f"{src}-boundaries",
            src,
            "boundaries",
            "line",
            {
                "line-color": ["match", ["get", "kind"], "country", t["country"], t["region"]],
                "line-width": [
                    "interpolate",
                    ["linear"],
                    ["zoom"],
                    0,
                    ["match", ["get", "kind"], "country", 0.6, 0.3],
                    8,
                    ["match", ["get", "kind"], "country", 1.6, 0.8],
                    14,
                    ["match", ["get", "kind"], "country", 3, 1.5],
                ],
                "line-dasharray": ["literal", [3, 1.5]],
            },
            "boundaries",
            ["any", ["!", ["has", "kind_detail"]], ["<=", ["to-number", ["get", "kind_detail"]], 4]],
        )
    )
    if labels:
        visible = ["<=", ["coalesce", ["to-number", ["get", "min_zoom"]], 0], ["+", ["zoom"], 0.5]]
        g["labels"] += [
            _label(
                f"{src}-roads-label",
                src,
                "roads",
                t,
                11,
                _kind_in("highway", "major_road", "minor_road"),
                minzoom=13,
                placement="line",
            ),
            _label(
                f"{src}-water-label",
                src,
                "water",
                t,
                12,
                ["all", ["==", ["geometry-type"], "Point"], ["has", "name"]],
                color=t["water_text"],
            ),
            _label(
                f"{src}-country-label",
                src,
                "places",
                t,
                ["interpolate", ["linear"], ["zoom"], 2, 11, 6, 16],
                ["all", ["==", ["get", "kind"], "country"], visible],
                minzoom=1,
            ),
            _label(
                f"{src}-region-label",
                src,
                "places",
                t,
                11,
                ["all", ["==", ["get", "kind"], "region"], visible],
                color=t["region"],
                minzoom=4,
            ),
            _label(
                f"{src}-locality-label",
                src,
                "places",
                t,
                ["interpolate", ["linear"], ["zoom"], 3, 10, 8, 13, 14, 16],
                ["all", _kind_in("locality", "neighbourhood", "macrohood"), visible],
                color=t["city"],
                sort=["-", 0, ["coalesce", ["to-number", ["get", "population"]], 0]],
            ),
        ]
    g["labels"].insert(
        0,
        _layer(
            f"{src}-locality-dot",
            src,
            "places",
            "circle",
            {
                "circle-radius": ["interpolate", ["linear"], ["zoom"], 2, 1.5, 8, 3.5],
                "circle-color": t["city"],
                "circle-stroke-color": t["halo"],
                "circle-stroke-width": 1,
            },
            "labels",
            [
                "all",
                ["==", ["get", "kind"], "locality"],
                ["<=", ["coalesce", ["to-number", ["get", "min_zoom"]], 0], ["+", ["zoom"], 0.5]],
            ],
            None,
            None,
        ),
    )
    g["labels"][0]["maxzoom"] = 10
    return g


def openmaptiles_layers(src: str, t: dict, labels: bool) -> list:
    omt_road = [
        "match",
        ["get", "class"],
        ["motorway", "trunk"],
        t["highway"],
        ["primary", "secondary", "tertiary"],
        t["major"],
        ["path", "track"],
        t["path"],
        ["rail", "transit"],
        t["rail"],
        t["minor"],
    ]
    width = [
        "interpolate",
        ["exponential", 1.6],
        ["zoom"],
        5,
        ["match", ["get", "class"], ["motorway", "trunk"], 0.8, 0.2],
        18,
        ["match", ["get", "class"], ["motorway", "trunk"], 18, ["primary", "secondary"], 14, 8],
    ]
    layers = [
        _layer(
            f"{src}-landcover",
            src,
            "landcover",
            "fill",
            {
                "fill-color": [
                    "match",
                    ["get", "class"],
                    ["wood", "forest"],
                    t["forest"],
                    ["grass", "park"],
                    t["park"],
                    "ice",
                    t["glacier"],
                    "sand",
                    t["sand"],
                    "farmland",
                    t["farmland"],
                    t["park"],
                ],
                "fill-opacity": 0.7,
            },
            "landuse",
        ),
        _layer(
            f"{src}-landuse",
            src,
            "landuse",
            "fill",
            {
                "fill-color": [
                    "match",
                    ["get", "class"],
                    ["industrial", "railway", "commercial"],
                    t["industrial"],
                    t["urban"],
                ],
                "fill-opacity": 0.7,
            },
            "landuse",
        ),
        _layer(f"{src}-park", src, "park", "fill", {"fill-color": t["park"], "fill-opacity": 0.7}, "landuse"),
        _layer(f"{src}-water", src, "water", "fill", {"fill-color": t["water"]}, "base"),
        _layer(
            f"{src}-waterway",
            src,
            "waterway",
            "line",
            {"line-color": t["water"], "line-width": _zoom_width([(8, 0.5), (16, 4)])},
            "base",
        ),
        _layer(f"{src}-building", src, "building", "fill", {"fill-color": t["building"]}, "buildings"),
        _layer(
            f"{src}-roads",
            src,
            "transportation",
            "line",
            {"line-color": omt_road, "line-width": width},
            "roads",
            None,
            {"line-cap": "round", "line-join": "round"},
        ),
        _layer(
            f"{src}-boundary",
            src,
            "boundary",
            "line",
            {
                "line-color": ["match", ["get", "admin_level"], 2, t["country"], t["region"]],
                "line-width": 1.2,
                "line-dasharray": [3, 1.5],
            },
            "boundaries",
            ["<=", ["get", "admin_level"], 4],
        ),
        _layer(
            f"{src}-place-dot",
            src,
            "place",
            "circle",
            {"circle-radius": 3, "circle-color": t["city"], "circle-stroke-color": t["halo"], "circle-stroke-width": 1},
            "labels",
            _kind_in_class("city", "town"),
        ),
    ]
    if labels:
        layers += [
            _label(f"{src}-road-label", src, "transportation_name", t, 11, None, minzoom=13, placement="line"),
            _label(f"{src}-water-label", src, "water_name", t, 12, None, color=t["water_text"]),
            _label(
                f"{src}-place-label",
                src,
                "place",
                t,
                ["match", ["get", "class"], "country", 15, "city", 14, "town", 12, 11],
                None,
                color=t["city"],
            ),
        ]
    return layers


def base_style(theme: str) -> dict:
    t = THEMES[theme]
    return {
        "version": 8,
        "name": f"Almanac {theme}",
        "metadata": {"almanac:theme": theme},
        "sources": {},
        "layers": [
            {
                "id": "background",
                "type": "background",
                "paint": {"background-color": t["background"]},
                "metadata": {"almanac:group": "base"},
            }
        ],
    }


def source_json(s: Source, base_url: str) -> dict:
    url = f"{base_url}/maps/tiles/{s.name}/{{z}}/{{x}}/{{y}}.{s.ext}"
    src = {
        "type": "raster" if s.schema == "raster" else "vector",
        "tiles": [url],
        "minzoom": s.minzoom,
        "maxzoom": s.maxzoom,
        "bounds": s.bounds,
        "attribution": s.attribution,
    }
    if s.schema == "raster":
        src["tileSize"] = 256
    return src


def build_style(sources: list[Source], base_url: str, theme: str = "light", labels: bool = True) -> dict:
    """A style drawing `sources`: Protomaps archives composited, OpenMapTiles regions over them, or a raster map."""
    if theme not in THEMES:
        raise ValueError(f"unknown flavor {theme!r} (light or dark)")
    t = THEMES[theme]
    style = base_style(theme)
    pm = sorted((s for s in sources if s.schema == "protomaps"), key=lambda s: (s.maxzoom, s.name))
    groups: dict[str, list] = {}
    for s in pm:
        sid = f"pm-{s.name}"
        style["sources"][sid] = source_json(s, base_url)
        for group, layers in protomaps_layers(sid, t, labels).items():
            groups.setdefault(group, []).extend(layers)
    # Labels of every map go last, so a street-level region drawn over the world never hides the world's names
    # (nor the world's fills the region's).
    drawn = [layer for group, layers in groups.items() if group != "labels" for layer in layers]
    names = groups.get("labels", [])
    for s in sources:
        if s.schema == "openmaptiles":
            sid = f"omt-{s.name}"
            style["sources"][sid] = source_json(s, base_url)
            for layer in openmaptiles_layers(sid, t, labels):
                (names if layer["metadata"]["almanac:group"] == "labels" else drawn).append(layer)
        elif s.schema == "raster":
            sid = f"raster-{s.name}"
            style["sources"][sid] = source_json(s, base_url)
            paint = {"raster-brightness-max": 0.75} if theme == "dark" else {}
            drawn.append(
                {"id": sid, "type": "raster", "source": sid, "paint": paint, "metadata": {"almanac:group": "base"}}
            )
    style["layers"].extend(drawn + names)
    return style
