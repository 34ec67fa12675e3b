"""Tile serving speed: random z/x/y requests over HTTP at N connections against a running server, next to
the raw in-process read rate of the same tiles (our cached reader, and the PyPI pmtiles Reader for contrast).

    python bench/tiles.py [--url http://127.0.0.1:8080] [--map world] [--file PATH] [--requests 20000]
                          [--connections 32]

Target: >= 2,000 tiles/s over HTTP on a 2-core machine.
"""

from __future__ import annotations

import argparse
import http.client
import random
import shutil
import statistics
import threading
import time
import urllib.parse
from pathlib import Path


def tile_list(path: Path) -> list[tuple[int, int, int]]:
    from pmtiles.tile import tileid_to_zxy

    from content.maps.pmtiles_archive import PMTilesArchive

    archive = PMTilesArchive(path)
    out = []
    for e in archive.entries():
        out.extend(tileid_to_zxy(e.tile_id + i) for i in range(e.run_length))
    archive.close()
    return out


def raw_rate(path: Path, tiles: list, reference: bool = False) -> float:
    if reference:
        from pmtiles.reader import MmapSource, Reader

        f = open(path, "rb")
        reader = Reader(MmapSource(f))
        get = reader.get
    else:
        from content.maps.pmtiles_archive import PMTilesArchive

        get = PMTilesArchive(path).tile
    start = time.perf_counter()
    for z, x, y in tiles:
        get(z, x, y)
    return len(tiles) / (time.perf_counter() - start)


def http_run(url: str, name: str, tiles: list, connections: int) -> tuple[float, list[float], int]:
    parts = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    chunks = [tiles[i::connections] for i in range(connections)]

    def worker(chunk):
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
        mine = []
        for z, x, y in chunk:
            t0 = time.perf_counter()
            conn.request("GET", f"/maps/tiles/{name}/{z}/{x}/{y}.pbf", headers={"Accept-Encoding": "gzip"})
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status not in (200, 204):
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(tiles) / (time.perf_counter() - start), latencies, errors[0]


def server_processes(port: int) -> list:
    """The process listening on the port and its children (gunicorn's workers), if this user can see them."""
    import psutil

    procs = []
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                p = psutil.Process(c.pid)
                procs = [p, *p.children(recursive=True)]
                break
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return []
    return procs


def cpu_seconds(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--map", default="world")
    ap.add_argument("--file", type=Path, help="the archive file (default: <data dir>/maps/<map>.pmtiles)")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk (C, leaves the CPU to the server) when installed, else Python threads",
    )
    ap.add_argument("--duration", type=int, default=15, help="seconds of load with wrk")
    args = ap.parse_args()
    path = args.file
    if path is None:
        from appliance.config import load_config

        path = Path(load_config().data_dir) / "maps" / f"{args.map}.pmtiles"
    rng = random.Random(args.seed)
    every = tile_list(path)
    tiles = [rng.choice(every) for _ in range(args.requests)]

    cached = raw_rate(path, tiles)
    reference = raw_rate(path, tiles[: min(len(tiles), 500)], reference=True)
    http_run(args.url, args.map, tiles[:500], args.connections)  # warm-up: workers open the archive
    server = server_processes(urllib.parse.urlsplit(args.url).port or 80)
    cpu0 = cpu_seconds(server)
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    if use_wrk:
        from wrkrun import wrk

        paths = [f"/maps/tiles/{args.map}/{z}/{x}/{y}.pbf" for z, x, y in tiles]
        found = wrk(args.url, paths, args.duration, args.connections, headers={"Accept-Encoding": "gzip"})
        rate, errors, served = found["rps"], found["errors"], found["rps"] * args.duration
        percentile = {0.50: found["p50"], 0.99: found["p99"]}
        p = percentile.__getitem__
        lat = [found["p50"] / 1000]  # wrk reports percentiles, not every latency
    else:
        rate, lat, errors = http_run(args.url, args.map, tiles, args.connections)
        served = len(tiles)
        lat.sort()
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    server_ms = (cpu_seconds(server) - cpu0) * 1000 / served if server else None

    print(f"archive: {path} ({len(every)} tiles), {args.requests} random requests, {args.connections} connections")
    print(f"{'measure':<40}{'tiles/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    client = "wrk" if use_wrk else "Python threads"
    print(f"{'HTTP ' + args.url + ' (' + client + ')':<40}{rate:>12,.0f}{p(0.50):>10.2f}{p(0.99):>10.2f}")
    print(f"{'in-process, cached directories':<40}{cached:>12,.0f}{'':>10}{'':>10}")
    print(f"{'in-process, PyPI pmtiles Reader':<40}{reference:>12,.0f}{'':>10}{'':>10}")
    if server_ms:
        import os

        cores = os.cpu_count() or 1
        print(
            f"server CPU per tile: {server_ms:.3f} ms -> {cores} cores alone could serve about "
            f"{cores * 1000 / server_ms:,.0f} tiles/s (the client above shares those cores)"
        )
    print(
        f"{'median' if use_wrk else 'mean'} latency {statistics.fmean(lat) * 1000:.2f} ms; errors {errors}; "
        "target >= 2,000 tiles/s over HTTP: "
        f"{'met' if rate >= 2000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
