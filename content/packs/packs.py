"""Read and validate pack files. A pack file is YAML:

    id: wikipedia-en-top-nopic        # what `almanac content install` takes
    version: 2                        # bumped when the curation changes
    title: Wikipedia (English, top articles, no pictures)
    description: ...
    items:
      - kind: zim                     # resolved in the catalog to the newest release of name + flavour
        name: wikipedia_en_top
        flavour: nopic
      - kind: map                     # extracted on the box (almanac maps add-region)
        country: NO
        maxzoom: 10
        approx_bytes: 300000000
      - kind: model                   # pulled and converted (almanac model pull)
        repo: Qwen/Qwen3-30B-A3B
        bits: 4
        approx_bytes: 17000000000

A dated URL is refused: a pack names books, the catalog says which release is newest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

KINDS = {"zim": {"name"}, "map": set(), "model": {"repo"}}
OPTIONAL = {
    "zim": {"flavour", "title"},
    "map": {"country", "bbox", "maxzoom", "approx_bytes", "title", "source"},
    "model": {"bits", "approx_bytes", "title"},
}
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_DATED = re.compile(r"_\d{4}-\d{2}(\.zim|\.meta4|$)")


class PackError(Exception):
    """A pack file that cannot be used; names the file and the field."""


@dataclass(frozen=True)
class PackItem:
    kind: str
    name: str = ""
    flavour: str = ""
    title: str = ""
    repo: str = ""
    bits: int = 4
    country: str = ""
    bbox: tuple[float, float, float, float] | None = None
    maxzoom: int = 0
    approx_bytes: int = 0
    source: str = ""

    @property
    def label(self) -> str:
        if self.kind == "zim":
            return self.title or (f"{self.name} ({self.flavour})" if self.flavour else self.name)
        if self.kind == "map":
            return self.title or f"map of {self.country or self.bbox} to zoom {self.maxzoom}"
        return self.title or f"model {self.repo} ({self.bits}-bit)"


@dataclass(frozen=True)
class Pack:
    id: str
    version: int
    title: str
    description: str
    items: tuple[PackItem, ...]
    path: str = field(default="", compare=False)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "description": self.description,
            "items": [
                {k: v for k, v in vars(i).items() if v not in ("", 0, None) and (k != "bits" or i.kind == "model")}
                | {"label": i.label}
                for i in self.items
            ],
        }


def parse_pack(text: str, where: str) -> Pack:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PackError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PackError(f"{where}: a pack is a mapping with id, version, title and items")
    unknown = set(data) - {"id", "version", "title", "description", "items"}
    if unknown:
        raise PackError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    pid = data.get("id")
    if not isinstance(pid, str) or not _ID.match(pid):
        raise PackError(f"{where}: id must be lower-case letters, digits and '-' (got {pid!r})")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PackError(f"{where}: version must be a whole number >= 1 (got {version!r})")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise PackError(f"{where}: title is missing")
    items = data.get("items")
    if not isinstance(items, list) or not items:
        raise PackError(f"{where}: items must be a non-empty list")
    return Pack(
        id=pid,
        version=version,
        title=title.strip(),
        description=str(data.get("description") or "").strip(),
        items=tuple(_item(raw, f"{where}: items[{i}]") for i, raw in enumerate(items)),
        path=where,
    )


def _item(raw, where: str) -> PackItem:
    if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
        raise PackError(f"{where}: kind must be one of {', '.join(KINDS)}")
    kind = raw["kind"]
    allowed = KINDS[kind] | OPTIONAL[kind] | {"kind"}
    unknown = set(raw) - allowed
    if unknown:
        raise PackError(f"{where}: unknown key {sorted(unknown)[0]!r} for a {kind} item")
    missing = KINDS[kind] - set(raw)
    if missing:
        raise PackError(f"{where}: a {kind} item needs {sorted(missing)[0]!r}")
    for key in ("name", "flavour", "repo", "country", "title", "source"):
        if key in raw and not isinstance(raw[key], str):
            hint = (
                " (quote it: YAML reads an unquoted NO, YES, ON or OFF as true/false)"
                if isinstance(raw[key], bool)
                else ""
            )
            raise PackError(f"{where}: {key} must be text{hint}")
    for key in ("maxzoom", "approx_bytes", "bits"):
        if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < 0):
            raise PackError(f"{where}: {key} must be a whole number >= 0")
    if kind == "zim" and (_DATED.search(raw["name"]) or "/" in raw["name"]):
        raise PackError(
            f"{where}: name {raw['name']!r} looks like a dated file or URL; give the book's name "
            "(e.g. wikipedia_en_top) and its flavour, and the newest release is found in the catalog"
        )
    if kind == "map" and not (raw.get("country") or raw.get("bbox")):
        raise PackError(f"{where}: a map item needs country or bbox")
    bbox = None
    if "bbox" in raw:
        box = raw["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise PackError(f"{where}: bbox must be [west, south, east, north]")
        bbox = tuple(float(v) for v in box)
    values = {k: v for k, v in raw.items() if k not in ("kind", "bbox")}
    return PackItem(kind=kind, bbox=bbox, **values)


def load_packs(extra_dirs: list[Path] | tuple[Path, ...] = ()) -> dict[str, Pack]:
    """The curated packs shipped with Almanac, then any ``*.yaml`` in ``extra_dirs`` (a later file with the
    same id replaces an earlier one only if its version is higher)."""
    found: dict[str, Pack] = {}
    shipped = resources.files(__package__) / "curated"
    sources = [
        (str(p), p.read_text(encoding="utf-8"))
        for p in sorted(shipped.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".yaml")
    ]
    for folder in extra_dirs:
        folder = Path(folder)
        if folder.is_dir():
            sources += [(str(p), p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.yaml"))]
    for where, text in sources:
        pack = parse_pack(text, where)
        if pack.id not in found or pack.version > found[pack.id].version:
            found[pack.id] = pack
    return found
