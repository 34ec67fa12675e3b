"""The console's Library: the books (size, date, language, articles, update available), remove and update
one, add from the catalog (search, language and category filters), the packs with their fits-on-disk plan
and their install, and a drive's import or export."""

from __future__ import annotations

from flask import abort, request

from content.acquire import AcquireError, download, install_plan
from content.catalog import CatalogError
from content.library import LibraryError
from content.packs import PackError
from content.updates import find_updates, start_update

from ...fill import FillError, map_item_name, remove_book
from ...models import default_name
from .. import worker_state
from ..args import int_arg
from ..render import page
from .common import box, catalog, done, form, start_task


def library():
    """GET /admin/library: every book, with the update the catalog has for it (when a catalog is set)."""
    s = worker_state.get()
    s.library.scan()
    updates, note = {}, ""
    try:
        b = box()
        updates = {u.book: u.to_json() for u in find_updates(s.library, b.provenance, b.catalog())}
    except FillError as e:
        note = str(e)
    except CatalogError as e:
        note = f"updates unknown: {e}"
    books = [
        {
            "name": book.name,
            "title": book.title,
            "language": book.language,
            "date": book.date,
            "size": book.size,
            "article_count": book.article_count,
            "path": book.path,
            "new_release": updates.get(book.name),
        }
        for book in s.library.list()
    ]
    return page(
        "console/library.html",
        {
            "books": books,
            "updates_note": note,
            "rejected": s.library.rejected(),
            "notice": request.args.get("notice", ""),
        },
    )


def remove(name: str):
    """POST /admin/library/NAME/remove."""
    try:
        path, deleted = remove_book(worker_state.get().library, name)
    except LibraryError as e:
        abort(404, str(e))
    message = f"removed {name} and deleted {path}" if deleted else f"removed {name} (file kept at {path})"
    return done(message, "/admin/library", name=name, path=str(path), deleted=deleted)


def update(name: str):
    """POST /admin/library/NAME/update: its newest release as a download job, moved over it once verified."""
    b = box()
    try:
        job = start_update(b.library, b.provenance, catalog(), b.downloader, name)
    except AcquireError as e:
        abort(400, str(e))
    except CatalogError as e:
        abort(502, str(e))
    return done(f"queued job {job.id}: update of {job.name}", "/admin/jobs", job=job.to_json())


def catalog_page():
    """GET /admin/catalog?q=&lang=&category=&start=: the Kiwix catalog, offline from its cached copy."""
    q, lang, category = (request.args.get(k, "").strip() for k in ("q", "lang", "category"))
    count, start = int_arg("count", 20, 1, 200), int_arg("start", 0, 0, 1 << 30)
    b, error, result = box(), "", None
    try:
        result = b.catalog().entries(q=q, lang=lang, category=category, count=count, start=start).to_json()
    except FillError as e:
        error = str(e)
    except CatalogError as e:
        error = str(e)
    installed = b.installed()
    if result:
        for e in result["entries"]:
            e["installed_date"] = installed.get(e["stable_name"], "")
    data = {"q": q, "lang": lang, "category": category, "count": count, "start": start, "error": error}
    data["catalog"] = result
    data["notice"] = request.args.get("notice", "")
    return page("console/catalog.html", data)


def download_book():
    """POST /admin/library/download (name_or_url[, sha256]): one book (or a URL) queued as a download job."""
    b, what = box(), form("name_or_url")
    is_url = what.startswith(("http://", "https://"))
    try:
        job = download(b.downloader, None if is_url else catalog(), what, sha256=form("sha256", required=False) or None)
    except AcquireError as e:
        abort(400, str(e))
    return done(f"queued job {job.id}: {job.kind} {job.name}", "/admin/jobs", job=job.to_json())


def packs():
    """GET /admin/packs: every pack (shipped and the data dir's own), planned against the catalog and the disk."""
    b = box()
    try:
        found = b.packs()
    except PackError as e:
        abort(500, str(e))
    plans, error = [], ""
    try:
        plans = [b.plan(p).to_json() for p in found.values()]
    except (FillError, CatalogError) as e:
        error = str(e)
    data = {
        "packs": [p.to_json() for p in found.values()],
        "plans": plans,
        "error": error,
        "notice": request.args.get("notice", ""),
    }
    return page("console/packs.html", data)


def install_pack(pack_id: str):
    """POST /admin/packs/ID/install: the plan first (refused if it does not fit), then its books queued as
    download jobs, its map regions and models started as tasks (a map needs a planet source)."""
    b = box()
    try:
        pack = b.packs().get(pack_id)
    except PackError as e:
        abort(500, str(e))
    if pack is None:
        abort(404, f"no pack {pack_id!r}")
    catalog()
    try:
        plan = b.plan(pack)
        jobs = install_plan(b.downloader, plan)
    except (AcquireError, CatalogError) as e:
        abort(400, str(e))
    source = form("map_source", required=False) or str(worker_state.get().config.get("maps.planet_source")).strip()
    items = []
    for planned in plan.items:
        item = planned.item
        if item.kind == "zim" or planned.status == "installed":
            continue
        if item.kind == "map":
            name = map_item_name(item)
            where = item.source or source
            if (b.data.maps / f"{name}.pmtiles").is_file():
                continue
            if not where:
                items.append(
                    {
                        "label": item.label,
                        "status": "not started",
                        "detail": "no planet map source (maps.planet_source)",
                    }
                )
                continue
            argv = ["maps", "add-region", "--maxzoom", str(item.maxzoom), "--source", where, "--name", name]
            argv += ["--country", item.country] if item.country else ["--bbox", ",".join(str(v) for v in item.bbox)]
            task = start_task("map-region", f"map {name} for pack {pack.id}", argv)
        else:
            name = default_name(item.repo, item.bits)
            if (b.data.models / name).exists():
                continue
            argv = ["model", "pull", item.repo, "--bits", str(item.bits), "--name", name, "--quiet"]
            task = start_task("model-pull", f"model {name} for pack {pack.id}", argv)
        items.append({"label": item.label, "status": "started", "task": task.id})
    message = f"pack {pack.id}: {len(jobs)} download(s) queued" + (
        f", {sum(i['status'] == 'started' for i in items)} task(s) started" if items else ""
    )
    return done(message, "/admin/jobs", plan=plan.to_json(), jobs=[j.to_json() for j in jobs], items=items)


def import_drive():
    """POST /admin/library/import (path): `almanac content import PATH` as a task."""
    path = form("path")
    task = start_task("import", f"import from {path}", ["content", "import", path, "--json"])
    return done(f"task {task.id}: import from {path}", "/admin/jobs", task=task.to_json())


def export_drive():
    """POST /admin/library/export (path[, maps=1]): `almanac content export PATH` as a task."""
    path = form("path")
    argv = ["content", "export", path, "--json"] + (["--maps"] if request.form.get("maps") else [])
    task = start_task("export", f"export to {path}", argv)
    return done(f"task {task.id}: export to {path}", "/admin/jobs", task=task.to_json())
