"""The console in a real browser against a real `almanac serve` (gunicorn, the downloader's process beside
it) on 127.0.0.1, with Debian's kiwix-serve as the catalog and the fault-injecting file server (slowed) for
the downloads: log in, change a setting, start a download and cancel it, install a pack and watch its
progress live, log out. The window is a phone's width throughout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from almanac_testing import ROOT, almanac, free_port, stop_process, wait_http, zim
from console_testing import PASSWORD
from fill_testing import FaultServer, KiwixServe, build_book, get, publish, wait_for

pytest.importorskip("websocket", reason="websocket-client (dev dependency) drives Chromium")

BIG = "wikibooks_be_all_nopic_2017-02"


@pytest.fixture
def box(tmp_path):
    """The catalog and file servers, a data dir with the admin password and a pack, and `almanac serve`."""
    work = tmp_path / "work"
    work.mkdir()
    files = FaultServer(work / "files", work).start()
    kiwix = KiwixServe(work)
    tiny = build_book(work / "books", name="tiny_en_all", flavour="nopic", date="2024-06-01", words=4000)
    kiwix.add(tiny, publish(tiny, files.root, files.url))
    older = build_book(work / "books", name="tiny_en_all", flavour="nopic", date="2024-01-05", title="Tiny old")
    kiwix.add(older, publish(older, files.root, files.url))
    kiwix.add(zim(BIG), publish(zim(BIG), files.root, files.url))
    kiwix.start()
    # Slow enough to be seen running and to be cancelled on the way; a pack's book takes a few seconds.
    size = tiny.stat().st_size
    files.faults({f"/{tiny.name}": {"rate": max(2000, size // 6)}, f"/{BIG}.zim": {"rate": 10_000}})
    data, port = tmp_path / "data", free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"server:\n  host: 127.0.0.1\n  port: {port}\nlibrary:\n  catalog_url: {kiwix.url}\n")
    env = {"ALMANAC_DATA": str(data), "ALMANAC_CONFIG": str(config)}
    (data / "packs").mkdir(parents=True)
    (data / "packs" / "tiny.yaml").write_text(
        "id: tiny\nversion: 1\ntitle: Tiny starter\nitems:\n  - {kind: zim, name: tiny_en_all, flavour: nopic}\n"
    )
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    done = almanac("admin", "set-password", "--password-file", str(secret), env=env)
    assert done.returncode == 0, done.stderr
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", "--workers", "2"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz")
        yield {"url": url, "config": config, "data": data, "tiny": tiny, "files": files}
    finally:
        stop_process(proc)
        log.close()
        kiwix.stop()
        files.stop()


def go(b, url: str, path: str) -> None:
    b.evaluate("window.almanacLeft = true")
    b.call("Page.navigate", url=url)
    arrived(b, path)


def arrived(b, path: str, timeout: float = 30) -> None:
    """A new page (not the one a click or navigation left) at ``path``, loaded."""
    ok = b.wait_for(
        f"!window.almanacLeft && document.readyState === 'complete' && location.pathname === {json.dumps(path)}",
        timeout,
    )
    assert ok, (path, b.evaluate("location.href"), b.console_errors())


def click(b, selector: str) -> None:
    """Click what ``selector`` finds; the page it leaves is marked, so `arrived` waits for the next one."""
    b.evaluate(f"window.almanacLeft = true; document.querySelector({json.dumps(selector)}).click()")


def fits_a_phone(b) -> bool:
    return b.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def job_row(b, name: str):
    """(id, state, progress value or None, figures) of the job row named ``name`` on the jobs page."""
    return b.evaluate(
        "(() => { const li = [...document.querySelectorAll('#jobs li.job')].find(l => l.querySelector('b')"
        f".textContent === {json.dumps(name)}); if (!li) return null; const p = li.querySelector('progress');"
        " return [li.id, li.dataset.state, p && p.hasAttribute('value') ? p.value : null,"
        " li.querySelector('.figures').textContent]; })()"
    )


def log_in(b, url: str, then: str) -> None:
    go(b, f"{url}{then}", "/admin/login")
    b.evaluate(f"document.getElementById('password').value = {json.dumps(PASSWORD)}")
    click(b, "#login button")
    arrived(b, then)


def test_the_admin_fills_and_looks_after_the_box_from_a_phone(box, browser):
    b, url = browser, box["url"]
    b.watch_everything()
    b.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)

    # Not logged in: the console sends to its login; a wrong password is refused; the right one lets in.
    go(b, f"{url}/admin/jobs", "/admin/login")
    b.evaluate(f"document.getElementById('password').value = 'not {PASSWORD}'")
    click(b, "#login button")
    arrived(b, "/admin/login")
    assert "wrong password" in b.evaluate("document.getElementById('login-error').textContent")
    b.evaluate(f"document.getElementById('password').value = {json.dumps(PASSWORD)}")
    click(b, "#login button")
    arrived(b, "/admin/jobs")
    assert fits_a_phone(b)

    # Change a setting.
    go(b, f"{url}/admin/settings", "/admin/settings")
    b.evaluate(
        "window.almanacLeft = true; const f = document.getElementById('setting-portal.title').querySelector('form');"
        "f.querySelector('input[name=value]').value = 'Shelter box'; f.querySelector('button').click();"
    )
    arrived(b, "/admin/settings")
    assert "portal.title = 'Shelter box' saved" in b.evaluate("document.getElementById('notice').textContent")
    assert "title: Shelter box" in box["config"].read_text()
    # Every worker uses it within a second (each looks at the file's mtime), with no restart.
    wait_for(lambda: all("Shelter box" in get(f"{url}/").decode() for _ in range(4)), 10, "the new title everywhere")
    assert fits_a_phone(b)

    # Start a download from the catalog, see it run, cancel it.
    go(b, f"{url}/admin/catalog?q=wikibooks", "/admin/catalog")
    assert b.evaluate("document.querySelectorAll('#entries li').length") == 1  # the search found only it
    click(b, "#entries li form button")
    arrived(b, "/admin/jobs")
    assert b.wait_for(
        "(() => { const l = document.querySelector('#jobs li.job'); return l && l.dataset.state === 'running'"
        " && l.querySelector('.figures').textContent.includes('/s'); })()",
        30,
    ), b.evaluate("document.getElementById('jobs').textContent")
    job_id, _, _, _ = job_row(b, "wikibooks_be_all_nopic")
    click(b, f"#{job_id} button[data-verb=cancel]")
    arrived(b, "/admin/jobs")
    assert b.wait_for(f"document.getElementById({json.dumps(job_id)}).dataset.state === 'cancelled'", 20)
    assert not (box["data"] / "archives" / "wikibooks_be_all_nopic.zim").exists()

    # Install a pack (its plan says it fits), watch its book's progress live, until it is in the library.
    go(b, f"{url}/admin/packs", "/admin/packs")
    assert b.evaluate("document.querySelector('#pack-tiny .verdict')?.textContent") == "fits", b.evaluate(
        "document.body.innerText"
    )
    b.evaluate("window.confirm = () => true")
    click(b, "#pack-tiny form button")
    arrived(b, "/admin/jobs")
    assert "pack tiny: 1 download(s) queued" in b.evaluate("document.getElementById('notice').textContent")
    seen = []
    for _ in range(400):
        row = job_row(b, "tiny_en_all_nopic")
        if row and (not seen or seen[-1] != row[1:]):
            seen.append(row[1:])
        if row and row[1] in ("done", "failed", "cancelled"):
            break
        b.evaluate("new Promise(r => setTimeout(r, 100))", await_promise=True)
    assert seen[-1][0] == "done", seen
    running = [s for s in seen if s[0] == "running" and s[1] is not None and 0 < s[1] < 1]
    assert running and " of " in running[-1][2], seen  # live, part way: bytes of size, without a reload
    assert int(b.evaluate("document.body.dataset.polled")) >= 2
    assert (box["data"] / "archives" / "tiny_en_all_nopic.zim").is_file()
    go(b, f"{url}/admin/library", "/admin/library")
    assert b.evaluate("!!document.getElementById('book-tiny_en_all_nopic')"), b.evaluate("document.body.innerText")
    assert fits_a_phone(b)

    # Log out: the console asks for the password again.
    click(b, "#logout")
    arrived(b, "/admin/login")
    go(b, f"{url}/admin/jobs", "/admin/login")
    assert all(u.startswith(url) or u.startswith(("data:", "about:")) for u in b.requested_urls()), b.requested_urls()
    assert b.console_errors() == []


def test_an_older_book_is_updated_from_the_library_page(box, browser):
    b, url = browser, box["url"]
    b.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
    log_in(b, url, "/admin/catalog")
    go(b, f"{url}/admin/catalog?q=tiny", "/admin/catalog")
    assert b.evaluate("document.querySelectorAll('#entries li').length") == 2  # both releases
    b.evaluate(
        "window.almanacLeft = true; [...document.querySelectorAll('#entries li')]"
        ".find(li => li.textContent.includes('2024-01-05')).querySelector('form button').click()"
    )
    arrived(b, "/admin/jobs")
    notice = b.evaluate("document.getElementById('notice').textContent")
    job = notice.split("queued job ")[1].split(":")[0]
    assert b.wait_for(f"document.getElementById('job-{job}').dataset.state === 'done'", 60)
    go(b, f"{url}/admin/library", "/admin/library")
    row = "document.getElementById('book-tiny_en_all_nopic')"
    text = b.evaluate(f"{row}.textContent")
    assert "2024-01-05" in text and "2024-06-01" in text, text  # installed, and the update the catalog has
    click(b, "#book-tiny_en_all_nopic form[action$='/update'] button")
    arrived(b, "/admin/jobs")
    notice = b.evaluate("document.getElementById('notice').textContent")
    assert "update of tiny_en_all_nopic" in notice, notice
    job = notice.split("queued job ")[1].split(":")[0]
    assert b.wait_for(f"document.getElementById('job-{job}').dataset.state === 'done'", 60)
    go(b, f"{url}/admin/library", "/admin/library")
    text = b.evaluate(f"{row}.textContent")
    assert "2024-06-01" in text and "2024-01-05" not in text and "Update" not in text, text
    assert b.console_errors() == []


@pytest.fixture
def map_box(tmp_path):
    """`almanac serve` with the world map served and named as the planet source the Maps page cuts from."""
    from almanac_testing import MAPS, Portal

    planet = MAPS / "world-ne10m-z0-6.pmtiles"
    portal = Portal(tmp_path, f"server:\n  host: 127.0.0.1\nmaps:\n  planet_source: {planet}\n", books=())
    (portal.data / "maps").mkdir(parents=True, exist_ok=True)
    shutil.copy(planet, portal.data / "maps" / "world.pmtiles")
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    assert almanac("admin", "set-password", "--password-file", str(secret), env=portal.env).returncode == 0
    with portal:
        yield portal


def test_a_map_region_drawn_on_a_phone_is_sized_then_cut(map_box, browser):
    b, url = browser, map_box.url
    b.watch_everything()
    b.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
    log_in(b, url, "/admin/maps")
    assert b.wait_for("window.almanacRegionMap && window.almanacRegionMap.loaded()", 30), b.console_errors()
    click(b, "#draw-box")
    b.evaluate("document.getElementById('region-map').scrollIntoView()")
    rect = b.evaluate(
        "(() => { const r = document.getElementById('region-map').getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })()"
    )
    x0, y0 = rect[0] + rect[2] * 0.45, rect[1] + rect[3] * 0.3
    x1, y1 = rect[0] + rect[2] * 0.6, rect[1] + rect[3] * 0.45
    b.call("Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y0, button="left", clickCount=1)
    for i in range(1, 6):
        b.call(
            "Input.dispatchMouseEvent",
            type="mouseMoved",
            x=x0 + (x1 - x0) * i / 5,
            y=y0 + (y1 - y0) * i / 5,
            button="left",
        )
    b.call("Input.dispatchMouseEvent", type="mouseReleased", x=x1, y=y1, button="left", clickCount=1)
    w, s, e, n = (float(v) for v in b.evaluate("document.getElementById('region-bbox').value").split(","))
    assert w < e and s < n, (w, s, e, n)  # the box dragged across the map, in degrees
    assert b.evaluate("document.getElementById('region-country').value") == ""
    assert b.evaluate("!!window.almanacRegionMap.getLayer('region-box-line')")  # and drawn on it
    b.evaluate("document.getElementById('region-maxzoom').value = '3'")
    click(b, "#region-estimate")
    assert b.wait_for("/\\d+ tiles, .* to fetch/.test(document.getElementById('region-size').textContent)", 30), (
        b.evaluate("document.getElementById('region-size').textContent")
    )
    assert not list((map_box.data / "maps").glob("region-*"))  # sized first: nothing fetched yet
    click(b, "#region-start")
    arrived(b, "/admin/jobs")
    assert b.wait_for(
        "(() => { const t = document.querySelector('#tasks li.task'); return t && t.dataset.state === 'done'; })()", 60
    ), b.evaluate("document.getElementById('tasks').textContent")
    go(b, f"{url}/admin/maps", "/admin/maps")
    assert b.evaluate("[...document.querySelectorAll('#maps tbody tr')].some(r => r.id.startsWith('map-region-'))")
    assert all(u.startswith(url) or u.startswith(("data:", "about:", "blob:")) for u in b.requested_urls())
    assert b.console_errors() == []
