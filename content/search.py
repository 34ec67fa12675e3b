"""Full-text search over ZIM archives with snippets built from the article text.

libzim returns only paths, so snippets are made here: strip the HTML, find the first query term, cut a window.
libzim's Searcher is not thread-safe, so each archive's searcher is used under its own lock.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import asdict, dataclass

from . import searchers

SNIPPET_CHARS = 220
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.S | re.I)
_SPACE = re.compile(r"\s+")
WINDOW_BEFORE, WINDOW_AFTER = 1500, 2500  # raw HTML around the first hit, enough for one snippet


class QueryError(ValueError):
    """The query cannot be searched (empty, too long)."""


@dataclass(frozen=True)
class Hit:
    book: str
    path: str
    title: str
    snippet: str  # HTML-escaped text with <b> around the query terms

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchPage:
    pattern: str
    start: int
    page_length: int
    estimated_total: int
    hits: list[Hit]


def terms_of(pattern: str) -> list[str]:
    return [t for t in re.findall(r"\w+", pattern.lower()) if t]


def plain_text(html_bytes: bytes) -> str:
    text = html_bytes.decode("utf-8", "replace")
    body = re.search(r"<body\b[^>]*>(.*)</body>", text, re.S | re.I)
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", body.group(1) if body else text))).strip()


def text_around_terms(page: bytes, terms: list[str]) -> str:
    """Plain text near the first query term, stripping tags from a small window only: snippets stay
    cheap even for 100 KB articles. ASCII queries are located in the raw bytes (bytes.lower() is C-fast);
    others in the decoded text, so that case folding covers every script."""
    if all(t.isascii() for t in terms):
        hay, needles, cut = page.lower(), [t.encode() for t in terms], page
        lt, gt, body_tag = b"<", b">", b"<body"
    else:
        cut = page.decode("utf-8", "replace")
        hay, needles = cut.lower(), terms
        lt, gt, body_tag = "<", ">", "<body"
    body = hay.find(body_tag)
    start = 0 if body < 0 else body
    best = -1
    for needle in needles:
        pos = start
        while True:
            pos = hay.find(needle, pos)
            if pos < 0:
                break
            if hay.rfind(lt, start, pos) <= hay.rfind(gt, start, pos):  # not inside a tag
                best = pos if best < 0 else min(best, pos)
                break
            pos += len(needle)
    if best < 0:
        window = cut[start : start + WINDOW_AFTER * 3]
    else:
        lo = max(start, best - WINDOW_BEFORE)
        window = cut[lo : best + WINDOW_AFTER]
        if hay.rfind(lt, start, lo) > hay.rfind(gt, start, lo):
            window = window[window.find(gt) + 1 :]  # the window began inside a tag
    if isinstance(window, bytes):
        window = window.decode("utf-8", "replace").strip("\ufffd")  # a character cut at either edge
    window = re.sub(r"<(script|style)\b.*?(</\1\s*>|$)", " ", window, flags=re.S | re.I)
    window = re.sub(r"<[^>]*$", "", window)  # a tag cut off by the window's end
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", window))).strip()


def snippet(text: str, terms: list[str], width: int = SNIPPET_CHARS) -> str:
    lower = text.lower()
    positions = [p for p in (lower.find(t) for t in terms) if p >= 0]
    start = max(0, min(positions) - width // 3) if positions else 0
    window = text[start : start + width]
    if start > 0:
        window = "…" + window.split(" ", 1)[-1]
    if start + width < len(text):
        window = window.rsplit(" ", 1)[0] + "…"
    return _highlighter(tuple(sorted(set(terms), key=len, reverse=True))).sub(r"<b>\1</b>", html.escape(window))


@functools.lru_cache(maxsize=256)
def _highlighter(terms: tuple[str, ...]) -> re.Pattern:
    """One regex for all of a query's terms (longest first), matching each as a word prefix."""
    alternatives = "|".join(re.escape(html.escape(t)) for t in terms)
    return re.compile(rf"(?i)(?<![\w>])((?:{alternatives})\w*)")


def validate(pattern: str) -> str:
    pattern = (pattern or "").strip()
    if not pattern:
        raise QueryError("empty query")
    if len(pattern) > 500:
        raise QueryError("query longer than 500 characters")
    if not terms_of(pattern):
        raise QueryError("query has no words to search for")
    return pattern


def search_books(archives: list[tuple[str, object]], pattern: str, start: int = 0, page_length: int = 25) -> SearchPage:
    """Full-text search over (book name, Archive) pairs.

    An article whose title is exactly the query comes first (libzim's relevance alone often buries it); the
    rest interleaves the books' own relevance rankings so no single book crowds out the others.
    """
    from libzim.search import Query

    from .suggest import exact_title

    pattern = validate(pattern)
    terms = terms_of(pattern)
    wanted = start + page_length
    exact: list[tuple[str, object, str]] = []
    ranked: list[list[tuple[str, object, str]]] = []
    total = 0
    for name, archive in archives:
        path = exact_title(archive, name, pattern)
        if path:
            exact.append((name, archive, path))
        if not archive.has_fulltext_index:
            continue
        with searchers.fulltext(archive) as searcher:
            found = searcher.search(Query().set_query(pattern))
            total += found.getEstimatedMatches()
            ranked.append([(name, archive, p) for p in found.getResults(0, wanted)])
    merged, seen = [], set()
    for row in exact + [hit for group in _interleave(ranked) for hit in group]:
        if (row[0], row[2]) not in seen:
            seen.add((row[0], row[2]))
            merged.append(row)
    total = max(total, len(merged))
    hits = []
    for name, archive, path in merged[start:wanted]:
        try:
            entry = archive.get_entry_by_path(path)
            item = entry.get_item()
            text = text_around_terms(bytes(item.content), terms) if item.mimetype.startswith("text/html") else ""
        except (KeyError, RuntimeError):
            continue
        hits.append(Hit(book=name, path=path, title=entry.title or path, snippet=snippet(text, terms)))
    return SearchPage(pattern=pattern, start=start, page_length=page_length, estimated_total=total, hits=hits)


def _interleave(lists: list[list]) -> list[list]:
    """Round-robin rows: first of each book, then second of each, ..."""
    longest = max((len(x) for x in lists), default=0)
    return [[x[i] for x in lists if i < len(x)] for i in range(longest)]
