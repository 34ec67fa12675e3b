"""The ZIM reader: /content/<book>/<path>, main pages and random articles, as Kiwix clients expect."""
from __future__ import annotations

import random
from urllib.parse import quote

from flask import abort, redirect, render_template, request

from . import services
from .http_cache import make_etag, send_bytes

MAX_REDIRECTS = 32


def _archive_or_404(book: str):
    archive = services.get().library.archive(book)
    if archive is None:
        abort(404, description=f"No book named {book!r} in this library.")
    return archive


def _content_url(book: str, path: str, raw: bool = False) -> str:
    base = f"/raw/{quote(book)}/content" if raw else f"/content/{quote(book)}"
    return f"{base}/{quote(path, safe='/')}"


def main_page(book: str):
    archive = _archive_or_404(book)
    if not archive.has_main_entry:
        return redirect(f"/search?content={quote(book)}", 302)  # no main page: offer its search
    return redirect(_content_url(book, _resolve(archive.main_entry).path), 302)


def _resolve(entry):
    for _ in range(MAX_REDIRECTS):
        if not entry.is_redirect:
            return entry
        entry = entry.get_redirect_entry()
    abort(404, description="This page redirects in a loop.")


def _find_entry(archive, path: str):
    candidates = [path]
    if not archive.has_new_namespace_scheme and "/" not in path[:2]:
        candidates.append(f"A/{path}")  # old-scheme archive asked with a new-style path
    for candidate in candidates:
        try:
            return archive.get_entry_by_path(candidate)
        except KeyError:
            continue
    return None


def content(book: str, path: str, raw: bool = False):
    archive = _archive_or_404(book)
    entry = _find_entry(archive, path)
    if entry is None:
        abort(404, description=f"No page {path!r} in {book}.")
    if entry.is_redirect:
        return redirect(_content_url(book, _resolve(entry).path, raw), 302)
    try:
        item = entry.get_item()
        body = bytes(item.content)
    except (RuntimeError, OSError):
        abort(404, description=f"{path!r} cannot be read from {book} (was the file removed?).")
    mimetype = item.mimetype or "application/octet-stream"
    return send_bytes(request, body, mimetype, make_etag(archive.uuid, entry.path), max_age=3600)


def random_article():
    s = services.get()
    book = request.args.get("content") or next((b.name for b in s.library.list()), None)
    if not book:
        abort(404, description="The library is empty.")
    archive = _archive_or_404(book)
    entry = _random_page(archive)
    if entry is None:
        abort(404, description=f"{book} has no articles to pick from.")
    return redirect(_content_url(book, entry.path), 302)


def _random_page(archive):
    try:
        for _ in range(16):  # a random front entry can be a redirect; try a few
            entry = archive.get_random_entry()
            if not entry.is_redirect:
                return entry
        return _resolve(entry)
    except (KeyError, RuntimeError):
        pass
    # Older archives flag no front articles at all: draw HTML entries by id instead.
    rng = random.Random()
    for _ in range(64):
        entry = archive._get_entry_by_id(rng.randrange(archive.all_entry_count))
        if not entry.is_redirect and entry.get_item().mimetype.startswith("text/html"):
            return entry
    return None


def viewer():
    """The reader page: toolbar + iframe; which article it shows lives in the URL hash (#book/path)."""
    return render_template("viewer.html")


def raw(book: str, path: str):
    """Kiwix's /raw/<book>/content/<path>: the entry's bytes; redirects stay under /raw."""
    return content(book, path, raw=True)
