"""Parse the Atom/OPDS feeds of a Kiwix catalog (``/catalog/v2/entries``, ``languages``, ``categories``).

Pure functions from bytes to dataclasses; links are made absolute against the URL the feed came from.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from urllib.parse import urljoin

ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/terms/}"
THR = "{http://purl.org/syndication/thread/1.0}"
ACQUISITION = "http://opds-spec.org/acquisition/open-access"
THUMBNAIL = "http://opds-spec.org/image/thumbnail"


class FeedError(Exception):
    """A feed that is not the OPDS the catalog should serve; one line."""


@dataclass(frozen=True)
class Entry:
    """One book of the catalog. ``date`` is its YYYY-MM-DD; ``size`` is what the catalog claims (Kiwix
    rounds it to KiB: the download's own metalink or Content-Length is the real one)."""

    id: str
    name: str
    flavour: str
    title: str
    summary: str
    language: str
    category: str
    tags: str
    date: str
    article_count: int
    media_count: int
    size: int
    author: str
    publisher: str
    url: str  # acquisition link: a .zim.meta4 or a .zim
    url_type: str
    illustration_url: str
    html_url: str

    @property
    def stable_name(self) -> str:
        """The book's name in the library, the same for every dated release: ``name_flavour``."""
        base = self.name or _undated_stem(self.url)
        return safe_name(f"{base}_{self.flavour}" if self.flavour else base)

    def to_json(self) -> dict:
        return {**asdict(self), "stable_name": self.stable_name}


@dataclass(frozen=True)
class Language:
    code: str
    title: str
    count: int


@dataclass(frozen=True)
class Category:
    name: str
    count: int


def safe_name(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._")
    return out or "book"


def _undated_stem(url: str) -> str:
    stem = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".meta4", ".zim"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    head, _, tail = stem.rpartition("_")
    if head and len(tail) in (7, 10) and tail[:4].isdigit() and tail[4] == "-":
        return head  # wikipedia_en_top_nopic_2024-06 -> wikipedia_en_top_nopic
    return stem


_BARE_AMPERSAND = re.compile(rb"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);)")


def _root(body: bytes) -> ET.Element:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        # kiwix-serve 3.3 writes the self link's query string with bare '&': escape those and retry.
        try:
            root = ET.fromstring(_BARE_AMPERSAND.sub(b"&amp;", body))
        except ET.ParseError as e:
            raise FeedError(f"not an XML feed ({e})") from None
    if root.tag != f"{ATOM}feed":
        raise FeedError(f"not an Atom feed (root element {root.tag!r})")
    return root


def _text(element: ET.Element, tag: str) -> str:
    found = element.find(tag)
    return (found.text or "").strip() if found is not None else ""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def parse_entries(body: bytes, base_url: str) -> tuple[list[Entry], int, int]:
    """(entries, totalResults, startIndex) of an acquisition feed."""
    root = _root(body)
    entries = [_entry(e, base_url) for e in root.findall(f"{ATOM}entry")]
    total = _int(_text(root, f"{ATOM}totalResults")) if root.find(f"{ATOM}totalResults") is not None else len(entries)
    return entries, total, _int(_text(root, f"{ATOM}startIndex"))


def _entry(e: ET.Element, base_url: str) -> Entry:
    url = url_type = illustration = html = ""
    size = 0
    for link in e.findall(f"{ATOM}link"):
        rel, href, kind = link.get("rel", ""), link.get("href", ""), link.get("type", "")
        if rel == ACQUISITION and not url:
            url, url_type, size = urljoin(base_url, href), kind, _int(link.get("length", "0"))
        elif rel == THUMBNAIL and not illustration:
            illustration = urljoin(base_url, href)
        elif not rel and kind == "text/html":
            html = urljoin(base_url, href)
    author = e.find(f"{ATOM}author")
    publisher = e.find(f"{ATOM}publisher")
    raw_id = _text(e, f"{ATOM}id")
    return Entry(
        id=raw_id[len("urn:uuid:") :] if raw_id.startswith("urn:uuid:") else raw_id,
        name=_text(e, f"{ATOM}name"),
        flavour=_text(e, f"{ATOM}flavour"),
        title=_text(e, f"{ATOM}title"),
        summary=_text(e, f"{ATOM}summary"),
        language=_text(e, f"{ATOM}language"),
        category=_text(e, f"{ATOM}category"),
        tags=_text(e, f"{ATOM}tags"),
        date=(_text(e, f"{DC}issued") or _text(e, f"{ATOM}updated"))[:10],
        article_count=_int(_text(e, f"{ATOM}articleCount")),
        media_count=_int(_text(e, f"{ATOM}mediaCount")),
        size=size,
        author=_text(author, f"{ATOM}name") if author is not None else "",
        publisher=_text(publisher, f"{ATOM}name") if publisher is not None else "",
        url=url,
        url_type=url_type,
        illustration_url=illustration,
        html_url=html,
    )


def parse_languages(body: bytes) -> list[Language]:
    return [
        Language(code=_text(e, f"{DC}language"), title=_text(e, f"{ATOM}title"), count=_int(_text(e, f"{THR}count")))
        for e in _root(body).findall(f"{ATOM}entry")
    ]


def parse_categories(body: bytes) -> list[Category]:
    out = []
    for e in _root(body).findall(f"{ATOM}entry"):
        count = _text(e, f"{THR}count")
        out.append(Category(name=_text(e, f"{ATOM}title"), count=_int(count) if count else 0))
    return out
