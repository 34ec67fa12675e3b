"""Search view (Kiwix-compatible URL: /search?pattern=Q&content=BOOK&books.name=B&start=&pageLength=)."""
from __future__ import annotations

import html

from flask import abort, jsonify, request

from content.search import QueryError, search_books

from . import services
from .render import page, wants_json

MAX_PAGE_LENGTH = 100


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(400, description=f"{name} must be a whole number")
    return max(low, min(high, value))


def search():
    s = services.get()
    pattern = request.args.get("pattern", request.args.get("q", ""))
    wanted = request.args.getlist("books.name") + request.args.getlist("content")
    start = _int_arg("start", 0, 0, 10_000)
    page_length = _int_arg("pageLength", 25, 1, MAX_PAGE_LENGTH)
    books = [b for b in s.library.list() if not wanted or b.name in wanted]
    if wanted and not books:
        abort(404, description="None of the requested books is in this library.")
    if not pattern.strip():
        return page("search.html", {"pattern": "", "hits": [], "estimated_total": 0, "start": 0,
                                    "page_length": page_length, "books": [b.name for b in books]})
    archives = [(b.name, a) for b in books if (a := s.library.archive(b.name)) is not None]
    try:
        result = search_books(archives, pattern, start, page_length)
    except QueryError as e:
        abort(400, description=str(e))
    hits = [{"book": h.book, "path": h.path, "title": h.title, "snippet": h.snippet} for h in result.hits]
    if wants_json():
        return jsonify([{"book": h["book"], "path": h["path"], "title": h["title"], "snippet": h["snippet"]}
                        for h in hits])
    return page("search.html", {"pattern": result.pattern, "hits": hits, "estimated_total": result.estimated_total,
                                "start": start, "page_length": page_length, "books": [b.name for b in books],
                                "chosen": [b.name for b in books] if wanted else []})


def suggest():
    """Kiwix's /suggest?content=BOOK&term=T&count=N: [{"value","label","kind","path"}], then a full-text row."""
    from content.suggest import highlight
    from content.suggest import suggest as title_suggestions

    s = services.get()
    book_name = request.args.get("content") or request.args.get("books.name")
    term = request.args.get("term", "")
    count = _int_arg("count", 10, 1, 50)
    book = s.library.get(book_name) if book_name else None
    if book is None:
        abort(404, description="Unknown or missing book (content=...).")
    archive = s.library.archive(book.name)
    if archive is None:
        abort(404, description=f"{book.name} cannot be read right now.")
    if len(term) > 500:
        abort(400, description="term longer than 500 characters")
    rows = [{"value": x.title, "label": highlight(x.title, term), "kind": "path", "path": x.path}
            for x in title_suggestions(archive, book.name, term, count)]
    if term.strip() and book.has_fulltext_index:
        rows.append({"value": f"{term} ", "label": f"containing &apos;{html.escape(term, quote=False)}&apos;...",
                     "kind": "pattern"})
    return jsonify(rows)
