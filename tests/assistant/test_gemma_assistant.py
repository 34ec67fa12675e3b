"""The assistant end to end with a real pretrained model: PyPI's Gemma 3 270M GGUF, converted by
`llm_engine.convert`, served by `almanac model serve`, asked by a real portal over the shared archives.

A 270M base model writes what a 270M base model writes; what is checked is what must hold for any model: the
answer streams in pieces, it comes back in the question's language, and no citation that names no passage
survives on the page.
"""

from __future__ import annotations

import re
import urllib.parse
from html.parser import HTMLParser

import pytest

from almanac_testing import Device, Portal, sse_events, start_model_server

QUESTION = "How do I add zim files to the library?"


class _AnswerDiv(HTMLParser):
    """The text of the page's #answer and the (href, title) of its citation links."""

    def __init__(self):
        super().__init__()
        self.depth, self.text, self.links = 0, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth:
            self.depth += tag != "br"
            if tag == "a":
                self.links.append((a.get("href"), a.get("title")))
        elif a.get("id") == "answer":
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)


@pytest.fixture(scope="module")
def gemma_portal(gemma, tmp_path_factory):
    model, url = start_model_server(gemma[0])
    root = tmp_path_factory.mktemp("gemma-portal")
    config = (
        f"server:\n  host: 127.0.0.1\nassistant:\n  url: {url}\n  max_tokens: 16\n  temperature: 0\n  passages: 2\n"
    )
    portal = Portal(root, config)
    try:
        portal.start()
        yield portal
    finally:
        portal.stop()
        model.kill()
        model.wait(10)


@pytest.fixture(scope="module")
def streamed(gemma_portal) -> list:
    """The question asked once through the page's stream: its server-sent events."""
    status, text = Device().request(
        f"{gemma_portal.url}/assistant/stream", "POST", {"q": QUESTION}, accept="text/event-stream"
    )
    assert status == 200
    return sse_events(text)


def test_gemma_answers_streamed_in_the_questions_language(streamed):
    events = streamed
    names = [n for n, _ in events]
    assert names[0] == "passages" and names[-1] == "done" and events[-1][1]["answered"] is True
    deltas = [d["text"] for n, d in events if n == "delta"]
    assert len(deltas) >= 4  # streamed token by token, not in one piece
    answer = "".join(deltas)
    letters = [c for c in answer if c.isalpha()]
    assert len(letters) >= 10, answer
    assert sum(c.isascii() for c in letters) / len(letters) > 0.9, answer  # English, as asked
    assert len(re.findall(r"[A-Za-z]{2,}", answer)) >= 3, answer


def test_no_invalid_citation_survives_on_the_page(gemma_portal, streamed):
    from appliance.assistant.citations import clean

    passages = streamed[0][1]
    answer = "".join(d["text"] for n, d in streamed if n == "delta")
    assert answer and passages
    # The page without JavaScript: the same question, the same greedy answer, written whole into the HTML.
    status, html = Device().request(
        f"{gemma_portal.url}/assistant?q={urllib.parse.quote(QUESTION)}", accept="text/html"
    )
    assert status == 200
    div = _AnswerDiv()
    div.feed(html)
    shown = "".join(div.text)
    assert all(1 <= int(n) <= len(passages) for n in re.findall(r"\[(\d+)\]", shown)), shown
    assert shown == clean(answer, len(passages))  # only the invalid citations went, nothing else
    by_url = {p["url"]: p["text"] for p in passages}
    assert all(href in by_url and title == by_url[href] for href, title in div.links), div.links
