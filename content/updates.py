"""Updates of installed books: a newer dated release of the same name and flavour in the catalog is
offered; taking it downloads the new file beside the old one (``archives/.partial/``), verifies it and
moves it over the old path in one ``os.replace``. The book keeps its name, so ``/content/<book>/...``
links survive; until the move the old file serves, and a failed update leaves it as it was."""

from __future__ import annotations

from dataclasses import dataclass

from .acquire import AcquireError
from .catalog import Catalog, Entry
from .downloads import Downloader, Job, Provenance
from .library import Library
from .zim_probe import ProbeError, probe


@dataclass
class Update:
    book: str  # the stable name in the library
    catalog_name: str
    flavour: str
    installed_date: str
    entry: Entry  # the newer release

    def to_json(self) -> dict:
        return {
            "book": self.book,
            "catalog_name": self.catalog_name,
            "flavour": self.flavour,
            "installed_date": self.installed_date,
            "new_date": self.entry.date,
            "size": self.entry.size,
            "url": self.entry.url,
        }


def identity(library: Library, provenance: Provenance, name: str) -> tuple[str, str, str] | None:
    """(catalog name, flavour, date) of an installed book: as recorded when it was downloaded, else read
    from the ZIM's own metadata (a book added by hand or imported)."""
    book = library.get(name)
    if book is None:
        return None
    record = provenance.get("zim", name)
    if record and record.catalog_name and record.path == book.path:
        return record.catalog_name, record.flavour, book.date or record.date
    try:
        info = probe(book.path)
    except ProbeError:
        return None
    return (info["name"], info["flavour"], info["date"]) if info["name"] else None


def find_updates(library: Library, provenance: Provenance, catalog: Catalog) -> list[Update]:
    """``almanac content updates``: every installed book with a newer release in the catalog."""
    out = []
    for book in library.list():
        ident = identity(library, provenance, book.name)
        if ident is None:
            continue
        name, flavour, date = ident
        newest = catalog.newest(name, flavour)
        if newest is not None and newest.date > (date or ""):
            out.append(Update(book.name, name, flavour, date, newest))
    return out


def start_update(library: Library, provenance: Provenance, catalog: Catalog, downloader: Downloader, name: str) -> Job:
    """``almanac content update NAME``: queue the newer release to replace book ``name`` in place."""
    ident = identity(library, provenance, name)
    if ident is None:
        raise AcquireError(f"no installed book named {name!r} with a catalog name to look up")
    catalog_name, flavour, date = ident
    entry = catalog.newest(catalog_name, flavour)
    if entry is None or entry.date <= (date or ""):
        raise AcquireError(f"{name} is up to date ({date})")
    # The new release goes to the book's current name, whatever the catalog's stable name is.
    meta = {
        "catalog_name": catalog_name,
        "flavour": flavour,
        "date": entry.date,
        "replaces": name,
        "title": entry.title,
    }
    try:
        return downloader.add(entry.url, kind="zim", name=name, meta=meta)
    except Exception as e:
        raise AcquireError(str(e)) from None


__all__ = ["Update", "find_updates", "identity", "start_update"]
