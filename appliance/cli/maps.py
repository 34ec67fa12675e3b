"""`almanac maps ...`: list, add and remove map archives, build the offline world basemap and place index,
extract regions."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _data():
    # The root `almanac` group keeps its state (config, data dir) on the context object.
    return click.get_current_context().find_root().obj.data()


def _registry():
    from content.maps.registry import MapRegistry

    data = _data()
    return MapRegistry(data.db, data.maps)


@click.group()
def maps():
    """Offline maps: archives, the world basemap, place search, regions."""


@maps.command("list")
@click.option("--json", "as_json", is_flag=True)
def maps_list(as_json: bool):
    """List the map archives served."""
    reg = _registry()
    infos = reg.describe_all()
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    for m in infos:
        click.echo(
            f"{m['name']}\t{m['kind']}\t{m['schema']}\tz{m['minzoom']}-{m['maxzoom']}\t"
            f"{m['size'] / 1e6:.1f} MB\t{m['title']}"
        )
    for problem in reg.problems():
        click.echo(f"unreadable: {problem}", err=True)


@maps.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Name to serve it under (default: the file name without extension).")
def maps_add(path: Path, name: str | None):
    """Serve a .pmtiles or .mbtiles archive where it lies."""
    from content.maps.tiles import ArchiveError

    try:
        info = _registry().add(path, name)
    except ArchiveError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"added {info['name']}: {info['schema']} {info['format']} tiles, zooms {info['minzoom']}-"
        f"{info['maxzoom']}, {info['size'] / 1e6:.1f} MB"
    )


@maps.command("remove")
@click.argument("name")
def maps_remove(name: str):
    """Stop serving a map; its file is deleted only if it lives in the data dir's maps folder."""
    from content.maps.tiles import ArchiveError

    try:
        path, deleted = _registry().remove(name)
    except ArchiveError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"removed {name} and deleted {path}" if deleted else f"removed {name} (file kept at {path})")


def _viewer_from_tarball(maps_dir: Path, tarball: Path) -> str | None:
    """Unpack MapLibre from an npm tarball; the one-line reason it was refused, or None."""
    from content.maps import vendor

    if tarball.is_dir():
        found = vendor.newest_tarball(tarball)
        if found is None:
            return f"{tarball} holds no maplibre-gl-X.Y.Z.tgz (make one with: npm pack {vendor.NPM_SPEC})"
        tarball = found
    try:
        lib, unpacked = vendor.install_tarball(maps_dir, tarball)
    except (vendor.VendorError, OSError) as e:
        return str(e)
    click.echo(
        f"map viewer: maplibre-gl {lib.version_text} unpacked from {tarball.name}"
        if unpacked
        else f"map viewer: maplibre-gl {lib.version_text} already in place (not older than {tarball.name})"
    )
    return None


