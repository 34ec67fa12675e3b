"""One HTTP request of a download: GET from a byte offset with ``Range``, written into the part file.

It returns when the body ends or raises one of the errors below, which tell the caller what to do next:
retry the same mirror (the connection dropped, timed out or the server answered 5xx), try another mirror
(404/403/410), or start the file again from byte zero (the server ignored the range, or the file changed).
"""

from __future__ import annotations

import http.client
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

USER_AGENT = "Almanac-downloader/1"
BUFFER = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_TOTAL_ONLY = re.compile(r"bytes \*/(\d+)")


class Retryable(Exception):
    """The connection failed or the server had a passing problem: try this mirror again."""


class MirrorFailed(Exception):
    """This mirror will not serve the file (404, 403, 410, a bad answer): try the next one."""


class StartOver(Exception):
    """What is on disk cannot be continued from this server: truncate and start at byte zero."""


@dataclass
class Answer:
    status: int
    total: int | None  # the whole file's size, when the server said it
    etag: str
    complete: bool  # the body ran to the end of the file


def open_range(url: str, offset: int, *, etag: str = "", timeout_s: float = 30.0):
    """The response to ``GET url`` from ``offset`` (206 or, from zero, 200), and what it says of the file."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if etag:
            headers["If-Range"] = etag  # a changed file comes back whole (200), not spliced
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        total = None
        match = _TOTAL_ONLY.match(e.headers.get("Content-Range", "") if e.headers else "")
        if match:
            total = int(match.group(1))
        e.close()
        if e.code == 416:
            raise RangeNotSatisfiable(total) from None
        if e.code in (408, 425, 429) or e.code >= 500:
            raise Retryable(f"HTTP {e.code} from {url}") from None
        raise MirrorFailed(f"HTTP {e.code} from {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise Retryable(f"{url}: {_reason(e)}") from None
    status = response.status
    etag_now = response.headers.get("ETag", "") or ""
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            response.close()
            raise MirrorFailed(
                f"{url}: the server answered a different range than asked "
                f"({response.headers.get('Content-Range')!r} for bytes={offset}-)"
            )
        total = None if match.group(3) == "*" else int(match.group(3))
        return response, Answer(206, total, etag_now, False)
    if status == 200:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if offset:
            response.close()
            raise StartOver(f"{url} ignored the range (or the file changed): starting it again")
        return response, Answer(200, total, etag_now, False)
    response.close()
    raise MirrorFailed(f"{url}: unexpected HTTP {status}")


class RangeNotSatisfiable(Exception):
    def __init__(self, total: int | None):
        super().__init__(f"HTTP 416 (file size {total})")
        self.total = total


def copy_body(response, answer: Answer, offset: int, write: Callable[[memoryview], None], url: str) -> int:
    """Read the body into ``write`` (which also checks pause/cancel); return the new offset.

    A body shorter than the server promised is a dropped connection (Retryable), with everything that did
    arrive already written, so the next request continues from there."""
    expected_end = answer.total
    if answer.status == 200 and answer.total is None:
        expected_end = None
    try:
        while True:
            try:
                # read1: what the socket has, up to BUFFER — a slow server still shows progress and can
                # be paused, where readinto would wait for a whole buffer.
                data = response.read1(BUFFER)
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise Retryable(f"{url}: connection lost at byte {offset} ({_reason(e)})") from None
            if not data:
                break
            write(memoryview(data))
            offset += len(data)
    finally:
        response.close()
    if expected_end is not None and offset < expected_end:
        raise Retryable(f"{url}: connection closed at byte {offset} of {expected_end}")
    answer.complete = True
    return offset


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "no data within the timeout"
    return str(e) or type(e).__name__
