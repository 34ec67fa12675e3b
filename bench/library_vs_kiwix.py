#!/usr/bin/env python3
"""Almanac's library server vs kiwix-serve on the same archive, same machine, same run.

Both servers run on 127.0.0.1; wrk drives each at 32 connections for article, search and suggest URLs
(a Lua script rotates through many URLs so caches see realistic variety). Then a generated archive of
100,000 articles measures search and suggest latency at scale.

    python bench/library_vs_kiwix.py [--zim PATH] [--duration 10] [--articles 100000] [--skip-big]

Needs Debian's kiwix-tools and wrk, and Almanac installed (the `almanac` on PATH or --almanac).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from wrkrun import wrk

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZIM = ROOT.parent / "shared" / "testdata" / "zim" / "example.zim"
WORDS = (
    "river mountain city language history science music energy ocean forest planet garden bridge "
    "library medicine history water village market winter summer island desert engine railway "
    "harbour castle temple school doctor farmer butter cheese bread salt copper silver iron"
).split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def start_kiwix(zim: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["kiwix-serve", "--address", "127.0.0.1", "--port", str(port), str(zim)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait(f"http://127.0.0.1:{port}/catalog/v2/entries")
    return proc


def kiwix_content_prefix(port: int) -> str:
    """Where kiwix-serve serves the book: /content/NAME on newer releases, /NAME on Debian 12's 3.3."""
    feed = urllib.request.urlopen(f"http://127.0.0.1:{port}/catalog/v2/entries").read().decode()
    return re.search(r'<link type="text/html" href="(/[^"]+)"', feed).group(1).rstrip("/")


