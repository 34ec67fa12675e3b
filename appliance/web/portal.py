"""Portal pages: home, library list, health, book illustrations."""

from __future__ import annotations

from flask import abort, jsonify, request

from content import entries

from . import worker_state
from .catalog import book_json
from .http_cache import make_etag, send_bytes
from .render import page


def home():
    s = worker_state.get()
    s.library.scan_if_due()
    books = [book_json(b) for b in s.library.list()]
    installed = s.installed()
    return page(
        "home.html",
        {
            "title": s.config.get("portal.title"),
            "cards": [
                {
                    "id": "library",
                    "name": "Library",
                    "url": "/library",
                    "count": installed["books"],
                    "text": f"{installed['books']} book{'s' if installed['books'] != 1 else ''} to read offline",
                },
                {
                    "id": "maps",
                    "name": "Maps",
                    "url": "/maps" if installed["maps"] else None,
                    "count": installed["maps"],
                    "text": (
                        f"{installed['maps']} offline map{'s' if installed['maps'] != 1 else ''}: the world, "
                        "place search and articles on the map"
                    )
                    if installed["maps"]
                    else "Offline maps: run `almanac maps init` to build the world map",
                },
                {
                    "id": "assistant",
                    "name": "Assistant",
                    "url": "/assistant",
                    "count": installed["models"],
                    "text": "Ask a question: answered from the library's books, with their sources",
                },
            ],
            "books": books,
        },
    )


def library():
    s = worker_state.get()
    s.library.scan_if_due()
    books = [book_json(b) for b in s.library.list()]
    language = request.args.get("lang")
    languages = sorted({b["language"] for b in books if b["language"]})
    if language:
        books = [b for b in books if b["language"] == language]
    return page("library.html", {"books": books, "languages": languages, "language": language})


def illustration(name: str):
    archive = worker_state.get().library.archive(name)
    item = entries.illustration(archive) if archive is not None else None
    if item is None:
        abort(404)
    return send_bytes(request, item.body, item.mimetype, make_etag(item.uuid, item.path), max_age=86400)


def healthz():
    s = worker_state.get()
    return jsonify({"status": "ok", "version": s.version, "uptime_s": s.uptime_s(), "installed": s.installed()})
