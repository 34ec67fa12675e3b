"""Refuse a state-changing request that a browser says another site, or an opaque origin, sent.

A page of an archive runs sandboxed in an opaque origin (security_headers.py): its requests reach the portal
without cookies, but a form it posts still arrives, and POST /answers (for one) would queue work for a new
device. Browsers mark every request with where it comes from: `Sec-Fetch-Site` (same-origin, same-site,
cross-site, none) and, on a POST, `Origin` ("null" from a sandboxed page). A POST, PUT, PATCH or DELETE marked
as coming from anywhere but the portal itself gets a 403 before any view runs. Clients that are not browsers
(the CLI, curl, scripts on the LAN) send neither header and are not concerned: this guards the people using a
browser, not the box from its LAN (the admin console's login does that).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, request

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ALLOWED_FETCH_SITES = ("same-origin", "none")


def refusal() -> str | None:
    """Why this request is refused, or None to let it through."""
    if request.method in SAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site in ALLOWED_FETCH_SITES else f"the browser marked it as sent from a {site} page"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if origin == "null":
        return "it was sent from a sandboxed page (an archive's article, or a file)"
    if urlsplit(origin).netloc.lower() != request.host.lower():
        return f"it was sent from {origin}, another site"
    return None


def _refuse_cross_site() -> None:
    reason = refusal()
    if reason:
        abort(403, description=f"Refused: {reason}. Changes are made from the portal's own pages.")


def register(app: Flask) -> None:
    app.before_request(_refuse_cross_site)
