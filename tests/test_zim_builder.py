"""The project's ZIM builder, checked by reading its output back with libzim's own reader."""

from __future__ import annotations

import datetime
import os
import posixpath
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from libzim.reader import Archive
from libzim.search import Query, Searcher
from libzim.suggestion import SuggestionSearcher

from content import png
from content.zim_builder import BuildReport, ZimBuildError, build_zim

TINY_PNG = png.encode_png(2, 2, bytes([255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255, 255, 255, 0]))
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'

SOURCE = {
    "index.md": """# Field Guide

This guide explains how the box is set up and used by everyone on the network, step by step, in plain words.

- [Installing](guide/install.md#part-two)
- [The guide](guide/)
- [About](about.html)
- [Мова](be/mova.md)
- [Untitled](notitle.md)
- [Project site](https://example.org/almanac)

![Logo](img/logo.png)

```html
<a href="install.md">shown as code, not a link</a>
```
""",
    "guide/index.md": """# Guide overview

Start with [installing](install.md) or go [home](../index.md).
""",
    "guide/install.md": """# Installing the box

Feed the quokkaberry to the installer. Back to [the start](../index.md) or read [about us](../about.html "About").

| Step | What |
|------|------|
| 1    | Run it |

## Part two

<img src="../img/logo.png" srcset="../img/logo.png 1x, ../img/logo.png 2x" alt="logo">
""",
    "about.html": """<!DOCTYPE html>
<html><head><title>Old title</title><meta charset="utf-8"></head>
<body>
<h1>About this book</h1>
<p>Written for the <a href="guide/install.md">lighthouse keepers</a>. <img src="img/diagram.svg" alt=""></p>
</body></html>
""",
    "notitle.md": "Just a paragraph, no heading at all.\n",
    "be/mova.md": """# Беларуская мова

Зубр — самая вялікая жывёла пушчы. Мой родны край. [Назад](../index.md)
""",
    "style/extra.css": "body { margin: 0; }\n",
    "notes/readme.txt": "plain text notes\n",
    ".hidden/secret.txt": "never packed\n",
    ".DS_Store": "junk\n",
}
PAGES = {"index", "guide/index", "guide/install", "about", "notitle", "be/mova"}


def _write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def _quiet_build(capfd, *args, **kwargs):
    # libzim's writer prints progress lines to stdout no matter what; keep test output readable.
    try:
        return build_zim(*args, **kwargs)
    finally:
        capfd.readouterr()


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> tuple[BuildReport, Path]:
    src = _write_tree(tmp_path_factory.mktemp("src"), SOURCE)
    (src / "img").mkdir()
    (src / "img/logo.png").write_bytes(TINY_PNG)
    (src / "img/diagram.svg").write_bytes(SVG)
    out = tmp_path_factory.mktemp("out") / "field_guide.zim"
    report = build_zim(
        src,
        out,
        name="almanac_en_field-guide",
        title="Field Guide",
        description="How to set up and use the box",
        language="eng",
        creator="Almanac team",
        publisher="Almanac",
        tags="_category:other;almanac;test",
        date="2024-05-17",
    )
    return report, src


@pytest.fixture(scope="module")
def archive(book) -> Archive:
    return Archive(book[0].out_path)


def _html(archive: Archive, path: str) -> str:
    return bytes(archive.get_entry_by_path(path).get_item().content).decode("utf-8")


class _Refs(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # tag, attribute, value
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src", "poster"):
                self.refs.append((tag, name, value))
            elif name == "srcset":
                self.refs += [(tag, name, item.split()[0]) for item in value.split(",")]


def _target(entry: str, url: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(entry), unquote(urlsplit(url).path)))


def _search(archive: Archive, words: str) -> list[str]:
    return list(Searcher(archive).search(Query().set_query(words)).getResults(0, 50))


