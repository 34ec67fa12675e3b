"""Filling the box: the library, the downloader, provenance and the Kiwix catalog of one data dir, opened the
one way the CLI and the service open them, and a pack's install from its plan — books through the
downloader, a map region extracted on the box, a model pulled and converted (``appliance.models``).

    box = open_box(config, data, on_progress=TqdmProgress())
    plan = box.plan(pack)
    report = install_pack(box, plan, map_source="/mnt/usb/planet.pmtiles")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from content.catalog import Catalog, CatalogError
from content.downloads import Downloader, Provenance, disk_free, open_downloader
from content.library import Library
from content.packs import Plan, load_packs, plan_pack

from .config import Config
from .datadir import DataDir

NO_CATALOG = (
    "no catalog is set: point library.catalog_url at a kiwix-serve on your LAN or a mirror, "
    "e.g. `almanac config set library.catalog_url http://192.168.1.20:8080`"
)


class FillError(Exception):
    """A request the box cannot carry out; one line."""


@dataclass
class Box:
    config: Config
    data: DataDir
    library: Library
    downloader: Downloader
    provenance: Provenance
    _catalog: Catalog | None = field(default=None, repr=False)

    @property
    def packs_dir(self) -> Path:
        """Your own pack files (``*.yaml``) beside the shipped ones; a higher version of a shipped id wins."""
        return self.data.root / "packs"

    def catalog(self) -> Catalog:
        if self._catalog is None:
            url = str(self.config.get("library.catalog_url")).strip()
            if not url:
                raise FillError(NO_CATALOG)
            try:
                self._catalog = Catalog(url, self.data.db)
            except CatalogError as e:
                raise FillError(f"library.catalog_url: {e}") from None
        return self._catalog

    def packs(self) -> dict:
        return load_packs([self.packs_dir])

    def installed(self) -> dict[str, str]:
        return {b.name: b.date for b in self.library.list()}

    def plan(self, pack) -> Plan:
        return plan_pack(pack, self.catalog(), free_bytes=disk_free(self.data.root), installed=self.installed())

    def close(self) -> None:
        self.downloader.close()
        self.provenance.close()
        if self._catalog is not None:
            self._catalog.close()
        self.library.close()


def remove_book(library: Library, name: str) -> tuple[Path, bool]:
    """Take book ``name`` out of the library; its file is deleted only if it lives in the data dir's archives
    folder (else the next scan would register it again). (its path, deleted?). LibraryError if unknown."""
    book = library.remove(name)
    path = Path(book.path)
    if path.parent.resolve() == library.archives_dir.resolve():
        path.unlink(missing_ok=True)
        return path, True
    return path, False


def open_box(config: Config, data: DataDir, **downloader_options) -> Box:
    library = Library(data.db, data.archives)
    downloader, provenance = open_downloader(data.root, library, **downloader_options)
    return Box(config, data, library, downloader, provenance)


# -- a pack's maps and models ---------------------------------------------------------------------------
@dataclass
class ItemResult:
    kind: str
    label: str
    status: str  # "installed" (already there), "done", "failed", "not installed"
    detail: str = ""

    def to_json(self) -> dict:
        return {"kind": self.kind, "label": self.label, "status": self.status, "detail": self.detail}

    def line(self) -> str:
        return f"{self.kind:5}  {self.label}: {self.status}" + (f": {self.detail}" if self.detail else "")


def map_item_name(item) -> str:
    if item.country:
        return f"region-{item.country.lower()}"
    return "region-" + "_".join(f"{v:.2f}" for v in item.bbox).replace("-", "m")


def install_map_item(box: Box, item, source: str | None, log: Callable[[str], None]) -> ItemResult:
    """A pack's map region, cut on the box out of a planet-scale PMTiles archive (the pack's ``source``, else
    ``source`` given here) with resumable range reads; the result is served like any map."""
    from content.maps import region

    name = map_item_name(item)
    out = box.data.maps / f"{name}.pmtiles"
    if out.is_file():
        return ItemResult("map", item.label, "installed", str(out))
    where = item.source or source
    if not where:
        return ItemResult(
            "map",
            item.label,
            "not installed",
            "no planet map source: give --map-source FILE_OR_URL (a planet-scale .pmtiles on a drive or the LAN), "
            f"or run `almanac maps add-region --country {item.country or '..'} --maxzoom {item.maxzoom} --source ...`",
        )
    try:
        bbox = item.bbox or region.country_bbox(item.country)
        region.extract(region.Source(where), out, bbox, item.maxzoom, log=lambda m: log(f"{name}: {m}"))
    except region.RegionError as e:
        return ItemResult("map", item.label, "failed", str(e))
    return ItemResult("map", item.label, "done", str(out))


def install_model_item(box: Box, item, log: Callable[[str], None], *, progress: bool = True) -> ItemResult:
    from . import models

    name = models.default_name(item.repo, item.bits)
    dest = box.data.models / name
    if dest.exists():
        return ItemResult("model", item.label, "installed", str(dest))
    try:
        path = models.pull(item.repo, box.data.models, bits=item.bits, name=name, progress=progress, log=log)
    except models.ModelError as e:
        return ItemResult("model", item.label, "failed", str(e))
    return ItemResult("model", item.label, "done", str(path))


def install_pack(
    box: Box,
    plan: Plan,
    *,
    map_source: str | None = None,
    log: Callable[[str], None] = lambda m: None,
    progress: bool = True,
) -> list[ItemResult]:
    """Every item of a plan that fits: the books queued and downloaded (verified, moved in), then each map
    region extracted and each model pulled. Returns one result per item, in the pack's order."""
    from content.acquire import AcquireError, install_plan

    try:
        jobs = install_plan(box.downloader, plan)
    except AcquireError as e:
        raise FillError(str(e)) from None
    ran = {j.id: j for j in box.downloader.run()} if jobs else {}
    by_name = {j.name: ran.get(j.id, j) for j in jobs}
    results = []
    for planned in plan.items:
        item = planned.item
        if item.kind == "zim":
            if planned.status == "installed":
                results.append(ItemResult("zim", item.label, "installed", planned.note))
                continue
            job = by_name.get(planned.entry.stable_name)
            if job is None:
                results.append(ItemResult("zim", item.label, "failed", "no job was queued"))
            elif job.state == "done":
                results.append(ItemResult("zim", item.label, "done", f"{job.name} ({planned.entry.date})"))
            else:
                results.append(ItemResult("zim", item.label, job.state, job.error or f"job {job.id}"))
        elif item.kind == "map":
            results.append(install_map_item(box, item, map_source, log))
        else:
            results.append(install_model_item(box, item, log, progress=progress))
    return results
