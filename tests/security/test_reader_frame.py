"""The reader's toolbar over a sandboxed article, in a real browser: every feature goes through postMessage
(article_bridge.js in the article, viewer.js in the toolbar), and the toolbar ignores messages from anywhere
but its own frame."""

from __future__ import annotations

import time

from almanac_testing import Portal
from content.zim_builder import build_zim

FILLER = "<p>" + "A paragraph of filler text, long enough to make the page scroll. " * 30 + "</p>"
PAGES = {
    "index.html": "<html><head><title>Guide home</title></head><body><h1>Guide home</h1>"
    '<p><a id="to-second" href="second.html">The second page</a></p>'
    + FILLER * 3
    + "<h2>Water</h2>"
    + FILLER * 3
    + "<h3>Boiling</h3>"
    + FILLER * 3
    + "<h2>Fire</h2>"
    + FILLER * 3
    + '<p id="fetched">not fetched</p><script src="fetch-data.js"></script></body></html>',
    "embed.html": "<html><head><title>Embed</title></head><body><h1>Embed</h1>"
    '<p id="nested-status">waiting</p><iframe src="nested.html"></iframe><script src="embed.js"></script>'
    "</body></html>",
    "nested.html": '<html><head><title>Nested</title></head><body><p>Inside.</p><script src="nested.js"></script>'
    "</body></html>",
    "second.html": "<html><head><title>Second page</title></head><body><h1>Second page</h1>"
    "<h2>Only heading</h2><p>Short.</p></body></html>",
}
# An article's own script that loads a file of its archive with fetch(): cross-origin from its opaque origin.
FETCH_DATA_JS = (
    "fetch('data.json').then(r => r.json()).then(d => { document.getElementById('fetched').textContent = d.word; })"
    ".catch(e => { document.getElementById('fetched').textContent = 'failed: ' + e; });"
)


def _guide(portal: Portal, tmp_path) -> None:
    src = tmp_path / "guide-src"
    src.mkdir()
    for name, body in PAGES.items():
        (src / name).write_text(body)
    (src / "fetch-data.js").write_text(FETCH_DATA_JS)
    (src / "data.json").write_text('{"word": "fetched from the archive"}')
    # An article that frames another page of its archive, which says so to it.
    (src / "nested.js").write_text("parent.postMessage('nested page loaded', '*');")
    (src / "embed.js").write_text(
        "addEventListener('message', e => {"
        " if (typeof e.data === 'string') document.getElementById('nested-status').textContent = e.data; });"
    )
    portal.data.joinpath("archives").mkdir(parents=True, exist_ok=True)
    build_zim(src, portal.data / "archives" / "guide.zim", title="Guide", description="Pages with headings")


def _open(b, url: str) -> None:
    b.call("Page.navigate", url=url)
    assert b.wait_for("document.readyState === 'complete' && !!document.body", 30, in_frame=True)


