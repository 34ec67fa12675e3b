"""A pack's plan: each item resolved (a book to its newest catalog release), its size, whether it is
installed already, and the total against the free disk: "fits" or "does not fit: 12.0 GB short"."""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog import Catalog, CatalogError, Entry
from ..downloads.downloader import human_bytes
from .packs import Pack, PackItem


@dataclass
class PlanItem:
    item: PackItem
    entry: Entry | None  # the catalog release, for a book
    size: int  # bytes to fetch (0: nothing to do)
    status: str  # "download", "installed", "update", "not in catalog", "estimate"
    note: str = ""

    def to_json(self) -> dict:
        return {
            "kind": self.item.kind,
            "label": self.item.label,
            "size": self.size,
            "status": self.status,
            "note": self.note,
            "entry": self.entry.to_json() if self.entry else None,
        }


@dataclass
class Plan:
    pack: Pack
    items: list[PlanItem]
    free_bytes: int
    reserve_bytes: int

    @property
    def total_bytes(self) -> int:
        return sum(i.size for i in self.items)

    @property
    def short_bytes(self) -> int:
        return max(0, self.total_bytes + self.reserve_bytes - self.free_bytes)

    @property
    def fits(self) -> bool:
        return self.short_bytes == 0

    @property
    def verdict(self) -> str:
        return "fits" if self.fits else f"does not fit: {human_bytes(self.short_bytes)} short"

    @property
    def missing(self) -> list[PlanItem]:
        return [i for i in self.items if i.status == "not in catalog"]

    def to_json(self) -> dict:
        return {
            "pack": self.pack.to_json(),
            "items": [i.to_json() for i in self.items],
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "fits": self.fits,
            "verdict": self.verdict,
            "short_bytes": self.short_bytes,
        }


def plan_pack(
    pack: Pack, catalog: Catalog, *, free_bytes: int, installed: dict[str, str] | None = None, reserve_bytes: int = 0
) -> Plan:
    """``installed`` maps a book's stable name to the date of the release on the box."""
    installed = installed or {}
    items = []
    for item in pack.items:
        if item.kind != "zim":
            items.append(
                PlanItem(
                    item,
                    None,
                    item.approx_bytes,
                    "estimate",
                    "size estimated by the pack" if item.approx_bytes else "size unknown",
                )
            )
            continue
        try:
            entry = catalog.newest(item.name, item.flavour)
        except CatalogError as e:
            items.append(PlanItem(item, None, 0, "not in catalog", str(e)))
            continue
        if entry is None:
            items.append(
                PlanItem(
                    item, None, 0, "not in catalog", f"the catalog has no {item.name!r} with flavour {item.flavour!r}"
                )
            )
            continue
        have = installed.get(entry.stable_name)
        if have is not None and have >= entry.date:
            items.append(PlanItem(item, entry, 0, "installed", f"release {have} is on the box"))
        else:
            items.append(
                PlanItem(
                    item,
                    entry,
                    entry.size,
                    "update" if have else "download",
                    f"{have} -> {entry.date}" if have else entry.date,
                )
            )
    return Plan(pack, items, free_bytes, reserve_bytes)
