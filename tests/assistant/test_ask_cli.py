"""`almanac ask` with no model: the same passages the page finds, printed as the answer."""

from __future__ import annotations

import json
import shutil

import pytest

from almanac_testing import almanac, free_port

QUESTION = "How do I add zim files to the library?"


@pytest.fixture
def config(data_dir, shared_library_db):
    from appliance.config import load_config

    # A port nothing listens on: the state of a fresh install with no model.
    (data_dir.parent / "config.yaml").write_text(
        f"server:\n  host: 127.0.0.1\nassistant:\n  url: http://127.0.0.1:{free_port()}\n  passages: 3\n"
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared_library_db, data_dir / "almanac.db")  # the books the `app` fixture has
    return load_config()


def test_with_no_model_the_passages_are_the_answer(config, client):
    page = client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()
    done = almanac("ask", QUESTION, "--json")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["question"] == QUESTION and got["answer"] is None and got["finish_reason"] is None
    assert got["passages"] == page["passages"] and 1 <= len(got["passages"]) <= 3
    assert "No answer from a model (no model server answers at http://127.0.0.1:" in got["message"]

    text = almanac("ask", QUESTION)
    assert text.returncode == 0, text.stderr
    assert "No answer from a model" in text.stderr
    for p in got["passages"]:
        assert f"[{p['n']}] {p['title']} ({p['book']}: {p['url']})\n    {p['text']}" in text.stdout


def test_book_choice_nothing_found_and_bad_questions(config):
    one = json.loads(almanac("ask", "Італьянская мова", "--book", "wikibooks_be_all_nopic_2017-02", "--json").stdout)
    assert one["passages"] and {p["book"] for p in one["passages"]} == {"wikibooks_be_all_nopic_2017-02"}
    assert json.loads(almanac("ask", "Італьянская мова", "--book", "example", "--json").stdout)["passages"] == []
    nothing = almanac("ask", "quantum chromodynamics")
    assert nothing.returncode == 0 and nothing.stdout.strip() == "Nothing in the library matches this question."
    unknown = almanac("ask", "wikipedia", "--book", "nosuchbook")
    assert unknown.returncode == 1 and "none of the books nosuchbook is in this library" in unknown.stderr
    bad = almanac("ask", "the of")
    assert bad.returncode == 1 and "no words" in bad.stderr


def test_almanac_ask_says_when_the_library_does_not_cover_the_question(tmp_path):
    from almanac_testing import Portal

    portal = Portal(tmp_path, f"assistant:\n  url: http://127.0.0.1:{free_port()}\n")
    out = almanac("ask", "What is the population of the library of Alexandria?", env=portal.env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "The library does not cover this question." and lines[1] == "The nearest titles:"
    assert "(example: /content/example/" in lines[2]
