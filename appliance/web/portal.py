"""Portal pages: home, library list, health."""
from __future__ import annotations

from flask import abort, jsonify, request

from . import services
from .http_cache import make_etag, send_bytes
from .render import page


def _book_card(book) -> dict:
    return {
        "name": book.name, "title": book.title, "description": book.description, "language": book.language,
        "article_count": book.article_count, "size": book.size, "date": book.date,
        "url": f"/book/{book.name}", "read_url": f"/viewer#{book.name}/", "illustration": f"/catalog/illustration/{book.name}"
        if book.illustration_48 else None,
    }


def home():
    s = services.get()
    s.library.scan_if_due()
    books = [_book_card(b) for b in s.library.list()]
    installed = s.installed()
    return page("home.html", {
        "title": s.config.get("portal.title"),
        "cards": [
            {"id": "library", "name": "Library", "url": "/library", "count": installed["books"],
             "text": f"{installed['books']} book{'s' if installed['books'] != 1 else ''} to read offline"},
            {"id": "maps", "name": "Maps", "url": "/maps" if installed["maps"] else None, "count": installed["maps"],
             "text": (f"{installed['maps']} offline map{'s' if installed['maps'] != 1 else ''}: the world, "
                      "place search and articles on the map") if installed["maps"]
             else "Offline maps: run `almanac maps init` to build the world map"},
            {"id": "assistant", "name": "Assistant", "url": "/assistant", "count": installed["models"],
             "text": "Ask a question: answered from the library's books, with their sources"},
        ],
        "books": books,
    })


def library():
    s = services.get()
    s.library.scan_if_due()
    books = [_book_card(b) for b in s.library.list()]
    language = request.args.get("lang")
    languages = sorted({b["language"] for b in books if b["language"]})
    if language:
        books = [b for b in books if b["language"] == language]
    return page("library.html", {"books": books, "languages": languages, "language": language})


def illustration(name: str):
    s = services.get()
    archive = s.library.archive(name)
    if archive is None or not archive.has_illustration(48):
        abort(404)
    item = archive.get_illustration_item(48)
    return send_bytes(request, bytes(item.content), item.mimetype or "image/png",
                      make_etag(archive.uuid, "illustration48"), max_age=86400)


def healthz():
    s = services.get()
    return jsonify({"status": "ok", "version": s.version, "uptime_s": s.uptime_s(), "installed": s.installed()})
