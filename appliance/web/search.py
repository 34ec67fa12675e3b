"""Search view (Kiwix-compatible URL: /search?pattern=Q&content=BOOK&books.name=B&start=&pageLength=)."""

from __future__ import annotations

import html

from flask import abort, jsonify, request

from content.search import QueryError, search_books
from content.suggest import highlight
from content.suggest import suggest as title_suggestions

from . import worker_state
from .args import int_arg
from .render import page, wants_json

MAX_PAGE_LENGTH = 100


def requested_books() -> list[str]:
    """The books a request names: ?books.name= and ?content=, each repeatable (Kiwix spells it both ways)."""
    return request.args.getlist("books.name") + request.args.getlist("content")


def search():
    """The HTML page of hits; its JSON twin is always the list of hits ({book, path, title, snippet})."""
    s = worker_state.get()
    pattern = request.args.get("pattern", request.args.get("q", ""))
    start = int_arg("start", 0, 0, 10_000)
    page_length = int_arg("pageLength", 25, 1, MAX_PAGE_LENGTH)
    chosen = s.library.select(requested_books())
    if chosen.unknown:
        abort(404, description="None of the requested books is in this library.")
    names = [b.name for b in chosen.books]
    if not pattern.strip():
        if wants_json():
            return jsonify([])
        return page(
            "search.html",
            {"pattern": "", "hits": [], "estimated_total": 0, "start": 0, "page_length": page_length, "books": names},
        )
    try:
        result = search_books(chosen.archives, pattern, start, page_length)
    except QueryError as e:
        abort(400, description=str(e))
    hits = [h.to_json() for h in result.hits]
    if wants_json():
        return jsonify(hits)
    return page(
        "search.html",
        {
            "pattern": result.pattern,
            "hits": hits,
            "estimated_total": result.estimated_total,
            "start": start,
            "page_length": page_length,
            "books": names,
            "chosen": names if chosen.named else [],
        },
    )


def suggest():
    """Kiwix's /suggest?content=BOOK&term=T&count=N: [{"value","label","kind","path"}], then a full-text row."""
    s = worker_state.get()
    book_name = request.args.get("content") or request.args.get("books.name")
    term = request.args.get("term", "")
    count = int_arg("count", 10, 1, 50)
    book = s.library.get(book_name) if book_name else None
    if book is None:
        abort(404, description="Unknown or missing book (content=...).")
    archive = s.library.archive(book.name)
    if archive is None:
        abort(404, description=f"{book.name} cannot be read right now.")
    if len(term) > 500:
        abort(400, description="term longer than 500 characters")
    rows = [
        {"value": x.title, "label": highlight(x.title, term), "kind": "path", "path": x.path}
        for x in title_suggestions(archive, book.name, term, count)
    ]
    if term.strip() and book.has_fulltext_index:
        rows.append(
            {
                "value": f"{term} ",
                "label": f"containing &apos;{html.escape(term, quote=False)}&apos;...",
                "kind": "pattern",
            }
        )
    return jsonify(rows)
