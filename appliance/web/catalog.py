"""The library as a catalog: per-book home pages, the OPDS feed Kiwix clients read, and file downloads."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote
from xml.sax.saxutils import escape

from flask import Response, abort, request, send_file

from . import worker_state
from .args import int_arg
from .render import page

OPDS_TYPE = "application/atom+xml;profile=opds-catalog;kind=acquisition"


def book_json(book) -> dict:
    """The one JSON shape of a book (home, library, book page, search): its metadata and its URLs."""
    data = book.to_json()
    data.pop("path")  # where a file lives on disk is the admin's business
    data["reader_url"] = f"/viewer#{quote(book.name)}/{quote(book.main_path)}" if book.main_path else None
    data["content_url"] = f"/content/{quote(book.name)}/"
    data["illustration"] = f"/catalog/illustration/{quote(book.name)}" if book.illustration_48 else None
    data["url"] = f"/book/{quote(book.name)}"
    data["read_url"] = f"/viewer#{quote(book.name)}/"
    return data


def _book_or_404(name: str):
    book = worker_state.get().library.get(name)
    if book is None:
        abort(404, description=f"No book named {name!r} in this library.")
    return book


def book_home(name: str):
    return page("book.html", {"book": book_json(_book_or_404(name))})


def download(name: str):
    """The whole archive, so another box on the LAN can copy it (Range and resume included)."""
    book = _book_or_404(name.removesuffix(".zim"))
    try:
        return send_file(
            book.path,
            mimetype="application/octet-stream",
            as_attachment=True,
            download_name=f"{book.name}.zim",
            conditional=True,
            max_age=3600,
        )
    except FileNotFoundError:
        abort(404, description="The file of this book is gone.")


def _iso(date: str, fallback: float) -> str:
    try:
        return datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return datetime.fromtimestamp(fallback, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def opds_entries():
    """OPDS 1.2 acquisition feed of the local library, the shape of Kiwix's /catalog/v2/entries."""
    s = worker_state.get()
    books = s.library.list()
    lang = request.args.get("lang")
    query = (request.args.get("q") or "").casefold()
    if lang:
        books = [b for b in books if lang in b.language.split(",")]
    if query:
        books = [b for b in books if query in f"{b.title} {b.description}".casefold()]
    start = int_arg("start", 0, 0, 1 << 31)
    count = int_arg("count", 0, -1, 1 << 31) or len(books)  # negative: an empty page
    shown = books[start : start + max(0, count)]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/terms/"'
        ' xmlns:opds="https://specs.opds.io/opds-1.2" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">',
        f"<id>urn:uuid:almanac-{escape(s.version)}-entries</id>",
        f'<link rel="self" href="{_attr(request.full_path)}" type="{OPDS_TYPE}"/>',
        f"<title>{escape(s.config.get('portal.title'))} library</title>",
        f"<updated>{now}</updated>",
        f"<totalResults>{len(books)}</totalResults><startIndex>{start}</startIndex>"
        f"<itemsPerPage>{len(shown)}</itemsPerPage>",
    ]
    for b in shown:
        name = quote(b.name)
        parts += [
            "<entry>",
            f"<id>urn:uuid:{escape(b.uuid)}</id>",
            f"<title>{escape(b.title)}</title>",
            f"<updated>{_iso(b.date, b.added_at)}</updated>",
            f"<summary>{escape(b.description)}</summary>",
            f"<language>{escape(b.language)}</language>",
            f"<name>{escape(b.name)}</name>",
            f"<flavour>{escape(b.flavour)}</flavour>",
            f"<category>{escape(_category(b.tags))}</category>",
            f"<tags>{escape(b.tags)}</tags>",
            f"<articleCount>{b.article_count}</articleCount>",
            f"<mediaCount>{b.media_count}</mediaCount>",
            f"<author><name>{escape(b.creator)}</name></author>",
            f"<publisher><name>{escape(b.publisher)}</name></publisher>",
            f"<dc:issued>{_iso(b.date, b.added_at)}</dc:issued>",
            f'<link type="text/html" href="/content/{name}/"/>',
            f'<link rel="http://opds-spec.org/acquisition/open-access" type="application/x-zim"'
            f' href="/catalog/download/{name}.zim" length="{b.size}"/>',
        ]
        if b.illustration_48:
            parts.append(
                f'<link rel="http://opds-spec.org/image/thumbnail" href="/catalog/illustration/{name}"'
                ' type="image/png;width=48;height=48;scale=1"/>'
            )
        parts.append("</entry>")
    parts.append("</feed>")
    return Response(
        "\n".join(parts), mimetype=OPDS_TYPE.split(";")[0], headers={"Content-Type": f"{OPDS_TYPE}; charset=utf-8"}
    )


def _attr(text: str) -> str:
    """Text for a double-quoted XML attribute: saxutils.escape leaves the quote itself alone."""
    return escape(text, {'"': "&quot;"})


def _category(tags: str) -> str:
    for tag in tags.split(";"):
        if tag.startswith("_category:"):
            return tag.split(":", 1)[1]
    return ""
