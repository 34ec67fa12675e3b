"""A local stand-in for a Hugging Face Hub (or a mirror of one), speaking the few endpoints that
``huggingface_hub.snapshot_download`` uses, run as its own process by the model pull tests:

    python tests/hf_hub_server.py ROOT PORT LOG

ROOT holds one folder per repository, ``ROOT/ORG/NAME/`` with its files. Answered:
    GET  /api/models/ORG/NAME[/revision/REV]      model info: id, sha (the commit), siblings
    GET  /api/models/ORG/NAME/tree/REV[/PATH]     the file list: type, path, size, oid, lfs {oid, size}
    HEAD|GET /ORG/NAME/resolve/REV/FILE           the file, with ETag, X-Repo-Commit, Content-Length (and
                                                  X-Linked-Etag / X-Linked-Size for the large "LFS" files)
A file named in ``ROOT/ORG/NAME/.broken`` (one per line) is served cut in half: a download that fails.
Each request is logged to LOG as one JSON line (method, path).
"""

from __future__ import annotations

import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf")


def _commit(repo: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(_files(repo)):
        h.update(f.encode() + hashlib.sha256((repo / f).read_bytes()).digest())
    return h.hexdigest()


def _files(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and not p.name.startswith("."))


def _oid(data: bytes) -> str:  # git's blob id
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _log(self) -> None:
        with open(self.server.log_path, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path}) + "\n")

    def _json(self, value, status: int = 200) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _missing(self, what: str) -> None:
        body = json.dumps({"error": f"{what} not found"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", "RepoNotFound" if "Repository" in what else "EntryNotFound")
        self.send_header("X-Error-Message", f"{what} not found")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._log()
        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        root = Path(self.server.root)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = root / parts[2] / parts[3]
            if not repo.is_dir():
                return self._missing("Repository")
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                return self._json(
                    {
                        "id": f"{parts[2]}/{parts[3]}",
                        "modelId": f"{parts[2]}/{parts[3]}",
                        "sha": _commit(repo),
                        "private": False,
                        "siblings": [{"rfilename": f} for f in _files(repo)],
                    }
                )
            if rest[0] == "tree":
                prefix = "/".join(rest[2:])
                out = []
                for f in _files(repo):
                    if prefix and not f.startswith(prefix + "/"):
                        continue
                    data = (repo / f).read_bytes()
                    item = {"type": "file", "path": f, "size": len(data), "oid": _oid(data)}
                    if f.endswith(LFS_SUFFIXES):
                        item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                    out.append(item)
                return self._json(out)
            return self._missing("Endpoint")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = root / parts[0] / parts[1]
            name = "/".join(parts[4:])
            file = repo / name
            if not repo.is_dir():
                return self._missing("Repository")
            if not file.is_file():
                return self._missing("Entry")
            data = file.read_bytes()
            broken = repo / ".broken"
            if broken.is_file() and name in broken.read_text().split():
                data = data[: len(data) // 2]
                size = file.stat().st_size
            else:
                size = len(data)
            lfs = name.endswith(LFS_SUFFIXES)
            etag = hashlib.sha256(file.read_bytes()).hexdigest() if lfs else _oid(file.read_bytes())
            start = 0
            range_header = self.headers.get("Range", "")
            if range_header.startswith("bytes=") and self.command == "GET":
                start = int(range_header[6:].split("-")[0] or 0)
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", _commit(repo))
            self.send_header("Accept-Ranges", "bytes")
            if lfs:
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(size))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            if self.command == "GET":
                try:
                    self.wfile.write(data[start:])
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if len(data) < size:  # the broken file: cut short, the connection closed
                    self.close_connection = True
            return
        return self._missing("Endpoint")


def main(argv: list[str]) -> int:
    root, port, log = argv
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    server.root, server.log_path = root, log
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
