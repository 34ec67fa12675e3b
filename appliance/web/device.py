"""The device a request comes from: a random id in an HttpOnly cookie, made on the first request that needs
one. It is what keeps a phone's conversations and waiting answers its own, with no login."""

from __future__ import annotations

import re
import secrets

from flask import after_this_request, g, request

COOKIE = "almanac_device"
MAX_AGE_S = 10 * 365 * 86400
_VALID = re.compile(r"[A-Za-z0-9_-]{22,64}")


def known_device() -> str | None:
    """This request's device id if it sent a valid one (or one was made for it); never makes one."""
    if "almanac_device" in g:
        return g.almanac_device
    value = request.cookies.get(COOKIE, "")
    return value if _VALID.fullmatch(value) else None


def device() -> str:
    """This request's device id; a new one is made, and set in the response's cookie, when it has none."""
    value = known_device()
    if value is None:
        value = secrets.token_urlsafe(24)

        @after_this_request
        def remember(response):
            response.set_cookie(COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="Lax", path="/")
            return response

    g.almanac_device = value
    return value
