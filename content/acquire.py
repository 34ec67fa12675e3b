"""From what a user asks for to download jobs: a catalog book (its stable name, ``name``, or
``name:flavour``), a URL (``.zim``, ``.zim.meta4``, a map archive), or a whole pack's plan.

Each ``almanac content download / install`` is one of these calls followed by ``Downloader.run()``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .catalog import Catalog, CatalogError, Entry
from .catalog.opds import _undated_stem, safe_name
from .downloads import Downloader, DownloadError, Job
from .packs import Plan

MAP_SUFFIXES = (".pmtiles", ".mbtiles")


class AcquireError(Exception):
    """A request that names nothing downloadable; one line."""


def find_entry(catalog: Catalog, name: str) -> Entry:
    """The newest release of a book named ``name`` (``wikipedia_en_top_nopic``, ``wikipedia_en_top``,
    or ``wikipedia_en_top:nopic``)."""
    if ":" in name:
        base, flavour = name.split(":", 1)
        candidates = [(base, flavour)]
    else:
        candidates = [(name, "")]
        head, sep, tail = name.rpartition("_")
        if sep:
            candidates.append((head, tail))  # the stable name: name_flavour
    try:
        for base, flavour in candidates:
            entry = catalog.newest(base, flavour)
            if entry is not None:
                return entry
    except CatalogError as e:
        raise AcquireError(str(e)) from None
    raise AcquireError(f"the catalog {catalog.url} has no book named {name!r}")


def download_entry(downloader: Downloader, entry: Entry, *, replaces: str = "") -> Job:
    meta = {"catalog_name": entry.name, "flavour": entry.flavour, "date": entry.date, "title": entry.title}
    if replaces:
        meta["replaces"] = replaces
    try:
        return downloader.add(entry.url, kind="zim", name=entry.stable_name, meta=meta)
    except DownloadError as e:
        raise AcquireError(str(e)) from None


def download(downloader: Downloader, catalog: Catalog | None, name_or_url: str, *, sha256: str | None = None) -> Job:
    """``almanac content download NAME_OR_URL``: queue it and return the job."""
    if name_or_url.startswith(("http://", "https://")):
        path = urlsplit(name_or_url).path
        file_name = path.rsplit("/", 1)[-1]
        if file_name.endswith(".meta4"):
            file_name = file_name[: -len(".meta4")]
        if file_name.endswith(MAP_SUFFIXES):
            kind, name = "map", safe_name(file_name)
        elif file_name.endswith(".zim"):
            kind, name = "zim", safe_name(_undated_stem(file_name))
        else:
            raise AcquireError(f"{name_or_url}: not a .zim, .zim.meta4, .pmtiles or .mbtiles URL")
        try:
            return downloader.add(name_or_url, kind=kind, name=name, sha256=sha256)
        except DownloadError as e:
            raise AcquireError(str(e)) from None
    if catalog is None:
        raise AcquireError(f"{name_or_url!r} is not a URL, and no catalog is configured to look it up")
    return download_entry(downloader, find_entry(catalog, name_or_url))


def install_plan(downloader: Downloader, plan: Plan) -> list[Job]:
    """``almanac content install PACK``: queue every book of a plan that fits; maps and models are left to
    their own commands (they are built on the box, not fetched as one file)."""
    if not plan.fits:
        raise AcquireError(f"pack {plan.pack.id}: {plan.verdict}")
    if plan.missing:
        raise AcquireError(f"pack {plan.pack.id}: {plan.missing[0].item.label}: {plan.missing[0].note}")
    jobs = []
    for item in plan.items:
        if item.item.kind == "zim" and item.status in ("download", "update"):
            jobs.append(
                download_entry(
                    downloader, item.entry, replaces=item.entry.stable_name if item.status == "update" else ""
                )
            )
    return jobs
