"""Build a ZIM archive from a folder of Markdown/HTML pages and assets.

Rules, in the order a user meets them:

* Every ``.md``/``.markdown``/``.html``/``.htm`` file is a page. It becomes a front article at its relative
  path without the extension (``guide/install.md`` -> ``guide/install``), wrapped in a complete HTML5
  document that links the embedded stylesheet. A full HTML document keeps only its ``<body>``.
* ``index.md`` or ``index.html`` at the root is the main page; the build fails without one.
* Any other file is an asset, stored at its relative path with its MIME type. Hidden files and folders
  (name starting with ``.``) are left out; symlinked folders are not followed.
* Relative links and resource references must point at a file of the source folder (an error names the
  page otherwise). They are rewritten to the entry paths, relative, so the archive works under any URL
  prefix. Root-relative links (``/x``) are rewritten when they match a source file and left alone
  otherwise: they address the web server the archive is served from.
* Pages and stylesheets may not load anything from another host (scripts, images, fonts, CSS): the
  archive must work with no internet. Plain ``<a href="https://...">`` links are allowed.

Everything is read and checked before libzim starts, because libzim's writer finalises the archive even
when an exception interrupts it. The archive is written in a private temporary folder next to
``out_path`` (libzim puts its own ``.tmp`` and index files beside its output) and moved into place
only once it has passed ``Archive.check()``.
"""

from __future__ import annotations

import datetime
import html
import mimetypes
import os
import posixpath
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import markdown
from libzim.reader import Archive
from libzim.writer import Creator, Hint, IndexData, Item, StringProvider
from markdown.extensions.toc import slugify_unicode

from content import png

CSS_SOURCE = Path(__file__).with_name("handbook.css")
CSS_ENTRY = "_almanac/handbook.css"
MAIN_ENTRY = "index"
DESCRIPTION_MAX = 80  # the ZIM metadata spec's limit for Description
SCRAPER = "Almanac zim_builder"

MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
PAGE_SUFFIXES = MARKDOWN_SUFFIXES | HTML_SUFFIXES

# Explicit table first: the mimetypes module depends on the host's /etc/mime.types.
MIME_TYPES = {
    ".css": "text/css",
    ".js": "application/javascript",
    ".mjs": "application/javascript",
    ".json": "application/json",
    ".xml": "application/xml",
    ".txt": "text/plain",
    ".csv": "text/csv",
    ".vtt": "text/vtt",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon",
    ".pdf": "application/pdf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".zip": "application/zip",
    ".gz": "application/gzip",
}
COMPRESSIBLE_MIME = ("text/", "application/javascript", "application/json", "application/xml", "image/svg+xml")

# ISO 639-3 -> the two-letter code browsers prefer in <html lang>; others stay three letters (valid BCP 47).
HTML_LANG = {
    "eng": "en",
    "fra": "fr",
    "deu": "de",
    "spa": "es",
    "por": "pt",
    "ita": "it",
    "nld": "nl",
    "pol": "pl",
    "rus": "ru",
    "ukr": "uk",
    "bel": "be",
    "ces": "cs",
    "slk": "sk",
    "swe": "sv",
    "nor": "no",
    "dan": "da",
    "fin": "fi",
    "ell": "el",
    "tur": "tr",
    "ara": "ar",
    "heb": "he",
    "fas": "fa",
    "hin": "hi",
    "ben": "bn",
    "zho": "zh",
    "jpn": "ja",
    "kor": "ko",
    "vie": "vi",
    "tha": "th",
    "ind": "id",
    "swa": "sw",
    "hun": "hu",
    "ron": "ro",
    "bul": "bg",
    "srp": "sr",
    "hrv": "hr",
    "lit": "lt",
    "lav": "lv",
    "est": "et",
    "kat": "ka",
}

