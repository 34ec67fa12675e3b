"""`almanac content ...`: build ZIM archives and manage the library's books."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .state import BadInput, CliState, pass_state


@click.group()
def content():
    """The library of ZIM archives."""


@content.command("build-zim")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--title", help="Title (default: the main page's heading).")
@click.option("--name", help="Book name in catalogs (default: the output file name).")
@click.option("--description", help="One-line description.")
@click.option("--language", default="eng", show_default=True, help="ISO 639-3 language code.")
def build_zim_cmd(src: Path, out: Path, title, name, description, language):
    """Build a ZIM (full-text and title index, metadata, illustration) from a folder of Markdown/HTML."""
    from content.zim_builder import ZimBuildError, build_zim

    try:
        report = build_zim(src, out, name=name, title=title, description=description, language=language)
    except ZimBuildError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"{report.out_path}: {report.article_count} pages, {report.resource_count} files, "
        f"{report.size_bytes / 1e3:.0f} kB, main page {report.main_path!r}"
    )


def _library_call(fn, *args):
    from content.library import LibraryError

    try:
        return fn(*args)
    except LibraryError as e:
        raise click.ClickException(str(e)) from None


@content.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
def content_add(state: CliState, path: Path):
    """Register a ZIM file (checked in a separate process first)."""
    book = _library_call(state.library().add, path)
    click.echo(f"added {book.name}: {book.title} ({book.article_count} articles, {book.size / 1e6:.1f} MB)")


@content.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_list(state: CliState, as_json: bool):
    """List the books in the library."""
    library = state.library()
    library.scan()
    books = library.list()
    if as_json:
        click.echo(json.dumps([b.to_json() for b in books], indent=2))
        return
    for b in books:
        click.echo(f"{b.name}\t{b.title}\t{b.language}\t{b.article_count} articles\t{b.size / 1e6:.1f} MB")
    for rejected in library.rejected():
        click.echo(f"refused: {rejected['reason']}", err=True)


@content.command("info")
@click.argument("name")
@pass_state
def content_info(state: CliState, name: str):
    """Show a book's metadata."""
    book = state.library().get(name)
    if book is None:
        raise click.ClickException(f"no book named {name!r}")
    for key, value in book.to_json().items():
        click.echo(f"{key}: {value}")


@content.command("remove")
@click.argument("name")
@pass_state
def content_remove(state: CliState, name: str):
    """Remove a book; its file is deleted only if it lives in the data dir's archives folder."""
    from ..fill import remove_book

    path, deleted = _library_call(remove_book, state.library(), name)
    click.echo(f"removed {name} and deleted {path}" if deleted else f"removed {name} (file kept at {path})")


@content.command("check")
@click.argument("name")
@pass_state
def content_check(state: CliState, name: str):
    """Run libzim's full integrity check on a book."""
    from content.zim_probe import deep_check

    book = state.library().get(name)
    if book is None:
        raise click.ClickException(f"no book named {name!r}")
    ok, message = deep_check(book.path)
    click.echo(f"{'OK' if ok else 'FAIL'} {name}: {message}")
    sys.exit(0 if ok else 1)


# -- filling the box: the catalog, downloads, packs, updates, import and export ------------------------------


def _echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2))


def _catalog(box):
    from ..fill import FillError

    try:
        return box.catalog()
    except FillError as e:
        raise BadInput(str(e)) from None


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _job_line(job) -> str:
    from content.downloads import human_bytes

    if job.state == "done":
        return f"done {job.name}: {job.result} (sha256 {job.sha256})"
    size = human_bytes(job.size) if job.size else "size unknown"
    return f"{job.state} {job.name}: {human_bytes(job.bytes_done)} of {size}" + (f": {job.error}" if job.error else "")


def _run_jobs(box, jobs, as_json: bool) -> None:
    """Run the queue in this process until it is empty, then report ``jobs``; exit 1 if one did not finish."""
    box.downloader.run()
    progress = box.downloader.on_progress
    if progress is not None:
        progress.close()
    ended = [box.downloader.job(j.id) for j in jobs]
    if as_json:
        _echo_json([j.to_json() for j in ended])
    else:
        for job in ended:
            if job.state in ("running", "verifying", "queued"):
                click.echo(f"job {job.id} ({job.name}) is {job.state} in another process (the service?)")
            else:
                click.echo(_job_line(job))
    if any(j.state in ("failed", "cancelled", "paused") for j in ended):
        sys.exit(1)


