"""The one script of ours in an archive's page: added to an HTML article when the reader's frame shows it.

An article is sandboxed in an opaque origin (security_headers.py), so the reader's toolbar cannot read it; the
script static/article_bridge.js tells the toolbar the page's address, title and headings and applies what the
toolbar asks (dark mode, scrolling to a heading), by postMessage. It is added only to a page the browser loads
into a frame (`Sec-Fetch-Dest: iframe`): Kiwix clients, scripts and a page opened on its own get the archive's
bytes unchanged, and /raw/ never changes them.
"""

from __future__ import annotations

import re

from flask import Request

from .. import __version__

SCRIPT_URL = f"/static/article_bridge.js?v={__version__}"
TAG = f'<script src="{SCRIPT_URL}"></script>'.encode()
VARY = "Accept-Encoding, Sec-Fetch-Dest"  # the two representations of an article, for caches
HEAD_SEARCH_BYTES = 64 << 10  # where </head> is looked for; past it the tag goes at the end
_HEAD_END = re.compile(rb"</head\s*>", re.IGNORECASE)


def wanted(request: Request, mimetype: str) -> bool:
    """Is this an HTML article being loaded into a frame? (In any other frame than the reader's, the script
    talks to nobody: it answers only a parent at the portal's origin.)"""
    return mimetype.startswith("text/html") and request.headers.get("Sec-Fetch-Dest") in ("iframe", "frame")


def add_to(body: bytes) -> bytes:
    """The page with the script tag just before its </head>, else at its end (where a parser still runs it)."""
    found = _HEAD_END.search(body, 0, HEAD_SEARCH_BYTES)
    return body + TAG if found is None else body[: found.start()] + TAG + body[found.start() :]