def _suggest(archive: Archive, text: str) -> list[str]:
    return list(SuggestionSearcher(archive).suggest(text).getResults(0, 50))


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def _decode_rgba(data: bytes) -> tuple[int, int, bytes]:
    """Decoder for the subset our writer emits (8-bit RGBA, filter 0), written independently of it."""
    chunks = _png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, interlace) == (8, 6, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + 4 * width
    assert len(raw) == stride * height
    assert all(raw[y * stride] == 0 for y in range(height))
    return width, height, b"".join(raw[y * stride + 1 : (y + 1) * stride] for y in range(height))


# --- the built archive ---------------------------------------------------------


def test_archive_passes_libzim_check(archive):
    assert archive.check() is True
    assert archive.has_fulltext_index and archive.has_title_index and archive.has_checksum


def test_main_entry_is_the_index_page(archive, book):
    main = archive.main_entry
    if main.is_redirect:
        main = main.get_redirect_entry()
    assert main.path == "index" == book[0].main_path
    assert main.title == "Field Guide"


def test_report_describes_the_archive(archive, book):
    report = book[0]
    assert report.article_count == len(PAGES) == archive.article_count
    assert report.resource_count == 5  # logo, diagram, extra.css, readme.txt + the embedded stylesheet
    assert report.size_bytes == report.out_path.stat().st_size == archive.filesize
    assert report.title == "Field Guide"


def test_page_titles_come_from_first_h1_or_file_name(archive):
    titles = {path: archive.get_entry_by_path(path).title for path in PAGES}
    assert titles == {
        "index": "Field Guide",
        "guide/index": "Guide overview",
        "guide/install": "Installing the box",
        "about": "About this book",
        "notitle": "notitle",
        "be/mova": "Беларуская мова",
    }


def test_pages_are_complete_html5_documents(archive):
    for path in PAGES:
        page = _html(archive, path)
        assert page.startswith('<!DOCTYPE html>\n<html lang="en">'), path
        assert '<meta charset="utf-8">' in page
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        assert f"<title>{archive.get_entry_by_path(path).title}</title>" in page
        assert page.rstrip().endswith("</html>") and page.count("<body>") == 1
        sheets = [v for tag, attr, v in _Refs(page).refs if tag == "link"]
        assert len(sheets) == 1, path
        css = archive.get_entry_by_path(_target(path, sheets[0])).get_item()
        assert css.mimetype == "text/css" and b"prefers-color-scheme: dark" in bytes(css.content)
    # A full HTML document keeps its body only, so no second <head> or stale title sneaks in.
    assert "Old title" not in _html(archive, "about")


def test_links_are_rewritten_to_relative_entry_paths(archive):
    for path in PAGES:
        for tag, attr, url in _Refs(_html(archive, path)).refs:
            parts = urlsplit(url)
            if parts.scheme or not parts.path:
                continue
            assert not parts.path.endswith((".md", ".html")), (path, url)
            assert not parts.path.startswith("/"), (path, url)
            assert archive.has_entry_by_path(_target(path, url)), (path, url)
    index_links = {v for tag, attr, v in _Refs(_html(archive, "index")).refs if tag == "a"}
    assert {"guide/install#part-two", "guide/index", "about", "be/mova", "notitle"} <= index_links
    install_links = {v for tag, attr, v in _Refs(_html(archive, "guide/install")).refs}
    assert {"../index", "../about", "../img/logo.png"} <= install_links
    assert 'id="part-two"' in _html(archive, "guide/install")
    # Markup shown inside a code block is text, not a link, and stays untouched.
    assert "&lt;a href=&quot;install.md&quot;&gt;" in _html(archive, "index")


def test_pages_reference_no_external_resources(archive):
    for path in PAGES:
        page = _html(archive, path)
        for tag, attr, url in _Refs(page).refs:
            if (tag, attr) != ("a", "href"):
                assert not urlsplit(url).scheme and not url.startswith("//"), (path, tag, url)
        assert "@import" not in page and "fonts." not in page
    # Ordinary outgoing links are allowed: they fetch nothing until someone follows them.
    assert '<a href="https://example.org/almanac">' in _html(archive, "index")


def test_assets_have_their_mime_types_and_bytes(archive, book):
    src = book[1]
    expected = {
        "img/logo.png": "image/png",
        "img/diagram.svg": "image/svg+xml",
        "style/extra.css": "text/css",
        "notes/readme.txt": "text/plain",
    }
    for path, mimetype in expected.items():
        item = archive.get_entry_by_path(path).get_item()
        assert item.mimetype == mimetype
        assert bytes(item.content) == (src / path).read_bytes()
    for path in PAGES:
        assert archive.get_entry_by_path(path).get_item().mimetype == "text/html"
    assert not archive.has_entry_by_path(".hidden/secret.txt")
    assert not archive.has_entry_by_path(".DS_Store")


def test_fulltext_search_finds_a_word_only_in_one_page(archive):
    assert _search(archive, "quokkaberry") == ["guide/install"]
    assert _search(archive, "lighthouse") == ["about"]
    assert _search(archive, "xylophonic") == []


def test_fulltext_search_does_not_index_the_navigation_bar(archive):
    # "Field Guide" is in every page's header bar but only in the index page's text.
    assert _search(archive, "field") == ["index"]


def test_fulltext_search_finds_non_ascii_words(archive):
    assert _search(archive, "пушчы") == ["be/mova"]
    # Words with combining marks once decomposed (й, ё) need the same folding libzim applies to queries.
    assert _search(archive, "вялікая") == ["be/mova"]
    assert _search(archive, "край") == ["be/mova"]


def test_title_suggestions_find_titles(archive):
    assert "guide/install" in _suggest(archive, "installing")
    assert "be/mova" in _suggest(archive, "Беларуская")
    assert "img/logo.png" not in _suggest(archive, "logo")


def test_metadata_is_complete(archive):
    meta = {key: archive.get_metadata(key) for key in archive.metadata_keys}
    assert meta["Name"] == b"almanac_en_field-guide"
    assert meta["Title"] == b"Field Guide"
    assert meta["Description"] == b"How to set up and use the box"
    assert meta["Language"] == b"eng"
    assert meta["Creator"] == b"Almanac team"
    assert meta["Publisher"] == b"Almanac"
    assert meta["Date"] == b"2024-05-17"
    assert meta["Tags"] == b"_category:other;almanac;test"
    assert "Illustration_48x48@1" in meta


def test_illustration_is_a_48x48_png(archive):
    # get_illustration_sizes() is deprecated in favour of a method this binding does not have yet.
    assert archive.has_illustration(48)
    assert [k for k in archive.metadata_keys if k.startswith("Illustration_")] == ["Illustration_48x48@1"]
    data = bytes(archive.get_illustration_item(48).content)
    width, height, pixels = _decode_rgba(data)
    assert (width, height) == (48, 48)
    alphas = pixels[3::4]
    assert 0 in alphas and 255 in alphas  # transparent corners, opaque drawing
    assert len({pixels[i : i + 3] for i in range(0, len(pixels), 4) if pixels[i + 3] == 255}) > 3


# --- defaults and non-ASCII books ----------------------------------------------------


def test_defaults_are_derived_from_the_source(tmp_path, capfd):
    long_intro = "A long introduction " * 10
    src = _write_tree(tmp_path / "src", {"index.md": f"# My Book\n\n{long_intro}\n", "other.md": "# Other\n"})
    report = _quiet_build(capfd, src, tmp_path / "my_book.zim")
    archive = Archive(report.out_path)
    assert archive.get_metadata("Name") == b"my_book"
    assert archive.get_metadata("Title") == b"My Book" and report.title == "My Book"
    description = archive.get_metadata("Description").decode()
    assert len(description) <= 80 and description.startswith("A long introduction") and description.endswith("…")
    assert archive.get_metadata("Date") == datetime.date.today().isoformat().encode()
    assert archive.get_metadata("Language") == b"eng"
    assert archive.get_metadata("Creator") == b"Almanac" and archive.get_metadata("Publisher") == b"Almanac"
    assert archive.get_metadata("Tags") == b"_category:other;almanac"
    assert bytes(archive.get_illustration_item(48).content) == png.almanac_icon(48)


def test_belarusian_book_with_non_ascii_paths(tmp_path, capfd):
    src = _write_tree(
        tmp_path / "src",
        {
            "index.html": '<h1>Даведнік</h1><p>Пачніце з <a href="жывёлы/зубр.md">зубра</a>.</p>',
            "жывёлы/зубр.md": "# Зубр\n\nЗубры жывуць у Белавежскай пушчы.\n\n## Дзе жыве\n\n[Дадому](../index.html)\n",
        },
    )
    report = _quiet_build(capfd, src, tmp_path / "be.zim", language="bel")
    archive = Archive(report.out_path)
    assert archive.check()
    assert archive.get_metadata("Language") == b"bel"
    page = _html(archive, "жывёлы/зубр")
    assert page.startswith('<!DOCTYPE html>\n<html lang="be">')
    assert 'id="дзе-жыве"' in page
    links = [v for tag, attr, v in _Refs(_html(archive, "index")).refs if tag == "a"]
    assert "%D0%B6%D1%8B%D0%B2%D1%91%D0%BB%D1%8B/%D0%B7%D1%83%D0%B1%D1%80" in links
    assert all(archive.has_entry_by_path(_target("index", url)) for url in links)
    assert _search(archive, "Белавежскай") == ["жывёлы/зубр"]
    assert "жывёлы/зубр" in _suggest(archive, "Зубр")


# --- bad input --------------------------------------------------------------------


def _expect_error(capfd, src: Path, out: Path, match: str, **kwargs) -> str:
    with pytest.raises(ZimBuildError, match=match) as caught:
        _quiet_build(capfd, src, out, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "temporary files left"
    return message


def test_missing_source_folder(tmp_path, capfd):
    _expect_error(capfd, tmp_path / "nope", tmp_path / "o.zim", "nope.*does not exist")


def test_no_index_page(tmp_path, capfd):
    src = _write_tree(tmp_path / "src", {"guide/index.md": "# Guide\n", "a.md": "# A\n"})
    _expect_error(capfd, src, tmp_path / "o.zim", "no index.md or index.html")


def test_unreadable_file_is_named(tmp_path, capfd):
    src = _write_tree(tmp_path / "src", {"index.md": "# Home\n"})
    os.symlink(tmp_path / "gone.png", src / "broken.png")
    _expect_error(capfd, src, tmp_path / "o.zim", r"broken\.png: cannot read")


def test_page_that_is_not_utf8_is_named(tmp_path, capfd):
    src = _write_tree(tmp_path / "src", {"index.md": "# Home\n", "old.md": "# Caf\xe9\n".encode("latin-1")})
    _expect_error(capfd, src, tmp_path / "o.zim", r"old\.md: not valid UTF-8")


@pytest.mark.parametrize("language", ["en", "English", "ENG", "eng;fra", ""])
def test_invalid_language_code(tmp_path, capfd, language):
    src = _write_tree(tmp_path / "src", {"index.md": "# Home\n"})
    _expect_error(capfd, src, tmp_path / "o.zim", "ISO 639-3", language=language)


def test_several_languages_are_accepted(tmp_path, capfd):
    src = _write_tree(tmp_path / "src", {"index.md": "# Home\n\nhello\n"})
    report = _quiet_build(capfd, src, tmp_path / "o.zim", language="eng,bel")
    assert Archive(report.out_path).get_metadata("Language") == b"eng,bel"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"date": "17/05/2024"}, "YYYY-MM-DD"),
        ({"date": "2024-02-30"}, "YYYY-MM-DD"),
        ({"description": "x" * 81}, "at most 80"),
        ({"illustration": TINY_PNG}, "2x2; it must be 48x48"),
        ({"illustration": b"GIF89a not a png at all, really not"}, "not a PNG"),
        ({"title": "  "}, "title is empty"),
        ({"creator": "two\nlines"}, "Creator must be one"),
    ],
)
def test_bad_arguments(tmp_path, capfd, kwargs, match):
    src = _write_tree(tmp_path / "src", {"index.md": "# Home\n"})
    _expect_error(capfd, src, tmp_path / "o.zim", match, **kwargs)


