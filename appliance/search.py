"""Search view (Kiwix-compatible URL: /search?pattern=Q&content=BOOK&books.name=B&start=&pageLength=)."""
from __future__ import annotations

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
    hits = [h.to_json() for h in result.hits]
    if wants_json():
        return jsonify([{"book": h["book"], "path": h["path"], "title": h["title"], "snippet": h["snippet"]}
                        for h in hits])
    return page("search.html", {"pattern": result.pattern, "hits": hits, "estimated_total": result.estimated_total,
                                "start": start, "page_length": page_length, "books": [b.name for b in books]})
