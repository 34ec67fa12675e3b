"""WSGI middleware for the plain case of a tile request, installed by the app factory in front of Flask."""

from __future__ import annotations

from .http_cache import etag_matches
from .security_headers import headers_for
from .tiles import TILE_MAX_AGE, Tile, answer_tile

PREFIX = "/maps/tiles/"


class TileFastPath:
    """Answers GET/HEAD of /maps/tiles/NAME/Z/X/Y.EXT with a tile to send (200 or 304, no Range) without
    Flask's request and response objects: about three times less work a tile. Anything else (errors, empty
    tiles, ranges, other URLs) falls through to Flask, whose view gives the same answers the long way, from
    the same answer_tile()."""

    def __init__(self, wsgi_app, registry, open_to_all=lambda: True):
        self.wsgi_app = wsgi_app
        self.registry = registry
        self.open_to_all = open_to_all  # False (admin.login_to_read): every tile goes through Flask's login check

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if (
            not path.startswith(PREFIX)
            or not self.open_to_all()
            or environ.get("REQUEST_METHOD") not in ("GET", "HEAD")
            or "HTTP_RANGE" in environ
        ):
            return self.wsgi_app(environ, start_response)
        answer = self._answer(path, environ)
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, headers, body = answer
        start_response(status, headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _answer(self, path: str, environ):
        parts = path[len(PREFIX) :].split("/")
        if len(parts) != 4:
            return None
        name, z, x, last = parts
        y, dot, ext = last.partition(".")
        if not (dot and z.isdigit() and x.isdigit() and y.isdigit()):
            return None
        tile = answer_tile(self.registry, name, int(z), int(x), int(y), ext, environ.get("HTTP_ACCEPT_ENCODING", ""))
        if not isinstance(tile, Tile) or tile.status != 200:
            return None
        headers = [
            ("Cache-Control", f"public, max-age={TILE_MAX_AGE}"),
            ("Vary", "Accept-Encoding"),
            *tile.headers.items(),
            ("ETag", f'"{tile.etag}"'),
            *((k, v) for k, v in headers_for(path) if k not in tile.headers),  # as Flask's after_request adds
        ]
        if etag_matches(environ.get("HTTP_IF_NONE_MATCH"), tile.etag):
            return "304 NOT MODIFIED", headers, b""
        headers += [
            ("Content-Type", tile.mimetype),
            ("Content-Length", str(len(tile.body))),
            ("Accept-Ranges", "bytes"),
        ]
        return "200 OK", headers, tile.body
