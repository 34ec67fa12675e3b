#!/usr/bin/env python3
"""The downloader vs curl on one large file over loopback, with and without dropped connections and a
kill -9 of the downloading process; peak RSS at two file sizes to show it does not grow with the file.

    python bench/downloads.py [--size-gb 2] [--drops 4] [--chunk-mb 64] [--workdir /var/tmp/almanac-dl-bench]

The file is sparse (made with truncate), served by tests/fault_server.py (sendfile, so the server is not
what limits either client). Almanac's time includes its SHA-256 (taken as the bytes arrive) and the
fsync at each checkpoint; curl's is the transfer alone. Ratios are curl's time over Almanac's, for the whole
process (Python's start and imports included) and for the transfer alone (``dl.run()``); each row is the best of
``--rounds`` alternating rounds. The downloader runs with the product's retry and backoff settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from content.downloads import Downloader, FileInstaller, Provenance
data = Path(sys.argv[2]); chunk = int(sys.argv[3])
prov = Provenance(data / "almanac.db")
dl = Downloader(data / "almanac.db", installers={"file": FileInstaller("file", data / "files", prov)},
                chunk_bytes=chunk, reserve_bytes=0)  # the product's retry and backoff settings
if len(sys.argv) > 4:
    dl.add(sys.argv[4], kind="file", name="big.bin", sha256=sys.argv[5], size=int(sys.argv[6]))
t = time.perf_counter()
[job] = dl.run()
print(json.dumps({"s": time.perf_counter() - t, "state": job.state, "error": job.error,
                  "refetched": job.refetched, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def sparse_file(path: Path, size: int) -> str:
    with open(path, "wb") as f:
        f.truncate(size)
    h = hashlib.sha256()
    zeros = bytes(8 << 20)
    left = size
    while left:
        n = min(left, len(zeros))
        h.update(zeros[:n])
        left -= n
    return h.hexdigest()


def curl(url: str, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(out), url], check=True)
    elapsed = time.perf_counter() - t
    out.unlink()
    return elapsed


def almanac(url: str, data: Path, digest: str, size: int, chunk: int, kill_after_s: float | None = None) -> dict:
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    args = [sys.executable, "-c", CHILD, str(ROOT), str(data), str(chunk), url, digest, str(size)]
    t = time.perf_counter()
    if kill_after_s is not None:
        first = subprocess.Popen(args, stdout=subprocess.PIPE)
        time.sleep(kill_after_s)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        args = args[:6]  # the restarted process adds nothing: it finds the job in SQLite
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["run_s"] = result["s"]  # dl.run() alone, inside the process
    result["s"] = time.perf_counter() - t  # the whole process, Python's start and imports included
    out = data / "files" / "big.bin"
    if result["state"] != "done" or out.stat().st_size != size:
        raise SystemExit(f"download failed: {result}")
    shutil.rmtree(data)
    return result


_EPOCH = [0]


def drops(size: int, count: int) -> dict:
    """The fault that drops the connection ``count`` times, once per 1/(count+1) of the file; a new epoch each
    time, so every run (Almanac's and curl's) meets the same drops."""
    _EPOCH[0] += 1
    return {"drop_after": size // (count + 1) + 12345, "drops": count, "epoch": _EPOCH[0]}


def served(server, path: str) -> int:
    return sum(r["sent"] for r in server.requests(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--drops", type=int, default=4)
    ap.add_argument("--chunk-mb", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/almanac-dl-bench"))
    args = ap.parse_args()
    from fill_testing import FaultServer

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    (work / "files").mkdir(parents=True)
    size = int(args.size_gb * 1e9)
    small = size // 4
    chunk = args.chunk_mb << 20
    digest = sparse_file(work / "files" / "big.bin", size)
    small_digest = sparse_file(work / "files" / "small.bin", small)
    server = FaultServer(work / "files", work).start()
    url = f"{server.url}/big.bin"
    rows = []
    try:
        # Alternating rounds, best of each: on a shared machine one slow round says little.
        pairs = []
        for _ in range(args.rounds):
            pairs.append((curl(url, work / "curl.out"), almanac(url, work / "a", digest, size, chunk)))
        curl_s = min(c for c, _ in pairs)
        plain = min((a for _, a in pairs), key=lambda r: r["s"])
        paired = sorted(c / a["s"] for c, a in pairs)
        rows.append(("no faults", curl_s, plain, 0))

        drop_pairs = []
        for _ in range(args.rounds):
            before = served(server, "/big.bin")
            server.faults({"/big.bin": drops(size, args.drops)})
            dropped = almanac(url, work / "a", digest, size, chunk)
            refetched = served(server, "/big.bin") - before - size
            server.faults({})
            assert dropped["refetched"] == 0 and refetched == 0, (dropped, refetched)  # the server's count agrees
            drop_pairs.append((curl_retry(url, work / "curl.out", server, size, args.drops), dropped))
        curl_drops = min(c for c, _ in drop_pairs)
        dropped = min((a for _, a in drop_pairs), key=lambda r: r["s"])
        rows.append((f"{args.drops} dropped connections", curl_drops, dropped, refetched / args.drops))

        killed = almanac(url, work / "a", digest, size, chunk, kill_after_s=plain["s"] / 2)
        rows.append(("kill -9 at half way, restarted", None, killed, killed["refetched"]))

        small_run = almanac(f"{server.url}/small.bin", work / "a", small_digest, small, chunk)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    gb = size / 1e9
    print(f"\nfile {gb:.2f} GB (sparse) over loopback, chunk {args.chunk_mb} MiB, {os.cpu_count()} CPUs\n")
    print(
        "| run | curl s (GB/s) | Almanac s (GB/s), whole process | ratio | transfer alone s | ratio "
        "| bytes fetched twice per fault |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, c, a, lost in rows:
        cs = f"{c:.2f} ({gb / c:.2f})" if c else "-"
        ratio = f"{c / a['s']:.2f}x" if c else "-"
        run_ratio = f"{c / a['run_s']:.2f}x" if c else "-"
        print(
            f"| {name} | {cs} | {a['s']:.2f} ({gb / a['s']:.2f}) | {ratio} | {a['run_s']:.2f} | {run_ratio} "
            f"| {lost:,.0f} |"
        )
    print(f"\nno-fault ratio per round (curl time / Almanac time): {', '.join(f'{r:.2f}' for r in paired)}")
    print(
        f"peak RSS of the downloading process: {small_run['rss'] / 2**20:.1f} MiB for {small / 1e9:.2f} GB, "
        f"{plain['rss'] / 2**20:.1f} MiB for {gb:.2f} GB"
    )
    print(f"targets: throughput >= 0.9x curl; re-fetched < one chunk ({chunk:,} bytes); RSS flat in file size")
    return 0


def curl_retry(url: str, out: Path, server, size: int, count: int) -> float:
    """curl with its own resume (-C -) in a loop, as a user would script it, over the same drops."""
    server.faults({"/big.bin": drops(size, count)})
    t = time.perf_counter()
    for _ in range(count + 3):
        if (
            subprocess.run(["curl", "-sS", "-C", "-", "-o", str(out), url], capture_output=True).returncode == 0
            and out.stat().st_size == size
        ):
            break
    elapsed = time.perf_counter() - t
    server.faults({})
    out.unlink()
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