@pytest.mark.parametrize(
    "files, match",
    [
        ({"index.md": "[x](missing.md)"}, r"index\.md: link 'missing\.md' does not match"),
        ({"index.md": "# H\n", "a/b.md": "[up](../../x.md)"}, r"b\.md: link '\.\./\.\./x\.md' points outside"),
        ({"index.md": "[g](guide/)", "guide/a.md": "# A\n"}, r"link 'guide/' does not match"),
        ({"index.md": "![x](https://cdn.example.com/a.png)"}, r"loads https://cdn\.example\.com/a\.png"),
        ({"index.html": '<link rel="stylesheet" href="//cdn.example.com/x.css"><h1>H</h1>'}, "from another host"),
        ({"index.md": "# H\n", "s.css": "@import url('https://fonts.example.com/f.css');"}, r"s\.css: loads https"),
        ({"index.md": '<div style="background: url(http://x.example/bg.png)">x</div>'}, "loads http://x"),
        ({"index.md": "# H\n", "index.html": "<h1>H</h1>"}, "would be stored at 'index'"),
        ({"index.md": "# H\n", "_almanac/handbook.css": "x{}"}, "builder's stylesheet"),
    ],
)
def test_bad_sources_are_named(tmp_path, capfd, files, match):
    src = _write_tree(tmp_path / "src", files)
    _expect_error(capfd, src, tmp_path / "o.zim", match)


