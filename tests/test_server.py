"""The portal as a real gunicorn process on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

from almanac_testing import almanac, free_port, wait_http, zim


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_live_server_pages(live_server, data_dir):
    status, _, body = get(live_server + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, headers, body = get(live_server + "/")
    assert status == 200 and b"Library" in body and headers["Server"].startswith("gunicorn")
    status, _, _ = get(live_server + "/content/nope/")
    assert status == 404


def test_archive_dropped_in_appears_and_deleted_one_goes(live_server, data_dir):
    target = data_dir / "archives" / "small_nons.zim"
    shutil.copy(zim("small_nons"), target)
    almanac("content", "add", str(target))
    status, _, body = get(live_server + "/content/small_nons/main.html")
    assert status == 200 and b"<html" in body.lower()
    target.unlink()  # deleted while being served
    status, _, _ = get(live_server + "/content/small_nons/main.html")
    assert status == 404
    status, _, body = get(live_server + "/healthz")
    assert status == 200  # the server stays up


def test_detach_and_stop(data_dir):
    port = free_port()
    done = almanac("serve", "--detach", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
    try:
        assert done.returncode == 0, done.stderr
        assert f"http://127.0.0.1:{port}/" in done.stdout
        wait_http(f"http://127.0.0.1:{port}/healthz")
        again = almanac("serve", "--detach", "--host", "127.0.0.1", "--port", str(port))
        assert again.returncode == 1 and "already running" in again.stderr
        status = almanac("status")
        assert "server running (started by hand)" in status.stdout
    finally:
        stopped = almanac("stop")
    assert stopped.returncode == 0 and stopped.stdout.startswith("stopped")
    assert almanac("stop").stdout.strip() == "not running"
