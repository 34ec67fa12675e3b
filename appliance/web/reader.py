"""The ZIM reader: /content/<book>/<path>, main pages and random articles, as Kiwix clients expect."""

from __future__ import annotations

from urllib.parse import quote

from flask import abort, redirect, render_template, request

from content import entries

from . import article_bridge, worker_state
from .http_cache import make_etag, send_bytes


def _archive_or_404(book: str):
    archive = worker_state.get().library.archive(book)
    if archive is None:
        abort(404, description=f"No book named {book!r} in this library.")
    return archive


def _content_url(book: str, path: str, raw: bool = False) -> str:
    base = f"/raw/{quote(book)}/content" if raw else f"/content/{quote(book)}"
    return f"{base}/{quote(path, safe='/')}"


def main_page(book: str):
    archive = _archive_or_404(book)
    try:
        path = entries.main_path(archive)
    except entries.RedirectLoop as e:
        abort(404, description=str(e))
    if path is None:
        return redirect(f"/search?content={quote(book)}", 302)  # no main page: offer its search
    return redirect(_content_url(book, path), 302)


def content(book: str, path: str, raw: bool = False):
    archive = _archive_or_404(book)
    try:
        found = entries.lookup(archive, path)
    except entries.RedirectLoop as e:
        abort(404, description=str(e))
    except entries.Unreadable:
        abort(404, description=f"{path!r} cannot be read from {book} (was the file removed?).")
    if found is None:
        abort(404, description=f"No page {path!r} in {book}.")
    if isinstance(found, entries.Redirect):
        return redirect(_content_url(book, found.path, raw), 302)
    if raw or not found.mimetype.startswith("text/html"):
        return send_bytes(request, found.body, found.mimetype, make_etag(found.uuid, found.path), max_age=3600)
    # An HTML article: in the reader's frame it carries the toolbar's script (article_bridge.py); on its own,
    # its bytes are the archive's. Both vary on Sec-Fetch-Dest, with an ETag each.
    if article_bridge.wanted(request, found.mimetype):
        body, etag = article_bridge.add_to(found.body), make_etag(found.uuid, found.path, article_bridge.SCRIPT_URL)
    else:
        body, etag = found.body, make_etag(found.uuid, found.path)
    return send_bytes(request, body, found.mimetype, etag, max_age=3600, extra_headers={"Vary": article_bridge.VARY})


def random_article():
    s = worker_state.get()
    book = request.args.get("content") or next((b.name for b in s.library.list()), None)
    if not book:
        abort(404, description="The library is empty.")
    try:
        path = entries.random_path(_archive_or_404(book))
    except entries.RedirectLoop as e:
        abort(404, description=str(e))
    if path is None:
        abort(404, description=f"{book} has no articles to pick from.")
    return redirect(_content_url(book, path), 302)


def viewer():
    """The reader page: toolbar + iframe; which article it shows lives in the URL hash (#book/path)."""
    return render_template("viewer.html")


def raw(book: str, path: str):
    """Kiwix's /raw/<book>/content/<path>: the entry's bytes; redirects stay under /raw."""
    return content(book, path, raw=True)