def start_almanac(almanac: str, zim: Path, port: int, data: Path) -> subprocess.Popen:
    env = {**os.environ, "ALMANAC_DATA": str(data), "ALMANAC_CONFIG": str(data / "config.yaml")}
    data.mkdir(parents=True, exist_ok=True)
    (data / "config.yaml").write_text("log_level: warning\n")
    subprocess.run([almanac, "content", "add", str(zim)], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [almanac, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait(f"http://127.0.0.1:{port}/healthz")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def sample_urls(
    zim: Path, kiwix_prefix: str, almanac_book: str, n: int = 200, queries: int = 3000
) -> dict[str, tuple[list, list]]:
    """The same requests for both servers: (kiwix paths, almanac paths) per kind."""
    from libzim.reader import Archive

    archive = Archive(str(zim))
    rng = random.Random(7)
    articles, titles = [], []
    titles_wanted = max(n, queries // 2)
    for i in rng.sample(range(archive.all_entry_count), min(archive.all_entry_count, 4 * titles_wanted)):
        entry = archive._get_entry_by_id(i)
        if entry.is_redirect or not entry.get_item().mimetype.startswith("text/html"):
            continue
        titles.append(entry.title or entry.path)
        if len(articles) < n:
            articles.append(entry.path)
        if len(titles) >= titles_wanted:
            break
    words = sorted(set(w for t in titles for w in re.findall(r"\w{4,}", t))) or WORDS
    rng.shuffle(words)
    terms = (words * (1 + queries // len(words)))[:queries]  # as many distinct queries as the titles give
    prefixes = [t[: max(2, len(t) // 2)] for t in terms]

    def q(s: str) -> str:
        return urllib.parse.quote(s)

    book = urllib.parse.unquote(kiwix_prefix.rsplit("/", 1)[-1])
    return {
        "article": (
            [f"{kiwix_prefix}/{q(p)}" for p in articles],
            [f"/content/{q(almanac_book)}/{q(p)}" for p in articles],
        ),
        "search": (
            [f"/search?content={q(book)}&pattern={q(t)}" for t in terms],
            [f"/search?content={q(almanac_book)}&pattern={q(t)}" for t in terms],
        ),
        "suggest": (
            [f"/suggest?content={q(book)}&term={q(p)}&count=10" for p in prefixes],
            [f"/suggest?content={q(almanac_book)}&term={q(p)}&count=10" for p in prefixes],
        ),
    }


def compare(zim: Path, almanac: str, duration: int, connections: int, workdir: Path) -> list[dict]:
    kport, aport = free_port(), free_port()
    shutil.rmtree(workdir / f"data-{zim.stem}", ignore_errors=True)
    rows = []
    kiwix = start_kiwix(zim, kport)
    almanac_proc = start_almanac(almanac, zim, aport, workdir / f"data-{zim.stem}")
    try:
        urls = sample_urls(zim, kiwix_content_prefix(kport), zim.stem)
        for kind, (kpaths, apaths) in urls.items():
            k = run_or_fail(f"http://127.0.0.1:{kport}", kpaths, duration, connections, kiwix)
            a = wrk(f"http://127.0.0.1:{aport}", apaths, duration, connections)
            rows.append({"archive": zim.name, "kind": kind, "kiwix": k, "almanac": a})
            if k.get("failed") or kind != "article":
                # One request at a time too: the latency a single reader sees, and a like-for-like
                # figure where the peer fell over under load (it is restarted first).
                if k.get("failed"):
                    stop(kiwix)
                    kiwix = start_kiwix(zim, kport)
                k1 = run_or_fail(f"http://127.0.0.1:{kport}", kpaths, duration, 1, kiwix)
                a1 = wrk(f"http://127.0.0.1:{aport}", apaths, duration, 1)
                rows.append({"archive": zim.name, "kind": f"{kind}@1", "kiwix": k1, "almanac": a1})
                if k1.get("failed"):
                    stop(kiwix)
                    kiwix = start_kiwix(zim, kport)
    finally:
        stop(kiwix)
        stop(almanac_proc)
    return rows


def run_or_fail(base: str, paths: list[str], duration: int, connections: int, proc: subprocess.Popen) -> dict:
    """The peer's figures, or a record that it failed under load."""
    try:
        result = wrk(base, paths, duration, connections)
    except Exception as e:  # a peer falling over is a result, not a crash of the bench
        return {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "errors": -1, "failed": str(e)}
    if proc.poll() is not None:
        result["failed"] = f"kiwix-serve exited with code {proc.returncode}"
    return result


def synthetic_vocabulary(size: int, rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    words: set[str] = set(WORDS)
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return list(WORDS) + sorted(words - set(WORDS))


def build_big_archive(path: Path, count: int) -> float:
    """A ZIM of `count` generated articles with a full-text index; returns build seconds."""
    from libzim.writer import Creator, Hint, Item, StringProvider

    class Page(Item):
        def __init__(self, i: int, rng: random.Random):
            self.i = i
            words = rng.choices(vocabulary, weights, k=rng.randint(80, 300))
            self.title = f"{vocabulary[500 + i % 15000].title()} {vocabulary[200 + (i // 15000)]} {i}"
            body = " ".join(words)
            self.html = (
                f"<html><head><title>{self.title}</title></head><body><h1>{self.title}</h1><p>{body}</p></body></html>"
            )

        def get_path(self):
            return f"article_{self.i}"

        def get_title(self):
            return self.title

        def get_mimetype(self):
            return "text/html"

        def get_contentprovider(self):
            return StringProvider(self.html)

        def get_hints(self):
            return {Hint.FRONT_ARTICLE: True}

    started = time.monotonic()
    rng = random.Random(1)
    vocabulary = synthetic_vocabulary(20_000, rng)
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]  # Zipf, like real text
    with Creator(str(path)).config_indexing(True, "eng") as creator:
        creator.set_mainpath("article_0")
        for key, value in (
            ("Name", path.stem),
            ("Title", "Generated"),
            ("Language", "eng"),
            ("Creator", "bench"),
            ("Publisher", "bench"),
            ("Date", "2026-01-01"),
            ("Description", "generated articles"),
            ("Tags", "bench"),
        ):
            creator.add_metadata(key, value)
        for i in range(count):
            creator.add_item(Page(i, rng))
    return time.monotonic() - started


def fmt(r: dict) -> str:
    if r.get("failed"):
        return f"FAILED ({r['failed'][:40]})"
    return f"{r['rps']:8.0f} req/s  p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms" + (
        f"  ({r['errors']} errors)" if r["errors"] else ""
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zim", type=Path, default=DEFAULT_ZIM)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--almanac", default=shutil.which("almanac") or str(Path(sys.executable).with_name("almanac")))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="scratch folder, kept with the generated archive for the next run (default: a new one "
        "in /var/tmp, removed afterwards)",
    )
    args = parser.parse_args()
    for tool in ("kiwix-serve", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install {'kiwix-tools' if tool == 'kiwix-serve' else tool}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="almanac-library-bench-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count()}, "rows": []}
    try:
        results["rows"] += compare(args.zim, args.almanac, args.duration, args.connections, workdir)
        if not args.skip_big:
            big = workdir / f"generated{args.articles // 1000}k.zim"
            if not big.exists():  # building takes minutes: a kept --workdir reuses it
                results["big_build_s"] = round(build_big_archive(big, args.articles), 1)
            results["rows"] += compare(big, args.almanac, args.duration, args.connections, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'archive':<22} {'kind':<8} {'kiwix-serve':<48} {'almanac':<48} ratio")
    for row in results["rows"]:
        k, a = row["kiwix"], row["almanac"]
        ratio = a["rps"] / k["rps"] if k["rps"] and not k.get("failed") else float("inf")
        row["ratio"] = round(ratio, 2)
        print(f"{row['archive']:<22} {row['kind']:<8} {fmt(k):<48} {fmt(a):<48} {ratio:5.2f}x")
    if "big_build_s" in results:
        print(f"\n{args.articles:,}-article archive built in {results['big_build_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
