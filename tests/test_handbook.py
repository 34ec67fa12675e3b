"""The embedded default: the Almanac Handbook built from docs/ by our own builder, served by the portal."""

from __future__ import annotations

import subprocess
import sys

import pytest
from libzim.reader import Archive
from libzim.search import Query, Searcher

from almanac_testing import ROOT, almanac


@pytest.fixture(scope="module")
def handbook(tmp_path_factory):
    out = tmp_path_factory.mktemp("hb") / "almanac-handbook.zim"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "content",
            "build-zim",
            str(ROOT / "docs"),
            str(out),
            "--title",
            "Almanac Handbook",
            "--name",
            "almanac-handbook",
            "--description",
            "How to use this Almanac box",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


def test_handbook_passes_libzim_check(handbook):
    archive = Archive(str(handbook))
    assert archive.check()
    assert archive.get_metadata("Title").decode() == "Almanac Handbook"
    assert archive.get_metadata("Name").decode() == "almanac-handbook"
    assert archive.has_illustration(48)
    assert archive.main_entry.get_item().path == "index"


def test_handbook_full_text_index_works(handbook):
    archive = Archive(str(handbook))
    assert archive.has_fulltext_index
    for word, page in (("wheelhouse", "install"), ("journalctl", "troubleshooting")):
        found = Searcher(archive).search(Query().set_query(word))
        paths = list(found.getResults(0, 10))
        assert page in paths, (word, paths)


def test_every_docs_page_is_in_the_handbook(handbook):
    archive = Archive(str(handbook))
    for md in (ROOT / "docs").glob("*.md"):
        entry = archive.get_entry_by_path(md.stem)
        assert b"<html" in bytes(entry.get_item().content)[:200].lower()


def test_portal_serves_the_handbook(handbook, data_dir, app, client):
    library = app.extensions["almanac"].library
    book = library.add(handbook)
    assert book.name == "almanac-handbook" and book.title == "Almanac Handbook"
    r = client.get("/content/almanac-handbook/")
    assert r.status_code == 302 and r.headers["Location"] == "/content/almanac-handbook/index"
    page = client.get("/content/almanac-handbook/index").get_data(as_text=True)
    assert "Almanac" in page
    hits = client.get("/search?pattern=wheelhouse&content=almanac-handbook&format=json").get_json()
    assert any(h["path"] == "install" for h in hits)
    assert client.get("/suggest?content=almanac-handbook&term=Troub").get_json()[0]["path"] == "troubleshooting"
    # An exact title, typed in lower case, comes first even where other pages mention the word more.
    first = client.get("/search?pattern=configuration&content=almanac-handbook&format=json").get_json()[0]
    assert first["path"] == "configuration"
    first = client.get("/search?pattern=the%20assistant&content=almanac-handbook&format=json").get_json()[0]
    assert first["path"] == "assistant"  # titled "The assistant"


def test_build_zim_cli_errors_are_one_line(tmp_path):
    done = almanac("content", "build-zim", str(tmp_path / "nope"), str(tmp_path / "x.zim"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.md").write_text("# A\n")
    done = almanac("content", "build-zim", str(tmp_path / "src"), str(tmp_path / "x.zim"))
    assert done.returncode == 1 and "index" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.zim").exists()