@content.command("catalog")
@click.option("--lang", default="", help="ISO 639-3 language code, e.g. eng, fra.")
@click.option("--q", "q", default="", help="Words to look for in titles and descriptions.")
@click.option("--category", default="", help="e.g. wikipedia, wiktionary, gutenberg.")
@click.option("--count", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--start", type=click.IntRange(0), default=0, show_default=True)
@click.option("--refresh", is_flag=True, help="First pull the whole catalog, so all of it browses offline.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_catalog(state: CliState, lang, q, category, count, start, refresh, as_json):
    """Browse the Kiwix catalog (library.catalog_url); offline, the cached copy, with its age."""
    from content.catalog import CatalogError
    from content.downloads import human_bytes

    box = state.box()
    cat = _catalog(box)
    try:
        if refresh:
            n = cat.refresh()
            if not as_json:
                click.echo(f"catalog {cat.url}: {n} books cached for offline browsing", err=True)
        page = cat.entries(q=q, lang=lang, category=category, count=count, start=start)
    except CatalogError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        _echo_json(page.to_json())
        return
    shown = f"{page.start + 1}-{page.start + len(page.entries)}" if page.entries else "none"
    where = (
        f"offline ({page.error}): the copy cached {_age(page.age_s)} ago"
        if page.offline
        else f"fetched {_age(page.age_s)} ago"
    )
    click.echo(f"catalog {page.catalog}: {page.total} books, showing {shown}; {where}")
    for e in page.entries:
        click.echo(f"{e.stable_name}\t{e.date}\t{e.language}\t{e.category}\t{human_bytes(e.size)}\t{e.title}")


@content.command("download")
@click.argument("name_or_url")
@click.option("--sha256", help="The file's expected SHA-256 (when the server publishes no .meta4 or .sha256).")
@click.option("--no-wait", is_flag=True, help="Only queue it: the service (almanac serve) downloads it.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_download(state: CliState, name_or_url, sha256, no_wait, as_json):
    """Download a catalog book (NAME, NAME:FLAVOUR) or a URL (.zim, .zim.meta4, .pmtiles, .mbtiles): resumable,
    verified (metalink or .sha256 checksum, then the ZIM probe) and only then moved into the library."""
    from content.acquire import AcquireError, download

    box = state.box(progress=not as_json and not no_wait)
    url = name_or_url.startswith(("http://", "https://"))
    try:
        job = download(box.downloader, None if url else _catalog(box), name_or_url, sha256=sha256)
    except AcquireError as e:
        raise BadInput(str(e)) from None
    if no_wait:
        _echo_json(job.to_json()) if as_json else click.echo(f"queued job {job.id}: {job.kind} {job.name}")
        return
    _run_jobs(box, [job], as_json)


def _plan_lines(plan) -> list[str]:
    from content.downloads import human_bytes

    lines = [
        f"{plan.pack.id} (v{plan.pack.version}): {plan.pack.title}: {human_bytes(plan.total_bytes)} to fetch, "
        f"{human_bytes(plan.free_bytes)} free: {plan.verdict}"
    ]
    for i in plan.items:
        size = human_bytes(i.size) if i.size else "-"
        lines.append(f"  {i.item.kind:5}  {i.item.label}: {i.status}, {size}" + (f" ({i.note})" if i.note else ""))
    return lines


def _pack(box, pack_id: str):
    from content.packs import PackError

    try:
        packs = box.packs()
    except PackError as e:
        raise BadInput(str(e)) from None
    if pack_id not in packs:
        raise BadInput(f"no pack {pack_id!r} (known: {', '.join(sorted(packs))}); `almanac content packs` lists them")
    return packs[pack_id]


@content.command("packs")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_packs(state: CliState, as_json: bool):
    """The curated packs (and yours, in DATA/packs/*.yaml), each planned against the catalog and the free disk."""
    from content.packs import PackError

    from ..fill import FillError

    box = state.box()
    try:
        packs = box.packs()
    except PackError as e:
        raise BadInput(str(e)) from None
    try:
        plans = [box.plan(p) for p in packs.values()]
    except FillError as e:  # no catalog set: the packs are listed, unplanned
        if as_json:
            _echo_json({"packs": [p.to_json() for p in packs.values()], "plans": [], "error": str(e)})
            return
        for p in packs.values():
            click.echo(f"{p.id} (v{p.version}): {p.title}")
        click.echo(f"no sizes: {e}", err=True)
        return
    if as_json:
        _echo_json({"packs": [p.to_json() for p in packs.values()], "plans": [pl.to_json() for pl in plans]})
        return
    for plan in plans:
        click.echo("\n".join(_plan_lines(plan)))


@content.command("install")
@click.argument("pack_id", metavar="PACK")
@click.option(
    "--map-source",
    help="A planet-scale .pmtiles (a path or an http(s) URL on your LAN) to cut the pack's map regions from.",
)
@click.option("--dry-run", is_flag=True, help="Only show the plan.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_install(state: CliState, pack_id, map_source, dry_run, as_json):
    """Install a pack: its plan against the free disk first, then every book downloaded and verified, its map
    regions cut and its models pulled; each item reported (done, installed already, or not installed: why)."""
    from ..fill import FillError, install_pack

    box = state.box(progress=not as_json)
    pack = _pack(box, pack_id)
    _catalog(box)
    plan = box.plan(pack)
    if not as_json:
        click.echo("\n".join(_plan_lines(plan)))
    if dry_run:
        if as_json:
            _echo_json({"plan": plan.to_json(), "items": []})
        return
    if not plan.fits:
        raise click.ClickException(f"pack {pack.id}: {plan.verdict}; nothing was started")
    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    try:
        results = install_pack(box, plan, map_source=map_source, log=log, progress=not as_json)
    except FillError as e:
        raise click.ClickException(str(e)) from None
    if box.downloader.on_progress is not None:
        box.downloader.on_progress.close()
    ok = all(r.status in ("done", "installed") for r in results)
    if as_json:
        _echo_json({"plan": plan.to_json(), "items": [r.to_json() for r in results], "complete": ok})
    else:
        for r in results:
            click.echo(r.line())
        left = sum(r.status not in ("done", "installed") for r in results)
        click.echo(f"pack {pack.id}: " + ("installed" if ok else f"{left} of {len(results)} items not installed"))
    if not ok:
        sys.exit(1)


@content.command("updates")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_updates(state: CliState, as_json: bool):
    """Installed books with a newer release in the catalog (same name and flavour)."""
    from content.catalog import CatalogError
    from content.downloads import human_bytes
    from content.updates import find_updates

    box = state.box()
    try:
        updates = find_updates(box.library, box.provenance, _catalog(box))
    except CatalogError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        _echo_json([u.to_json() for u in updates])
        return
    for u in updates:
        click.echo(f"{u.book}\t{u.installed_date or '?'} -> {u.entry.date}\t{human_bytes(u.entry.size)}")
    if not updates:
        click.echo("every book is up to date", err=True)


@content.command("update")
@click.argument("name")
@click.option("--no-wait", is_flag=True, help="Only queue it: the service (almanac serve) downloads it.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_update(state: CliState, name, no_wait, as_json):
    """Replace book NAME with its newest release, in place: downloaded beside it, verified, then moved over it;
    its /content/NAME/ links keep working, and a failed update leaves the old book serving."""
    from content.acquire import AcquireError
    from content.catalog import CatalogError
    from content.updates import start_update

    box = state.box(progress=not as_json and not no_wait)
    try:
        job = start_update(box.library, box.provenance, _catalog(box), box.downloader, name)
    except AcquireError as e:
        raise BadInput(str(e)) from None
    except CatalogError as e:
        raise click.ClickException(str(e)) from None
    if no_wait:
        _echo_json(job.to_json()) if as_json else click.echo(f"queued job {job.id}: update of {job.name}")
        return
    _run_jobs(box, [job], as_json)


def _bytes_bar(as_json: bool, desc: str):
    from tqdm import tqdm

    return tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=as_json, leave=False)


@content.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_import(state: CliState, path: Path, as_json: bool):
    """Import the ZIMs, map archives and converted models found in PATH (a folder or a mounted drive): each
    verified, what is installed already skipped, what is refused said with its reason."""
    from content.transfer import import_folder

    def model_check(folder: Path) -> list:
        import llm_engine

        return llm_engine.checks.verify(folder)

    box = state.box()
    with _bytes_bar(as_json, "import") as bar:
        report = import_folder(
            path,
            box.library,
            box.provenance,
            maps_dir=box.data.maps,
            models_dir=box.data.models,
            model_check=model_check,
            on_bytes=bar.update,
        )
    if as_json:
        _echo_json(report.to_json())
    else:
        for i in report.imported:
            click.echo(f"imported {i['kind']} {i['name']}: {i['path']}")
        for s in report.skipped:
            click.echo(f"skipped {s['source']}: {s['reason']}")
        for r in report.refused:
            click.echo(f"refused {r['source']}: {r['reason']}")
        click.echo(f"{len(report.imported)} imported, {len(report.skipped)} skipped, {len(report.refused)} refused")
    if report.refused:
        sys.exit(1)


@content.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("names", nargs=-1)
@click.option("--maps", "with_maps", is_flag=True, help="Also the map archives in the data dir's maps/ folder.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_export(state: CliState, path: Path, names, with_maps: bool, as_json: bool):
    """Copy the library's books (or only NAMES) to PATH with a SHA256SUMS list, so another box can import them."""
    from content.transfer import export_library
    from content.transfer.exporter import ExportError

    box = state.box()
    maps = sorted(p for p in box.data.maps.iterdir() if p.suffix in (".pmtiles", ".mbtiles")) if with_maps else ()
    try:
        with _bytes_bar(as_json, "export") as bar:
            report = export_library(path, box.library, names=list(names) or None, map_files=maps, on_bytes=bar.update)
    except ExportError as e:
        raise BadInput(str(e)) from None
    if as_json:
        _echo_json(report.to_json())
        return
    for e in report.exported:
        click.echo(f"exported {e['name']}: {path / e['file']} ({e['size'] / 1e6:.1f} MB)")
    for name in report.unchanged:
        click.echo(f"unchanged {name}: already on {path}")
    sums = path / "SHA256SUMS"
    click.echo(f"{len(report.exported)} exported, {len(report.unchanged)} unchanged; checksums in {sums}")