def test_toolbar_features_through_postmessage(tmp_path, browser):
    portal = Portal(tmp_path, "server:\n  host: 127.0.0.1\n", books=())
    _guide(portal, tmp_path)
    with portal:
        b = browser
        b.call("Page.enable")
        b.call("Runtime.enable")
        _open(b, f"{portal.url}/viewer#guide/index")
        # Title and contents come from the article's report.
        assert b.wait_for("document.title === 'Guide home'", 10), b.evaluate("document.title")
        assert b.wait_for("document.querySelectorAll('#toc li').length === 3", 10)
        assert b.evaluate(
            "[...document.querySelectorAll('#toc li')].map(li => li.className + ':' + li.textContent)"
        ) == [
            "l2:Water",
            "l3:Boiling",
            "l2:Fire",
        ]
        assert b.evaluate("document.getElementById('toc-toggle').disabled") is False
        # The toolbar cannot read the article: it is in an opaque origin.
        assert b.evaluate(
            "(() => { try { return document.getElementById('page').contentDocument; }"
            " catch (e) { return 'refused'; } })()"
        ) in (None, "refused")
        assert b.frame_evaluate("String(self.origin)") == "null"
        # A contents entry scrolls the article to its heading.
        assert b.frame_evaluate("scrollY") == 0
        b.evaluate("document.getElementById('toc-toggle').click(); document.querySelectorAll('#toc a')[2].click()")
        assert b.wait_for(
            "Math.abs(document.querySelectorAll('h2, h3')[2].getBoundingClientRect().top) < 5", 10, in_frame=True
        ), b.frame_evaluate("scrollY")
        assert b.evaluate("document.getElementById('toc').hidden") is True
        # The article's own fetch() of a file of its archive works from its opaque origin (CORS without cookies).
        assert b.wait_for(
            "document.getElementById('fetched').textContent === 'fetched from the archive'", 10, in_frame=True
        ), b.frame_evaluate("document.getElementById('fetched').textContent")
        # Dark mode on, then off, in the article.
        b.evaluate("document.getElementById('dark').click()")
        assert b.wait_for("!!document.getElementById('almanac-dark')", 10, in_frame=True)
        assert b.evaluate("document.documentElement.classList.contains('dark')")
        b.evaluate("document.getElementById('dark').click()")
        assert b.wait_for("!document.getElementById('almanac-dark')", 10, in_frame=True)
        # A link followed inside the article: the hash, title and contents follow.
        b.frame_evaluate("document.getElementById('to-second').click()")
        assert b.wait_for("location.hash === '#guide/second'", 10), b.evaluate("location.hash")
        assert b.wait_for("document.title === 'Second page'", 10)
        assert b.evaluate("[...document.querySelectorAll('#toc li')].map(li => li.textContent)") == ["Only heading"]
        # The hash drives the frame.
        b.evaluate("location.hash = '#guide/index'")
        assert b.wait_for("location.pathname === '/content/guide/index'", 10, in_frame=True)
        assert b.wait_for("document.title === 'Guide home'", 10)
        # An article may frame another page of its archive (the sandbox, not frame-ancestors, guards those).
        b.evaluate("location.hash = '#guide/embed'")
        assert b.wait_for(
            "document.getElementById('nested-status').textContent === 'nested page loaded'", 10, in_frame="/embed"
        ), b.frame_evaluate("document.getElementById('nested-status').textContent", "/embed")
        b.evaluate("location.hash = '#guide/second'")
        assert b.wait_for("document.title === 'Second page'", 10)
        # A message that does not come from the frame is ignored: this window, posing as the article.
        b.evaluate(
            "window.postMessage({almanac: 1, type: 'page', path: '/content/guide/forged', title: 'Forged',"
            " headings: [{level: 2, text: 'Forged'}]}, '*')"
        )
        time.sleep(0.5)  # a message is delivered in a task of its own: long past
        assert b.evaluate("document.title") != "Forged" and "forged" not in b.evaluate("location.hash")
        # From the frame, a path with dot segments (no browser location has them) is ignored too.
        b.frame_evaluate(
            "parent.postMessage({almanac: 1, type: 'page', path: '/content/guide/../../admin/x', title: 'Dots',"
            " headings: []}, '*')"
        )
        time.sleep(0.5)
        assert b.evaluate("document.title") != "Dots" and "admin" not in b.evaluate("location.hash")
        # (The same message with a plain path is taken: the frame is the one source the toolbar listens to.)
        b.frame_evaluate(
            "parent.postMessage({almanac: 1, type: 'page', path: '/content/guide/second', title: 'From the frame',"
            " headings: []}, '*')"
        )
        assert b.wait_for("document.title === 'From the frame'", 10)
        # Random opens an article of the book in the frame.
        b.evaluate("document.getElementById('random').click()")
        assert b.wait_for("/^#guide\\/(index|second|embed|nested)$/.test(location.hash) && document.title !== ''", 10)
