"""The security headers of every response, chosen by its path: one after_request for Flask, and headers_for()
for the tile fast path, which answers without Flask.

Archive bytes (ZIM articles, their scripts and media, map tiles and files) are written by others. They are
served with a `Content-Security-Policy: sandbox` that leaves out allow-same-origin, so a page of an archive runs
in an opaque origin of its own: it sends none of the portal's cookies, reads no portal page, and cannot touch
the reader's toolbar (which talks to it by postMessage only, see static/article_bridge.js).
"""

from __future__ import annotations

from flask import Flask, Response, request

# Every URL that answers with bytes taken from an archive (see routes.py and maps.ROUTES).
ARCHIVE_PREFIXES = (
    "/content/",
    "/raw/",
    "/catalog/illustration/",
    "/catalog/download/",
    "/maps/tiles/",
    "/maps/archives/",
)
ADMIN_PREFIX = "/admin/"

# What an article may still do in its opaque origin: run its scripts and forms, open popups (which leave the
# sandbox: a popup of a portal page is the portal, a popup of an archive page is sandboxed by its own header),
# show alert()/confirm() and save downloads. Not allow-same-origin, not allow-top-navigation.
ARCHIVE_SANDBOX = (
    "sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-modals allow-downloads"
)
# No frame-ancestors, no X-Frame-Options: an article may frame other pages of its archive, and their ancestors
# then include the article's opaque origin, which 'self' does not match. Framing a sandboxed page gains another
# site nothing: the page can do nothing as the portal.
ARCHIVE_CSP = ARCHIVE_SANDBOX

ALWAYS = (("Referrer-Policy", "same-origin"),)
NOSNIFF = (("X-Content-Type-Options", "nosniff"),)
PORTAL = (
    ("X-Frame-Options", "SAMEORIGIN"),  # the reader frames archive pages; no other site frames the portal
    ("Content-Security-Policy", "frame-ancestors 'self'"),
)
ADMIN = (
    ("X-Frame-Options", "DENY"),  # the admin console is never framed, not even by the portal
    ("Content-Security-Policy", "frame-ancestors 'none'"),
)
ARCHIVE = (
    ("Content-Security-Policy", ARCHIVE_CSP),
    # An article in its opaque origin loads its own fonts, modules and fetch()ed files cross-origin: allowed,
    # without credentials (a request that sends cookies is refused by the browser under `*`).
    ("Access-Control-Allow-Origin", "*"),
)


def is_archive_path(path: str) -> bool:
    return path.startswith(ARCHIVE_PREFIXES)


def headers_for(path: str) -> tuple[tuple[str, str], ...]:
    """The security headers of a response to `path` (a request's path, not its query)."""
    if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
        return ALWAYS + NOSNIFF + ADMIN
    if is_archive_path(path):
        # No nosniff: older archives label their scripts text/plain, which nosniff would refuse to run (and the
        # browser's blocking of cross-origin replies then drops them too). A page sniffed as HTML is still
        # sandboxed by the policy above, whatever its type.
        return ALWAYS + ARCHIVE
    return ALWAYS + NOSNIFF + PORTAL


def _add_headers(response: Response) -> Response:
    for name, value in headers_for(request.path):
        own = response.headers.get(name) if name == "Content-Security-Policy" else None
        if own and value.startswith("frame-ancestors"):
            # A portal or admin view's own policy is kept, with frame-ancestors added where it has none.
            value = own if "frame-ancestors" in own else f"{own}; {value}"
        response.headers[name] = value
    return response


def register(app: Flask) -> None:
    app.after_request(_add_headers)
