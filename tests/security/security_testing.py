"""Helpers of the security tests: a witness HTTP server that scripts in the browser report to, and a snapshot of
the portal's state database."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Derived indexes the portal builds on its own while pages are read (the reader's "view on map" indexes a
# book's coordinates on first use): not state a request of a user changes.
DERIVED_TABLES = ("article_coords", "article_coords_claims", "article_coords_books")


class Witness:
    """A tiny HTTP server on another port of 127.0.0.1: every POST body is kept as a report (JSON)."""

    def __init__(self):
        reports: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    reports.append(json.loads(body))
                except ValueError:
                    reports.append({"unparsed": body.decode("utf-8", "replace")})
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.reports = reports
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/report"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.reports) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.reports) >= count, f"the script did not report ({len(self.reports)} of {count} reports)"
        return self.reports[:count]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def state_snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table of the state database (derived indexes left out), to compare before/after."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {
            t: sorted(map(tuple, con.execute(f'SELECT * FROM "{t}"')), key=repr)
            for t in tables
            if t not in DERIVED_TABLES
        }
    finally:
        con.close()
