"""A static file server with HTTP Range and injected faults, run as its own process by the download tests
and the download benchmark:

    python tests/fault_server.py ROOT PORT FAULTS.json LOG

FAULTS.json is read again on every request, so a test changes the faults of a running server. It maps a
path ("/book.zim") to any of:
    drop_after: N     close the connection after N body bytes of each answer
    drops: K          ... but only the first K times (then serve normally)
    rate: B           send at most B bytes per second (a very slow server)
    stall_after: N    send the file up to byte N, then nothing more (until the client gives up)
    corrupt_at: N     flip the byte at offset N (a wrong checksum)
    status: S         answer S (404, 500...) with no body
    status_times: K   ... only the first K times
    ignore_range: 1   answer 200 with the whole file to a Range request
    range_416: K      answer the first K Range requests with 416
    epoch: E          counts (drops, status_times, range_416) start again for each new E
Each answer is logged to LOG as one JSON line: path, range start, status, body bytes sent.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 1 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counters: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    def log_message(self, *args):  # quiet: the JSON log is what the tests read
        pass

    def _count(self, path: str, what: str, epoch=None) -> int:
        with self.lock:
            n = self.counters.get((path, what, epoch), 0)
            self.counters[(path, what, epoch)] = n + 1
            return n

    def _log(self, **row) -> None:
        with self.lock, open(self.server.log_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        try:
            faults = json.loads(Path(self.server.faults_path).read_text() or "{}").get(path, {})
        except (OSError, ValueError):
            faults = {}
        file = Path(self.server.root) / path.lstrip("/")
        range_header = self.headers.get("Range", "")
        start = int(range_header[6:].split("-")[0]) if range_header.startswith("bytes=") else None
        status = faults.get("status")
        if status and self._count(path, "status", faults.get("epoch")) < faults.get("status_times", 10**9):
            return self._bare(status, path, start)
        if not file.is_file():
            return self._bare(404, path, start)
        size = file.stat().st_size
        if (
            start is not None
            and faults.get("range_416")
            and self._count(path, "416", faults.get("epoch")) < faults["range_416"]
        ):
            return self._bare(416, path, start, {"Content-Range": f"bytes */{size}"})
        if start is not None and faults.get("ignore_range"):
            start = None
        if start is not None and start >= size:
            return self._bare(416, path, start, {"Content-Range": f"bytes */{size}"})
        first = start or 0
        self.send_response(206 if start is not None else 200)
        self.send_header("Content-Length", str(size - first))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{size:x}-{int(file.stat().st_mtime):x}"')
        if start is not None:
            self.send_header("Content-Range", f"bytes {first}-{size - 1}/{size}")
        self.end_headers()
        limit = size - first
        drop = faults.get("drop_after")
        if drop is not None and self._count(path, "drop", faults.get("epoch")) < faults.get("drops", 10**9):
            limit = min(limit, drop)
        stall = faults.get("stall_after")
        rate = faults.get("rate")
        corrupt = faults.get("corrupt_at")
        sent = 0
        began = time.monotonic()
        try:
            with open(file, "rb") as f:
                if stall is None and rate is None and corrupt is None:
                    sent = self.connection.sendfile(f, first, limit)  # the kernel copies: a fast server
                f.seek(first + sent)
                while sent < limit:
                    if stall is not None and first + sent >= stall:
                        time.sleep(3600)
                    n = min(CHUNK, limit - sent)
                    if rate:
                        n = min(n, max(1, rate // 20))
                    if stall is not None and stall > first + sent:
                        n = min(n, stall - first - sent)
                    data = f.read(n)
                    if not data:
                        break
                    if corrupt is not None and first + sent <= corrupt < first + sent + len(data):
                        i = corrupt - first - sent
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                    self.wfile.write(data)
                    sent += len(data)
                    if rate:
                        ahead = sent / rate - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(ahead)
        except OSError:  # the client went away (pause, cancel, a timeout): log what was sent
            pass
        self._log(path=path, start=start, status=206 if start is not None else 200, sent=sent)
        if sent < size - first:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(2)
            except OSError:
                pass

    def _bare(self, status: int, path: str, start, headers: dict | None = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._log(path=path, start=start, status=status, sent=0)


def main(argv: list[str]) -> int:
    root, port, faults, log = argv
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    server.root, server.faults_path, server.log_path = root, faults, log
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
