"""Every conditional and partial response goes through here: ETag, If-None-Match -> 304, Range -> 206,
gzip for compressible types, Cache-Control. Headers are parsed with werkzeug's own helpers."""

from __future__ import annotations

import gzip
import hashlib

from flask import Request, Response
from werkzeug.http import parse_etags, parse_range_header

COMPRESSIBLE = (
    "text/",
    "application/javascript",
    "application/json",
    "application/xml",
    "image/svg+xml",
    "application/x-protobuf",
    "application/geo+json",
)
MIN_GZIP_BYTES = 1024


def make_etag(*parts: object) -> str:
    return hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def etag_matches(header: str | None, etag: str) -> bool:
    """Does an If-None-Match or If-Range header name this ETag (weakly, in either encoding, or `*`)?

    The gzipped representation's ETag is `etag-gz`; a cache holding either one is up to date.
    """
    tags = parse_etags(header)
    return tags.contains_weak(etag) or tags.contains_weak(f"{etag}-gz")


def byte_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """[start, stop) of the one byte range asked for; None to ignore the header (malformed, or several
    ranges: serving the whole body is allowed and simpler); False when it cannot be satisfied."""
    asked = parse_range_header(header)
    if asked is None or asked.units != "bytes" or len(asked.ranges) != 1:
        return None
    return asked.range_for_length(size) or False


def send_bytes(
    request: Request,
    body: bytes,
    mimetype: str,
    etag: str,
    max_age: int = 3600,
    extra_headers: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """A full, partial (206) or not-modified (304) response for an in-memory body."""
    headers = {"Cache-Control": f"public, max-age={max_age}", "Vary": "Accept-Encoding"}
    headers.update(extra_headers or {})
    compressible = mimetype.startswith(COMPRESSIBLE) and len(body) >= MIN_GZIP_BYTES
    if not compressible:
        headers["Accept-Ranges"] = "bytes"

    if etag_matches(request.headers.get("If-None-Match"), etag):
        return Response(status=304, headers={**headers, "ETag": f'"{etag}"'})

    range_header = request.headers.get("Range")
    if range_header and not compressible and status == 200:
        span = byte_range(range_header, len(body))
        if span is False:
            return Response(status=416, headers={**headers, "Content-Range": f"bytes */{len(body)}"})
        if span and (not request.headers.get("If-Range") or etag_matches(request.headers.get("If-Range"), etag)):
            start, stop = span
            return Response(
                body[start:stop],
                status=206,
                mimetype=mimetype,
                headers={**headers, "ETag": f'"{etag}"', "Content-Range": f"bytes {start}-{stop - 1}/{len(body)}"},
            )

    if compressible and "gzip" in request.headers.get("Accept-Encoding", ""):
        # A distinct ETag for the gzipped representation, as RFC 9110 asks of different encodings.
        return Response(
            gzip.compress(body, compresslevel=5),
            status=status,
            mimetype=mimetype,
            headers={**headers, "Content-Encoding": "gzip", "ETag": f'"{etag}-gz"'},
        )
    return Response(body, status=status, mimetype=mimetype, headers={**headers, "ETag": f'"{etag}"'})