@maps.command("init")
@click.option("--force", is_flag=True, help="Rebuild the basemap and the place index even if present.")
@click.option(
    "--npm/--no-npm",
    "use_npm",
    default=True,
    show_default=True,
    help="Install MapLibre GL JS >= 5.11 with npm when npm is present (else the copy from PyPI is used).",
)
@click.option(
    "--maplibre-tarball",
    type=click.Path(path_type=Path),
    help="Unpack MapLibre GL JS >= 5.11 from this npm tarball (made by `npm pack maplibre-gl@^5.11.0`; "
    "no node needed), or from the newest maplibre-gl-X.Y.Z.tgz in this folder (a wheelhouse).",
)
def maps_init(force: bool, use_npm: bool, maplibre_tarball: Path | None):
    """Build the offline world basemap and place index (idempotent: skips what exists)."""
    from content.maps import basemap, gazetteer, vendor
    from content.maps.registry import BASEMAP_NAME

    data = _data()
    world = data.maps / f"{BASEMAP_NAME}.pmtiles"
    if world.exists() and not force:
        click.echo(f"world basemap: present ({world})")
    else:
        try:
            basemap.build(world, log=lambda m: click.echo(f"world basemap: {m}"))
        except basemap.BasemapError as e:
            raise click.ClickException(f"world basemap: {e}") from None
        click.echo(f"world basemap: built {world} ({world.stat().st_size / 1e6:.1f} MB)")
    gaz = data.gazetteer
    if gazetteer.is_built(gaz) and not force:
        click.echo(f"place index: present ({gaz})")
    else:
        try:
            n = gazetteer.build(gaz)
        except gazetteer.GazetteerError as e:
            raise click.ClickException(f"place index: {e}") from None
        click.echo(f"place index: {n} places in {gaz}")
    refused = _viewer_from_tarball(data.maps, maplibre_tarball) if maplibre_tarball else None
    lib = vendor.find(data.maps)
    if (lib is None or not lib.local_glyphs) and use_npm:
        ok, message = vendor.npm_install(data.maps)
        click.echo(f"map viewer: {message}" + ("" if ok else " (using the copy from PyPI)"))
        lib = vendor.find(data.maps)
    if lib is None:
        raise click.ClickException("map viewer: MapLibre GL JS not found; `pip install maplibre` or install npm")
    click.echo(
        f"map viewer: MapLibre GL JS {lib.version_text} from {lib.origin}"
        + ("" if lib.local_glyphs else " (too old for labels without glyph files: places show as dots)")
    )
    if refused:
        # Last, after the viewer is known to work with what is there: the tarball asked for was not used.
        raise click.ClickException(f"map viewer: {refused}")


@maps.command("add-region")
@click.option("--bbox", help="W,S,E,N in degrees.")
@click.option("--country", help="ISO 3166 alpha-2 code (its main territory's box, from Natural Earth).")
@click.option("--maxzoom", type=click.IntRange(0, 16), required=True, help="Deepest zoom to copy (14 = streets).")
@click.option("--source", required=True, help="A planet-scale PMTiles archive: a local path or an http(s) URL.")
@click.option("--name", help="Map name (default: region-<country> or region-<bbox>).")
@click.option("--dry-run", is_flag=True, help="Only print how much would be fetched.")
def maps_add_region(bbox, country, maxzoom, source, name, dry_run):
    """Extract a region from a planet archive with range reads (resumable); the world map stays underneath."""
    from content.maps import region
    from content.maps.registry import valid_name

    if bool(bbox) == bool(country):
        raise click.UsageError("give exactly one of --bbox or --country")
    try:
        box = region.parse_bbox(bbox) if bbox else region.country_bbox(country)
        name = name or (
            f"region-{country.lower()}" if country else "region-" + "_".join(f"{v:.2f}" for v in box).replace("-", "m")
        )
        if not valid_name(name):
            raise click.UsageError(f"{name!r}: a map name may hold letters, digits, '-', '_' and '.'")
        src = region.Source(source)
        out = _data().maps / f"{name}.pmtiles"
        if dry_run:
            p = region.plan(src, box, maxzoom)
            click.echo(
                f"{name}: {len(p.entries)} tiles, {p.bytes_needed / 1e6:.1f} MB to fetch "
                f"(box {', '.join(f'{v:.3f}' for v in box)})"
            )
            return
        region.extract(src, out, box, maxzoom, log=lambda m: click.echo(f"{name}: {m}"))
    except region.RegionError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{name}: saved {out} ({out.stat().st_size / 1e6:.1f} MB); it is served now")


@maps.command("index-articles")
def maps_index_articles():
    """Find the coordinates in every library book's pages now (the server also does it by itself)."""
    from content.library import Library
    from content.maps.geoindex import GeoIndex

    data = _data()
    library = Library(data.db, data.archives)
    library.scan()
    geo = GeoIndex(data.db)
    done = geo.sync(library, background=False)
    counts = geo.counts()
    for name in sorted(counts):
        click.echo(f"{name}\t{counts[name]} articles with coordinates" + ("\t(indexed now)" if name in done else ""))
