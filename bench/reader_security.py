"""What the archive sandbox costs a reader request: the same article and image asked in-process (Flask's test
client, no network) from the portal as it is, and from the same portal with the security layer taken out
(security_headers' after_request, cross_site's before_request). The framed article is also the one with the
toolbar's script added (article_bridge).

    python bench/reader_security.py [--zim ../shared/testdata/zim/example.zim] [--requests 3000] [--rounds 3]

Prints one table: requests/s of each case, and its ratio to the peer measured in the same run: the same
request to the portal without the security layer, as it answered before it (1.00x: no cost).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARTICLE = "/content/example/Wikibooks.html"
FRAMED = {"Sec-Fetch-Dest": "iframe"}
GZIP = {"Accept-Encoding": "gzip"}
# (case, URL, headers asked with the security layer, headers of the peer: the same request without it, which is
# what the portal answered before: no headers added, and no toolbar script, which a framed request gets).
CASES = [
    ("article, on its own", ARTICLE, {}, {}),
    ("article, in the reader's frame (script added)", ARTICLE, FRAMED, {}),
    ("article, gzip, in the frame", ARTICLE, {**FRAMED, **GZIP}, GZIP),
    ("image", "/content/example/Wikibooks_files/Haskell-logo.png", {}, {}),
    ("portal page (/library)", "/library", {}, {}),
]


def make_app(zim: Path, secure: bool):
    from appliance.config import load_config
    from appliance.web import create_app
    from content.library import Library

    root = Path(tempfile.mkdtemp(prefix="bench-reader-"))
    (root / "config.yaml").write_text(f"data_dir: {root / 'data'}\nserver:\n  host: 127.0.0.1\nlog_level: error\n")
    os.environ["ALMANAC_DATA"] = str(root / "data")
    (root / "data").mkdir()
    Library(root / "data" / "almanac.db", root / "data" / "archives").add(zim)
    app = create_app(load_config(root / "config.yaml"))
    if not secure:
        from appliance.web import cross_site, security_headers

        app.after_request_funcs[None].remove(security_headers._add_headers)
        app.before_request_funcs[None].remove(cross_site._refuse_cross_site)
    return app, root


def rate(client, url: str, headers: dict, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        r = client.get(url, headers=headers)
        assert r.status_code == 200, (url, r.status_code)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zim", type=Path, default=ROOT.parent / "shared" / "testdata" / "zim" / "example.zim")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    secure, root_a = make_app(args.zim, True)
    plain, root_b = make_app(args.zim, False)
    clients = {"with": secure.test_client(), "without": plain.test_client()}
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):  # interleaved, so a busy moment of the machine falls on both
        for name, url, with_headers, peer_headers in CASES:
            for kind, headers in (("with", with_headers), ("without", peer_headers)):
                client = clients[kind]
                rate(client, url, headers, max(50, args.requests // 20))  # warm
                results.setdefault((name, kind), []).append(rate(client, url, headers, args.requests))
    print(f"{args.requests} requests a case, median of {args.rounds} rounds, in-process (no network)\n")
    print("| request | before (no security layer) req/s | now req/s | ratio now/before |")
    print("|---|---|---|---|")
    for name, *_ in CASES:
        without = statistics.median(results[(name, "without")])
        with_ = statistics.median(results[(name, "with")])
        print(f"| {name} | {without:,.0f} | {with_:,.0f} | {with_ / without:.2f}x |")
    for app, root in ((secure, root_a), (plain, root_b)):
        app.extensions["almanac"].close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
