"""The reader in a real browser: toolbar over an article, contents, dark mode, autocomplete, and the
"view on map" button for an article with coordinates."""

from __future__ import annotations

import json

import pytest

from .cdp import Browser

pytest.importorskip("websocket", reason="websocket-client (dev dependency) drives Chromium")


def _open(b: Browser, url: str) -> None:
    b.call("Page.navigate", url=url)
    # The article is sandboxed (the toolbar cannot read it): it is looked at through DevTools.
    assert b.wait_for(
        "document.readyState === 'complete' && location.pathname.startsWith('/content/')", 30, in_frame=True
    ), b.console_errors()


def test_reader_toolbar_on_an_article(geo_book, live_server, browser):
    from libzim.reader import Archive

    helsinki = next(
        Archive(str(geo_book))._get_entry_by_id(i)
        for i in range(50)
        if Archive(str(geo_book))._get_entry_by_id(i).title == "Helsinki"
    )
    b = browser
    b.watch_everything()
    _open(b, f"{live_server}/viewer#north/{helsinki.path}")
    assert b.evaluate("document.title") == "Helsinki"
    # View on map: appears for a page with coordinates, pointing at its place.
    assert b.wait_for("!document.getElementById('onmap').hidden", 15)
    href = b.evaluate("document.getElementById('onmap').getAttribute('href')")
    assert href.startswith("/maps?lat=60.1") and "lon=24.9" in href
    # Dark mode inverts the article inside the frame, and the choice survives a reload.
    b.evaluate("document.getElementById('dark').click()")
    assert b.wait_for("!!document.getElementById('almanac-dark')", 10, in_frame=True)
    _open(b, f"{live_server}/viewer#north/{helsinki.path}")
    assert b.wait_for("!!document.getElementById('almanac-dark')", 10, in_frame=True)
    b.evaluate("localStorage.removeItem('almanac-dark')")
    # Autocomplete lists titles from /suggest.
    b.evaluate("const i = document.getElementById('find-input'); i.value = 'Tal'; i.dispatchEvent(new Event('input'));")
    assert b.wait_for("document.querySelectorAll('#suggestions li').length > 0", 10)
    assert "Tallinn" in b.evaluate("document.getElementById('suggestions').textContent")
    # The hash follows navigation inside the frame.
    b.frame_evaluate("location.assign('/content/north/index')")
    assert b.wait_for("location.hash === '#north/index'", 10)
    assert b.wait_for("document.getElementById('onmap').hidden", 10)
    assert all(u.startswith(live_server) or u.startswith(("data:", "about:")) for u in b.requested_urls()), json.dumps(
        b.requested_urls()
    )
    assert b.console_errors() == []
