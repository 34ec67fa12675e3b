"""Title suggestions (autocomplete) from libzim's title index, exact matches first."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from . import searchers


@dataclass(frozen=True)
class Suggestion:
    book: str
    path: str
    title: str


def fold(text: str) -> str:
    return " ".join(text.casefold().replace("_", " ").split())


def suggest(archive, book: str, term: str, count: int = 10) -> list[Suggestion]:
    """Up to `count` titles starting with or containing `term`; an exact title match comes first."""
    term = term.strip()
    if not term:
        return []
    with searchers.titles(archive) as searcher:
        found = searcher.suggest(term)
        paths = list(found.getResults(0, count * 2))
    out, seen = [], set()
    for path in paths:
        try:
            entry = archive.get_entry_by_path(path)
        except KeyError:
            continue
        key = fold(entry.title or path)
        if key in seen:  # redirects often duplicate a title
            continue
        seen.add(key)
        out.append(Suggestion(book=book, path=path, title=entry.title or path))
    wanted = fold(term)
    out.sort(key=lambda s: fold(s.title) != wanted)  # stable: libzim's order otherwise
    return out[:count]


def exact_title(archive, book: str, pattern: str) -> str | None:
    """Path of the article titled exactly `pattern` (ignoring case and underscores), or None.

    libzim's title lookup is a binary search (microseconds) but case-sensitive, so the usual spellings
    are tried first; archives that flag no front articles have no such listing and go through the
    (slower) suggestion index instead."""
    wanted = fold(pattern)
    if archive.article_count > 0:
        text = " ".join(pattern.split())
        for variant in dict.fromkeys(
            (text, text[:1].upper() + text[1:], text.title(), text.lower(), text.replace(" ", "_"))
        ):
            try:
                entry = archive.get_entry_by_title(variant)
            except KeyError:
                continue
            if fold(entry.title) == wanted:
                return entry.path
        return None
    return next((s.path for s in suggest(archive, book, pattern, count=3) if fold(s.title) == wanted), None)


def highlight(title: str, term: str) -> str:
    """HTML-escaped title with the typed words in <b>, as Kiwix's suggestion labels do."""
    escaped = html.escape(title)
    for word in sorted(set(re.findall(r"\w+", term)), key=len, reverse=True):
        escaped = re.sub(rf"(?i)(?<![\w>])({re.escape(html.escape(word))})", r"<b>\1</b>", escaped)
    return escaped
