"""Title suggestions (autocomplete) from libzim's title index, exact matches first."""
from __future__ import annotations

import html
import re
import threading
from dataclasses import dataclass

_locks: dict[str, threading.Lock] = {}
_searchers: dict[tuple[str, str], object] = {}
_guard = threading.Lock()


@dataclass(frozen=True)
class Suggestion:
    book: str
    path: str
    title: str


def _lock(uuid: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(uuid, threading.Lock())


def _searcher(archive):
    from libzim.suggestion import SuggestionSearcher

    key = (str(archive.uuid), archive.filename)
    with _guard:
        found = _searchers.get(key)
        if found is None:
            found = _searchers[key] = SuggestionSearcher(archive)
        return found


def fold(text: str) -> str:
    return " ".join(text.casefold().replace("_", " ").split())


def suggest(archive, book: str, term: str, count: int = 10) -> list[Suggestion]:
    """Up to `count` titles starting with or containing `term`; an exact title match comes first."""
    term = term.strip()
    if not term:
        return []
    with _lock(str(archive.uuid)):
        found = _searcher(archive).suggest(term)
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


def highlight(title: str, term: str) -> str:
    """HTML-escaped title with the typed words in <b>, as Kiwix's suggestion labels do."""
    escaped = html.escape(title)
    for word in sorted(set(re.findall(r"\w+", term)), key=len, reverse=True):
        escaped = re.sub(rf"(?i)(?<![\w>])({re.escape(html.escape(word))})", r"<b>\1</b>", escaped)
    return escaped
