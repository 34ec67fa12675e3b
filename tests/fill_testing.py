"""Helpers of the catalog and download tests: the fault server and kiwix-serve as real processes, small
ZIMs built by the project's builder, and sha256 of files."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from almanac_testing import ROOT, free_port, stop_process, wait_http

FAULT_SERVER = Path(__file__).with_name("fault_server.py")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_book(
    folder: Path,
    *,
    name: str,
    date: str,
    flavour: str = "",
    words: int = 40,
    title: str = "",
    category: str = "other",
    language: str = "eng",
    filename: str | None = None,
) -> Path:
    """A real ZIM (full-text index, metadata, illustration) from a generated page or two."""
    from content.zim_builder import build_zim

    src = folder / f"src-{name}-{flavour}-{date}"
    src.mkdir(parents=True, exist_ok=True)
    text = " ".join(f"word{i % 97} {name} {date}" for i in range(words))
    (src / "index.md").write_text(f"# {title or name}\n\nThe {date} release of {name}. {text}\n")
    stem = filename or (f"{name}_{flavour}_{date[:7]}" if flavour else f"{name}_{date[:7]}")
    out = folder / f"{stem}.zim"
    build_zim(
        src,
        out,
        name=name,
        flavour=flavour or None,
        date=date,
        title=title or name,
        language=language,
        tags=f"_category:{category};_pictures:no",
    )
    shutil.rmtree(src)
    return out


class FaultServer:
    """tests/fault_server.py in its own process: serves ``root`` with the faults in ``faults.json``."""

    def __init__(self, root: Path, work: Path, port: int | None = None):
        self.root, self.work = Path(root), Path(work)
        self.port = port or free_port()
        self.faults_path = self.work / "faults.json"
        self.log_path = self.work / "requests.log"
        self.faults_path.write_text("{}")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultServer:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(FAULT_SERVER),
                str(self.root),
                str(self.port),
                str(self.faults_path),
                str(self.log_path),
            ],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout.readline().strip() == b"ready", "the fault server did not start"
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def faults(self, table: dict) -> None:
        tmp = self.faults_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(table))
        tmp.replace(self.faults_path)

    def requests(self, path: str | None = None) -> list[dict]:
        if not self.log_path.exists():
            return []
        rows = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]
        return [r for r in rows if path is None or r["path"] == path]


class KiwixServe:
    """Debian's kiwix-serve on a library.xml made by kiwix-manage: the catalog server of the tests."""

    def __init__(self, work: Path):
        for tool in ("kiwix-serve", "kiwix-manage"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is not installed (Debian package kiwix-tools; tests/run.sh installs it)")
        self.work = Path(work)
        self.library = self.work / "library.xml"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, zim: Path, url: str) -> None:
        done = subprocess.run(
            ["kiwix-manage", str(self.library), "add", str(zim), f"--url={url}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def start(self) -> KiwixServe:
        self.log = open(self.work / "kiwix-serve.log", "wb")
        self.proc = subprocess.Popen(
            ["kiwix-serve", "--library", "--address", "127.0.0.1", "--port", str(self.port), str(self.library)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.url}/catalog/v2/root.xml", timeout=30)
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 10)
        if getattr(self, "log", None):
            self.log.close()


def publish(zim: Path, files: Path, base_url: str, *, mirrors: tuple[str, ...] = (), sidecar: bool = False) -> str:
    """Copy a ZIM into the file server's folder with its .meta4 (or .sha256); the URL to give the catalog."""
    from content.downloads.metalink import write_metalink

    files.mkdir(parents=True, exist_ok=True)
    target = files / zim.name
    shutil.copy(zim, target)
    digest = sha256(target)
    if sidecar:
        (files / f"{zim.name}.sha256").write_text(f"{digest}  {zim.name}\n")
        return f"{base_url}/{zim.name}"
    urls = [*mirrors, f"{base_url}/{zim.name}"]
    (files / f"{zim.name}.meta4").write_bytes(write_metalink(zim.name, target.stat().st_size, digest, urls))
    return f"{base_url}/{zim.name}.meta4"


def wait_for(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


__all__ = ["ROOT", "FaultServer", "KiwixServe", "build_book", "get", "make_box", "publish", "sha256", "wait_for"]


def make_box(data: Path, **options):
    """A library, its provenance and a downloader over ``data`` (archives/, maps/, almanac.db), with the
    short timeouts and small chunks the fault tests need unless ``options`` say otherwise."""
    from content.downloads.box import open_downloader
    from content.library import Library

    (data / "archives").mkdir(parents=True, exist_ok=True)
    library = Library(data / "almanac.db", data / "archives")
    settings = dict(
        max_parallel=2,
        chunk_bytes=64 * 1024,
        retries=4,
        backoff_s=0.05,
        backoff_max_s=0.5,
        timeout_s=3.0,
        reserve_bytes=0,
        stale_after_s=30.0,
        progress_interval_s=0.05,
    )
    settings.update(options)
    downloader, provenance = open_downloader(data, library, **settings)
    return library, provenance, downloader


def _run_queue(data: str) -> int:
    """``python tests/fill_testing.py DATA``: run the queue of a box until it is empty (the process the
    kill -9 test kills and restarts)."""
    library, _, downloader = make_box(Path(data))
    ran = downloader.run()
    print(json.dumps([j.to_json() for j in ran]), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(_run_queue(sys.argv[1]))