def test_root_relative_links_to_the_server_are_kept(tmp_path, capfd):
    src = _write_tree(tmp_path / "src", {"index.md": "# H\n\n[maps](/maps) [self](/index.md)\n"})
    archive = Archive(_quiet_build(capfd, src, tmp_path / "o.zim").out_path)
    links = [v for tag, attr, v in _Refs(_html(archive, "index")).refs if tag == "a"]
    assert "/maps" in links and "index" in links


# --- atomic replacement -------------------------------------------------------------------


def test_failed_build_keeps_the_existing_archive(tmp_path, capfd):
    src = _write_tree(tmp_path / "src", {"index.md": "# First\n\nfirst edition\n"})
    out = tmp_path / "out" / "book.zim"
    _quiet_build(capfd, src, out)
    before = out.read_bytes()
    (src / "index.md").write_text("# Second\n\n[broken](nowhere.md)\n", encoding="utf-8")
    with pytest.raises(ZimBuildError, match="nowhere"):
        _quiet_build(capfd, src, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["book.zim"]
    assert Archive(out).get_metadata("Title") == b"First"


def test_successful_build_replaces_the_existing_file(tmp_path, capfd):
    src = _write_tree(tmp_path / "src", {"index.md": "# Fresh\n\nnew text\n"})
    out = tmp_path / "book.zim"
    out.write_bytes(b"an old, broken download")
    report = _quiet_build(capfd, src, out)
    archive = Archive(out)
    assert archive.check() and archive.get_metadata("Title") == b"Fresh"
    assert report.size_bytes == out.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.zim", "src"]


def test_output_inside_the_source_folder_is_not_packed(tmp_path, capfd):
    src = _write_tree(tmp_path / "src", {"index.md": "# H\n\nhello\n"})
    _quiet_build(capfd, src, src / "book.zim")
    _quiet_build(capfd, src, src / "book.zim")
    assert not Archive(src / "book.zim").has_entry_by_path("book.zim")


# --- the PNG writer ----------------------------------------------------------------------


def test_png_writer_round_trips_pixels():
    pixels = bytes((x * 37 + y * 11 + c * 5) % 256 for y in range(3) for x in range(5) for c in range(4))
    assert _decode_rgba(png.encode_png(5, 3, pixels)) == (5, 3, pixels)
    assert png.png_size(png.encode_png(5, 3, pixels)) == (5, 3)


def test_png_writer_rejects_wrong_sizes():
    with pytest.raises(ValueError):
        png.encode_png(2, 2, b"\x00" * 15)
    with pytest.raises(ValueError):
        png.encode_png(0, 2, b"")
    with pytest.raises(ValueError):
        png.png_size(b"GIF89a" + b"\x00" * 40)