_LANGUAGE_RE = re.compile(r"^[a-z]{3}(,[a-z]{3})*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EXTERNAL_CSS_RE = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:[a-z][a-z0-9+.-]*:)?//[^'")\s]*)""", re.I)
_ATTR_RE = re.compile(r"""(?P<pre>\s)(?P<name>[^\s"'>/=]+)(?P<eq>\s*=\s*)(?P<val>"[^"]*"|'[^']*'|[^\s"'=<>`]+)""")
_BODY_RE = re.compile(r"<body\b[^>]*>(.*?)(?:</body\s*>|\Z)", re.I | re.S)
_DOC_PARTS_RE = re.compile(r"<!doctype[^>]*>|</?html\b[^>]*>|<head\b.*?</head\s*>", re.I | re.S)

_FETCHING_LINK_RELS = {
    "stylesheet",
    "icon",
    "preload",
    "prefetch",
    "modulepreload",
    "manifest",
    "preconnect",
    "dns-prefetch",
    "apple-touch-icon",
}
_INLINE_TAGS = {
    "a",
    "abbr",
    "b",
    "bdi",
    "bdo",
    "cite",
    "code",
    "data",
    "dfn",
    "em",
    "i",
    "kbd",
    "mark",
    "q",
    "s",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "time",
    "u",
    "var",
    "wbr",
}
_SKIP_TEXT_TAGS = {"script", "style", "template"}

PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{css}">
</head>
<body>
<header class="handbook-bar"><a href="{home}">{book}</a></header>
<main>
{content}
</main>
</body>
</html>
"""


class ZimBuildError(Exception):
    """The source folder or an argument cannot be turned into a ZIM; the message is one line."""


@dataclass(frozen=True)
class BuildReport:
    out_path: Path
    article_count: int
    resource_count: int
    size_bytes: int
    title: str
    main_path: str


@dataclass
class _Page:
    source: str  # relative POSIX path in the source folder
    entry: str  # entry path in the archive
    fragment: str  # HTML body content
    title: str
    text: str = ""  # plain text for the full-text index
    first_paragraph: str = ""


@dataclass
class _Asset:
    source: str
    entry: str
    data: bytes
    mimetype: str


def build_zim(
    src_dir: Path,
    out_path: Path,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    language: str = "eng",
    creator: str = "Almanac",
    publisher: str = "Almanac",
    tags: str = "_category:other;almanac",
    date: str | None = None,
    illustration: bytes | None = None,
    flavour: str | None = None,
) -> BuildReport:
    """Build `out_path` from the pages and assets in `src_dir`; see the module docstring for the rules."""
    src_dir = Path(src_dir)
    out_path = Path(out_path)
    language = _check_language(language)
    date = _check_date(date)
    if illustration is None:
        illustration = png.almanac_icon(48)
    _check_illustration(illustration)
    if description is not None and len(description) > DESCRIPTION_MAX:
        raise ZimBuildError(f"description is {len(description)} characters; a ZIM allows at most {DESCRIPTION_MAX}")
    if not src_dir.is_dir():
        raise ZimBuildError(f"{src_dir}: source folder does not exist or is not a folder")
    if out_path.is_dir():
        raise ZimBuildError(f"{out_path}: output path is a folder")

    pages, assets = _load_sources(src_dir, out_path)
    by_entry = {p.entry: p for p in pages}
    if MAIN_ENTRY not in by_entry:
        raise ZimBuildError(f"{src_dir}: no index.md or index.html at the top of the source folder")
    main = by_entry[MAIN_ENTRY]

    title = (title or main.title).strip()
    if not title:
        raise ZimBuildError("title is empty")
    if description is None:
        description = _clip(main.first_paragraph or title, DESCRIPTION_MAX)
    name = name or out_path.stem
    primary_language = language.split(",")[0]
    html_lang = HTML_LANG.get(primary_language, primary_language)

    documents = {p.entry: _wrap(p, title, html_lang).encode("utf-8") for p in pages}
    metadata = {
        "Name": name,
        "Title": title,
        "Description": description,
        "Language": language,
        "Creator": creator,
        "Publisher": publisher,
        "Date": date,
        "Tags": tags,
        "Scraper": SCRAPER,
    }
    if flavour:
        metadata["Flavour"] = flavour  # Kiwix's variant of a book (nopic, maxi...): name + flavour names it
    for key, value in metadata.items():
        if not value or "\n" in value:
            raise ZimBuildError(f"metadata {key} must be one non-empty line, got {value!r}")

    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".build", dir=out_path.parent))
    except OSError as e:
        raise ZimBuildError(f"{out_path}: cannot write there: {e.strerror or e}") from None
    try:
        tmp_zim = work / (out_path.stem + ".zim")
        _write(tmp_zim, pages, documents, assets, metadata, illustration, primary_language)
        _verify(tmp_zim)
        _fsync(tmp_zim)
        os.replace(tmp_zim, out_path)
        _fsync(out_path.parent)
    except OSError as e:
        raise ZimBuildError(f"{out_path}: writing failed: {e.strerror or e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    return BuildReport(
        out_path=out_path,
        article_count=len(pages),
        resource_count=len(assets) + 1,
        size_bytes=out_path.stat().st_size,
        title=title,
        main_path=MAIN_ENTRY,
    )


# --- argument checks ---------------------------------------------------------


def _check_language(language: str) -> str:
    if not isinstance(language, str) or not _LANGUAGE_RE.match(language):
        raise ZimBuildError(
            f"language {language!r} is not an ISO 639-3 code (three lower-case letters, "
            "e.g. 'eng'; several separated by commas)"
        )
    return language


def _check_date(date: str | datetime.date | None) -> str:
    if date is None:
        return datetime.date.today().isoformat()
    if isinstance(date, datetime.date):
        return date.isoformat()
    try:
        if not _DATE_RE.match(date):
            raise ValueError
        datetime.date.fromisoformat(date)
    except (TypeError, ValueError):
        raise ZimBuildError(f"date {date!r} is not a YYYY-MM-DD date") from None
    return date


def _check_illustration(data: bytes) -> None:
    try:
        size = png.png_size(bytes(data))
    except (TypeError, ValueError):
        raise ZimBuildError("illustration is not a PNG file") from None
    if size != (48, 48):
        raise ZimBuildError(f"illustration is {size[0]}x{size[1]}; it must be 48x48")


# --- reading the source folder -------------------------------------------------


def _source_files(src_dir: Path, out_path: Path) -> list[str]:
    skip = out_path.resolve()
    found = []
    for folder, dirs, files in os.walk(src_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file_name in sorted(files):
            full = Path(folder, file_name)
            if file_name.startswith(".") or file_name.endswith("~") or full.resolve() == skip:
                continue
            found.append(full.relative_to(src_dir).as_posix())
    return found


def _read(src_dir: Path, rel: str) -> bytes:
    try:
        return (src_dir / rel).read_bytes()
    except OSError as e:
        raise ZimBuildError(f"{src_dir / rel}: cannot read: {e.strerror or e}") from None


def _entry_path(rel: str) -> str:
    stem, suffix = posixpath.splitext(rel)
    return stem if suffix.lower() in PAGE_SUFFIXES else rel


def _load_sources(src_dir: Path, out_path: Path) -> tuple[list[_Page], list[_Asset]]:
    files = _source_files(src_dir, out_path)
    owner: dict[str, str] = {CSS_ENTRY: "the builder's stylesheet"}
    for rel in files:
        entry = _entry_path(rel)
        if entry in owner:
            raise ZimBuildError(f"{src_dir / rel}: would be stored at '{entry}', already used by {owner[entry]}")
        owner[entry] = str(src_dir / rel)

    converter = markdown.Markdown(
        extensions=["tables", "fenced_code", "toc", "sane_lists"],
        # Unicode slugs keep heading ids readable (and non-empty) for non-Latin headings.
        extension_configs={"toc": {"slugify": slugify_unicode}},
        output_format="html",
    )
    pages: list[_Page] = []
    assets: list[_Asset] = []
    for rel in files:
        data = _read(src_dir, rel)
        suffix = posixpath.splitext(rel)[1].lower()
        if suffix not in PAGE_SUFFIXES:
            mimetype = _mimetype(rel)
            if mimetype == "text/css":
                _check_css(data.decode("utf-8", errors="replace"), src_dir / rel)
            assets.append(_Asset(rel, rel, data, mimetype))
            continue
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ZimBuildError(f"{src_dir / rel}: not valid UTF-8 (byte {e.start})") from None
        if suffix in MARKDOWN_SUFFIXES:
            converter.reset()
            fragment, html_title = converter.convert(text), ""
        else:
            fragment, html_title = _html_body(text)
        pages.append(_Page(rel, _entry_path(rel), fragment, html_title))

    # Links may name a source file (install.md) or, already, an entry path (install).
    targets = {entry: entry for entry in map(_entry_path, files)}
    targets.update({rel: _entry_path(rel) for rel in files})
    for page in pages:
        _finish_page(page, src_dir, targets)
    return pages, assets


def _mimetype(rel: str) -> str:
    suffix = posixpath.splitext(rel)[1].lower()
    return MIME_TYPES.get(suffix) or mimetypes.guess_type(rel)[0] or "application/octet-stream"


def _html_body(text: str) -> tuple[str, str]:
    """Body content and <title> text of an HTML page (a fragment is returned whole)."""
    match = re.search(r"<title\b[^>]*>(.*?)</title\s*>", text, re.I | re.S)
    doc_title = " ".join(html.unescape(re.sub(r"<[^>]*>", "", match.group(1))).split()) if match else ""
    body = _BODY_RE.search(text)
    fragment = body.group(1) if body else _DOC_PARTS_RE.sub("", text)
    return fragment.strip(), doc_title


def _fallback_title(rel: str) -> str:
    stem = posixpath.splitext(posixpath.basename(rel))[0]
    if stem == "index" and "/" in rel:
        stem = posixpath.basename(posixpath.dirname(rel))
    return stem


# --- pages: links, titles, text ---------------------------------------------------


class _PageScan(HTMLParser):
    """Finds start tags that carry URLs or styles, and collects the page's text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.tags: list[tuple[int, str, str, dict[str, str | None]]] = []  # offset, raw, tag, attrs
        self.words: list[str] = []
        self.h1: str | None = None
        self.first_paragraph: str | None = None
        self.styles: list[str] = []
        self._skip = 0
        self._h1: list[str] | None = None
        self._p: list[str] | None = None
        self._in_style = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attr = {k.lower(): v for k, v in attrs}
        if attr.keys() & {"href", "src", "srcset", "poster", "data", "style"}:
            line, col = self.getpos()
            self.tags.append((self._line_starts[line - 1] + col, self.get_starttag_text(), tag, attr))
        if tag in _SKIP_TEXT_TAGS:
            self._skip += 1
            self._in_style = tag == "style"
        elif tag == "h1" and self.h1 is None:
            self._h1 = []
        elif tag == "p" and self.first_paragraph is None:
            self._p = []
        if tag not in _INLINE_TAGS:
            self.words.append(" ")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in _SKIP_TEXT_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in _SKIP_TEXT_TAGS:
            self._skip = max(0, self._skip - 1)
            self._in_style = False
        elif tag == "h1" and self._h1 is not None:
            self.h1 = " ".join("".join(self._h1).split())
            self._h1 = None
        elif tag == "p" and self._p is not None:
            self.first_paragraph = " ".join("".join(self._p).split()) or None
            self._p = None
        if tag not in _INLINE_TAGS:
            self.words.append(" ")

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)
        if self._skip:
            return
        self.words.append(data)
        for buf in (self._h1, self._p):
            if buf is not None:
                buf.append(data)


def _finish_page(page: _Page, src_dir: Path, targets: dict[str, str]) -> None:
    where = src_dir / page.source
    scan = _PageScan(page.fragment)
    for css in scan.styles:
        _check_css(css, where)

    out, last = [], 0
    for offset, raw, tag, attrs in scan.tags:
        if page.fragment[offset : offset + len(raw)] != raw:  # parser positions must be exact to edit in place
            raise ZimBuildError(
                f"{where}: cannot parse the HTML near line {page.fragment.count(chr(10), 0, offset) + 1}"
            )
        out.append(page.fragment[last:offset])
        out.append(_rewrite_tag(raw, tag, attrs, page, where, targets))
        last = offset + len(raw)
    out.append(page.fragment[last:])
    page.fragment = "".join(out)

    page.title = scan.h1 or page.title or _fallback_title(page.source)
    page.text = " ".join("".join(scan.words).split())
    page.first_paragraph = scan.first_paragraph or ""


def _rewrite_tag(
    raw: str, tag: str, attrs: dict[str, str | None], page: _Page, where: Path, targets: dict[str, str]
) -> str:
    rels = set((attrs.get("rel") or "").lower().split())
    fetched_href = tag not in ("a", "area") and (tag != "link" or bool(rels & _FETCHING_LINK_RELS))

    def replace(match: re.Match) -> str:
        attr = match.group("name").lower()
        value = match.group("val")
        value = html.unescape(value[1:-1] if value[0] in "\"'" else value)
        if attr == "style":
            _check_css(value, where)
            return match.group(0)
        if attr == "href":
            new = _rewrite_url(value, page, where, targets, fetched=fetched_href)
        elif attr in ("src", "poster") or (attr == "data" and tag == "object"):
            new = _rewrite_url(value, page, where, targets, fetched=True)
        elif attr == "srcset":
            new = ", ".join(
                _rewrite_srcset_item(item, page, where, targets) for item in re.split(r",\s+", value.strip()) if item
            )
        else:
            return match.group(0)
        return f'{match.group("pre")}{match.group("name")}="{html.escape(new, quote=True)}"'

    head = len(tag) + 1  # "<tag"
    return raw[:head] + _ATTR_RE.sub(replace, raw[head:])


def _rewrite_srcset_item(item: str, page: _Page, where: Path, targets: dict[str, str]) -> str:
    url, _, descriptor = item.strip().partition(" ")
    new = _rewrite_url(url, page, where, targets, fetched=True)
    return f"{new} {descriptor.strip()}" if descriptor.strip() else new


def _rewrite_url(url: str, page: _Page, where: Path, targets: dict[str, str], *, fetched: bool) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("//"):
        if fetched and (parts.netloc or url.startswith("//")):
            raise ZimBuildError(f"{where}: loads {url} from another host; pages must work offline")
        return url
    if not parts.path:  # "#section" or "?query" on the same page
        return url
    path = unquote(parts.path)
    rooted = path.startswith("/")
    joined = path.lstrip("/") if rooted else posixpath.join(posixpath.dirname(page.source), path)
    target = posixpath.normpath(joined) if joined else "."
    entry = _resolve(target, path.endswith("/"), targets)
    if entry is None:
        if rooted:  # addresses the server, e.g. a portal page
            return url
        if target == ".." or target.startswith("../"):
            raise ZimBuildError(f"{where}: link '{url}' points outside the source folder")
        raise ZimBuildError(f"{where}: link '{url}' does not match any file in the source folder")
    rel = posixpath.relpath(entry, posixpath.dirname(page.entry) or ".")
    return urlunsplit(("", "", quote(rel, safe="/"), parts.query, parts.fragment))


def _resolve(target: str, wants_folder: bool, targets: dict[str, str]) -> str | None:
    if not wants_folder and target in targets:
        return targets[target]
    index = MAIN_ENTRY if target == "." else f"{target}/index"  # a folder means its index page
    return targets.get(index)


def _check_css(css: str, where: Path) -> None:
    match = _EXTERNAL_CSS_RE.search(css)
    if match:
        raise ZimBuildError(f"{where}: loads {match.group(1)} from another host; pages must work offline")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-—") + "…"


def _wrap(page: _Page, book_title: str, html_lang: str) -> str:
    base = posixpath.dirname(page.entry) or "."
    return PAGE_TEMPLATE.format(
        lang=html_lang,
        title=html.escape(page.title),
        css=quote(posixpath.relpath(CSS_ENTRY, base), safe="/"),
        home=quote(posixpath.relpath(MAIN_ENTRY, base), safe="/"),
        book=html.escape(book_title),
        content=page.fragment,
    )


# --- writing -----------------------------------------------------------------------


def _write(
    tmp_zim: Path,
    pages: list[_Page],
    documents: dict[str, bytes],
    assets: list[_Asset],
    metadata: dict[str, str],
    illustration: bytes,
    language: str,
) -> None:
    try:
        css = CSS_SOURCE.read_bytes()
    except OSError as e:
        raise ZimBuildError(f"{CSS_SOURCE}: cannot read: {e.strerror or e}") from None
    try:
        with Creator(tmp_zim).config_indexing(True, language) as creator:
            creator.set_mainpath(MAIN_ENTRY)
            for page in pages:
                creator.add_item(
                    _Entry(
                        page.entry,
                        page.title,
                        "text/html",
                        documents[page.entry],
                        front=True,
                        index=_IndexText(page.title, page.text),
                    )
                )
            creator.add_item(_Entry(CSS_ENTRY, "", "text/css", css, front=False))
            for asset in assets:
                creator.add_item(_Entry(asset.entry, "", asset.mimetype, asset.data, front=False))
            for key, value in metadata.items():
                creator.add_metadata(key, value)
            creator.add_illustration(48, illustration)
    except RuntimeError as e:
        raise ZimBuildError(f"libzim could not write the archive: {' '.join(str(e).split())}") from None


def _fold(text: str) -> str:
    """Lower-case and strip combining marks, as libzim does to its own index text and to queries.

    libzim folds only the text of its built-in HTML indexer; text from a custom IndexData is indexed as
    given, so without this a word such as "край" or "café" could never be found.
    """
    decomposed = unicodedata.normalize("NFD", text.lower())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.category(c).startswith("M")))


class _IndexText(IndexData):
    """Our own index text: the page content without the navigation bar that every page repeats."""

    def __init__(self, title: str, text: str):
        super().__init__()
        self._title, self._text = _fold(title), _fold(text)

    def has_indexdata(self):
        return True

    def get_title(self):
        return self._title

    def get_content(self):
        return self._text

    def get_keywords(self):
        return ""

    def get_wordcount(self):
        return len(self._text.split())

    def get_geoposition(self):
        return None


class _Entry(Item):
    # Content is fully in memory: libzim calls these methods from its worker threads, where an
    # exception (say, a file that vanished) could not be reported cleanly.
    def __init__(
        self, path: str, title: str, mimetype: str, data: bytes, *, front: bool, index: _IndexText | None = None
    ):
        super().__init__()
        self._path, self._title, self._mimetype, self._data = path, title, mimetype, data
        self._front, self._index = front, index

    def get_path(self):
        return self._path

    def get_title(self):
        return self._title

    def get_mimetype(self):
        return self._mimetype

    def get_contentprovider(self):
        return StringProvider(self._data)

    def get_hints(self):
        return {Hint.FRONT_ARTICLE: self._front, Hint.COMPRESS: self._mimetype.startswith(COMPRESSIBLE_MIME)}

    def get_indexdata(self):
        return self._index


def _verify(zim: Path) -> None:
    archive = Archive(zim)
    if not (archive.check() and archive.has_main_entry):
        raise ZimBuildError(f"{zim}: libzim's check failed on the new archive; nothing was replaced")


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)
