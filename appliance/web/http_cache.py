"""Every conditional and partial response goes through here: ETag, If-None-Match -> 304, Range -> 206,
gzip for compressible types, Cache-Control.
"""
from __future__ import annotations

import gzip
import hashlib

from flask import Request, Response

COMPRESSIBLE = ("text/", "application/javascript", "application/json", "application/xml", "image/svg+xml",
                "application/x-protobuf", "application/geo+json")
MIN_GZIP_BYTES = 1024


def make_etag(*parts: object) -> str:
    return hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return etag in tags or f"{etag}-gz" in tags


def _parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """(start, end) inclusive for one satisfiable byte range; None to ignore; False if unsatisfiable."""
    if not header.startswith("bytes=") or "," in header:
        return None  # multi-range: serving the whole body is allowed and simpler
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return False
            return max(0, size - length), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)


def send_bytes(request: Request, body: bytes, mimetype: str, etag: str, max_age: int = 3600,
               extra_headers: dict[str, str] | None = None, status: int = 200) -> Response:
    """A full, partial (206) or not-modified (304) response for an in-memory body."""
    headers = {"Cache-Control": f"public, max-age={max_age}", "Vary": "Accept-Encoding"}
    headers.update(extra_headers or {})
    compressible = mimetype.startswith(COMPRESSIBLE) and len(body) >= MIN_GZIP_BYTES
    if not compressible:
        headers["Accept-Ranges"] = "bytes"

    if _etag_matches(request.headers.get("If-None-Match"), etag):
        return Response(status=304, headers={**headers, "ETag": f'"{etag}"'})

    range_header = request.headers.get("Range")
    if range_header and not compressible and status == 200:
        span = _parse_range(range_header, len(body))
        if span is False:
            return Response(status=416, headers={**headers, "Content-Range": f"bytes */{len(body)}"})
        if span:
            start, end = span
            if not request.headers.get("If-Range") or _etag_matches(request.headers.get("If-Range"), etag):
                return Response(body[start:end + 1], status=206, mimetype=mimetype, headers={
                    **headers, "ETag": f'"{etag}"', "Content-Range": f"bytes {start}-{end}/{len(body)}"})

    if compressible and "gzip" in request.headers.get("Accept-Encoding", ""):
        # A distinct ETag for the gzipped representation, as RFC 9110 asks of different encodings.
        return Response(gzip.compress(body, compresslevel=5), status=status, mimetype=mimetype,
                        headers={**headers, "Content-Encoding": "gzip", "ETag": f'"{etag}-gz"'})
    return Response(body, status=status, mimetype=mimetype, headers={**headers, "ETag": f'"{etag}"'})
