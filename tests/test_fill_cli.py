"""Filling the box through the real `almanac` CLI and `almanac serve`, against Debian's kiwix-serve as the
catalog, the fault-injecting file server for the downloads and a local Hugging Face Hub stand-in
(tests/hf_hub_server.py) for model pulls: a pack installed from a fresh data dir in one command, a job killed
with kill -9 resumed by the service, an update that keeps /content/<book>/ links working in the portal, an
export and an import that round-trip, models pulled and imported atomically."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from almanac_testing import MAPS, ROOT, almanac, free_port, stop_process, wait_http, zim
from fill_testing import FaultServer, KiwixServe, build_book, publish, sha256, wait_for

RELEASES = [
    ("tiny_en_all", "nopic", "2024-01-05"),
    ("tiny_en_all", "nopic", "2024-06-01"),
    ("livres_fr_all", "", "2023-03-01"),
]
BIG = "wikibooks_be_all_nopic_2017-02"
HUB = Path(__file__).with_name("hf_hub_server.py")


class Hub:
    """tests/hf_hub_server.py in its own process, serving ``root/ORG/NAME/`` folders."""

    def __init__(self, root: Path, work: Path):
        self.root, self.port, self.log = root, free_port(), work / "hub.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(HUB), str(root), str(self.port), str(self.log)], stdout=subprocess.PIPE
        )
        assert self.proc.stdout.readline().strip() == b"ready", "the hub stand-in did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def world(tmp_path_factory, checkpoints):
    work = tmp_path_factory.mktemp("fill-cli")
    files = FaultServer(work / "files", work).start()
    kiwix = KiwixServe(work)
    books = {}
    for name, flavour, date in RELEASES:
        language = "fra" if name.startswith("livres") else "eng"
        book = build_book(
            work / "books", name=name, flavour=flavour, date=date, title=f"Tiny {date}", language=language
        )
        books[(name, date)] = book
        kiwix.add(book, publish(book, files.root, files.url))
    kiwix.start()
    shutil.copytree(checkpoints.hf("qwen3_moe"), work / "hub" / "tiny" / "qwen3-moe")
    shutil.copytree(checkpoints.hf("qwen3_moe"), work / "hub" / "tiny" / "broken-moe")
    (work / "hub" / "tiny" / "broken-moe" / ".broken").write_text("model.safetensors\n")
    hub = Hub(work / "hub", work)
    yield {"files": files, "kiwix": kiwix, "books": books, "hub": hub, "work": work, "checkpoints": checkpoints}
    hub.stop()
    kiwix.stop()
    files.stop()


class Box:
    """A fresh data dir and its config file; ``run`` is the real CLI on it."""

    def __init__(self, root: Path, catalog_url: str = "", extra_env: dict | None = None):
        root.mkdir(parents=True, exist_ok=True)
        self.data = root / "data"
        self.config = root / "config.yaml"
        self.port = free_port()
        lines = [f"server:\n  host: 127.0.0.1\n  port: {self.port}\n"]
        if catalog_url:
            lines.append(f"library:\n  catalog_url: {catalog_url}\n")
        self.config.write_text("".join(lines))
        self.env = {
            "ALMANAC_DATA": str(self.data),
            "ALMANAC_CONFIG": str(self.config),
            "HF_HOME": str(root / "hf"),
            "HF_HUB_OFFLINE": "0",  # tinymoe sets it for the engine tests; a pull is a download
        }
        self.env.update(extra_env or {})

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return almanac(*args, env=self.env, timeout=timeout)

    def json(self, *args: str):
        done = self.run(*args, "--json")
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return json.loads(done.stdout)

    def popen(self, *args: str, log: str) -> subprocess.Popen:
        out = open(self.data.parent / log, "wb")
        return subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **self.env},
        )

    @contextlib.contextmanager
    def serve(self):
        """`almanac serve` as a real process (gunicorn, one worker, the downloader's process beside it)."""
        proc = self.popen("serve", "--workers", "1", log="serve.log")
        try:
            wait_http(f"http://127.0.0.1:{self.port}/healthz")
            yield f"http://127.0.0.1:{self.port}"
        finally:
            stop_process(proc)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode("utf-8", "replace")


def models_in(data: Path) -> list[str]:
    folder = data / "models"
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_catalog_browse_and_the_errors_of_bad_input(world, tmp_path):
    box = Box(tmp_path, world["kiwix"].url)
    page = box.json("content", "catalog")
    assert page["total"] == 3 and not page["offline"]
    assert {(e["name"], e["date"]) for e in page["entries"]} == {(n, d) for n, _, d in RELEASES}
    done = box.run("content", "catalog", "--lang", "fra")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.startswith(f"catalog {world['kiwix'].url}: 1 books, showing 1-1; fetched")
    assert [r.split("\t")[:2] for r in rows] == [["livres_fr_all", "2023-03-01"]]

    for args, message in (
        (("content", "install", "nope"), "no pack 'nope'"),
        (("content", "download", "nothing_here"), "has no book named 'nothing_here'"),
        (("jobs", "pause", "999"), "no download job 999"),
    ):
        done = box.run(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    unset = Box(tmp_path / "unset")
    done = unset.run("content", "catalog")
    assert done.returncode == 2 and "no catalog is set: point library.catalog_url" in done.stderr
    unset.config.write_text("library:\n  catalog_url: ftp://x\n")
    done = unset.run("content", "packs")
    assert done.returncode == 2 and "library.catalog_url: 'ftp://x' is not an http:// or https:// URL" in done.stderr


def test_a_pack_installs_from_a_fresh_data_dir_in_one_command(world, tmp_path):
    box = Box(tmp_path, world["kiwix"].url, {"HF_ENDPOINT": world["hub"].url})
    (box.data / "packs").mkdir(parents=True)
    (box.data / "packs" / "tiny.yaml").write_text(
        "id: tiny\nversion: 1\ntitle: Tiny starter\nitems:\n"
        "  - {kind: zim, name: tiny_en_all, flavour: nopic}\n"
        "  - {kind: zim, name: livres_fr_all}\n"
        "  - {kind: map, country: 'FI', maxzoom: 4, approx_bytes: 200000}\n"
        "  - {kind: model, repo: tiny/qwen3-moe, bits: 4, approx_bytes: 1000000}\n"
    )
    (box.data / "packs" / "nomap.yaml").write_text(
        "id: nomap\nversion: 1\ntitle: No map source\nitems:\n"
        "  - {kind: zim, name: livres_fr_all}\n  - {kind: map, country: 'NO', maxzoom: 3}\n"
    )
    listed = box.json("content", "packs")
    [plan] = [p for p in listed["plans"] if p["pack"]["id"] == "tiny"]
    assert plan["fits"] and [i["status"] for i in plan["items"]] == ["download", "download", "estimate", "estimate"]
    assert {p["pack"]["id"] for p in listed["plans"]} >= {"wikipedia-en-top-nopic", "school-starter", "tiny"}

    source = MAPS / "world-ne10m-z0-6.pmtiles"
    done = box.run("content", "install", "tiny", "--map-source", str(source))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("tiny (v1): Tiny starter:") and lines[0].endswith(": fits")
    assert lines[-1] == "pack tiny: installed"
    assert any(line.startswith("zim    tiny_en_all (nopic): done: tiny_en_all_nopic (2024-06-01)") for line in lines)
    archives = box.data / "archives"
    assert sha256(archives / "tiny_en_all_nopic.zim") == sha256(world["books"][("tiny_en_all", "2024-06-01")])
    assert sha256(archives / "livres_fr_all.zim") == sha256(world["books"][("livres_fr_all", "2023-03-01")])
    assert {b["name"] for b in box.json("content", "list")} == {"tiny_en_all_nopic", "livres_fr_all"}
    region = box.data / "maps" / "region-fi.pmtiles"
    assert region.is_file() and {m["name"] for m in box.json("maps", "list")} >= {"region-fi"}
    assert models_in(box.data) == ["qwen3-moe-4bit"]
    assert box.run("model", "verify", str(box.data / "models" / "qwen3-moe-4bit")).returncode == 0

    again = box.json("content", "install", "tiny", "--map-source", str(source))
    assert again["complete"] and [i["status"] for i in again["items"]] == ["installed"] * 4

    done = box.run("content", "install", "nomap")
    assert done.returncode == 1
    assert "map    map of NO to zoom 3: not installed: no planet map source: give --map-source" in done.stdout
    assert done.stdout.strip().endswith("pack nomap: 1 of 2 items not installed")


def test_the_service_resumes_a_download_killed_with_kill_9_and_its_jobs_json_shows_it(world, tmp_path):
    from content.downloads import JobStore

    box = Box(tmp_path)
    files = world["files"]
    url = publish(zim(BIG), files.root, files.url)
    files.faults({f"/{BIG}.zim": {"rate": 100_000}})  # 466 KB at 100 KB/s: killed on the way
    try:
        first = box.popen("content", "download", url, log="download.log")
        store = wait_for(lambda: (box.data / "almanac.db").exists() and JobStore(box.data / "almanac.db"), 30, "db")
        job = wait_for(lambda: next((j for j in store.list() if j.checkpoint > 0), None), 30, "a checkpoint")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        files.faults({})
    killed_at = store.get(job.id)
    assert killed_at.state == "running" and 0 < killed_at.checkpoint < zim(BIG).stat().st_size
    assert not (box.data / "archives" / "wikibooks_be_all_nopic.zim").exists()

    with box.serve() as portal:
        done = wait_for(
            lambda: (j := get_json(f"{portal}/api/jobs/{job.id}"))["state"] in ("done", "failed") and j, 60, "done"
        )
        assert done["state"] == "done", done
        listed = get_json(f"{portal}/api/jobs")
        assert [(j["id"], j["state"]) for j in listed["jobs"]] == [(job.id, "done")] and listed["counts"]["done"] == 1
        assert get_json(f"{portal}/api/jobs?state=running")["jobs"] == []
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{portal}/api/jobs/{job.id + 100}", timeout=10)
        assert missing.value.code == 404
        wait_for(lambda: "wikibooks_be_all_nopic" in get_text(f"{portal}/library?format=json"), 20, "in the portal")
        assert "<html" in get_text(f"{portal}/content/wikibooks_be_all_nopic/").lower()
    assert sha256(Path(done["result"])) == sha256(zim(BIG))
    resumed = [r["start"] for r in files.requests(f"/{BIG}.zim")][-1]
    assert resumed is not None and resumed >= killed_at.checkpoint  # went on from the checkpoint, not byte 0
    pid = int((box.data / "logs" / "downloads.log").read_text().split("(pid ")[1].split(")")[0])
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, "the downloader's process to stop with the portal")
    assert "downloader: stopped" in (box.data / "logs" / "downloads.log").read_text()
    store.close()


def test_an_update_keeps_content_links_working_in_the_portal(world, tmp_path):
    box = Box(tmp_path, world["kiwix"].url)
    old = next(e for e in box.json("content", "catalog")["entries"] if e["date"] == "2024-01-05")
    [installed] = box.json("content", "download", old["url"])
    assert installed["state"] == "done" and installed["name"] == "tiny_en_all_nopic", installed
    [update] = box.json("content", "updates")
    assert (update["book"], update["installed_date"], update["new_date"]) == (
        "tiny_en_all_nopic",
        "2024-01-05",
        "2024-06-01",
    )
    with box.serve() as portal:
        link = f"{portal}/content/tiny_en_all_nopic/"
        assert "The 2024-01-05 release of tiny_en_all" in get_text(link)
        queued = box.json("content", "update", "tiny_en_all_nopic", "--no-wait")
        assert queued["state"] == "queued" and queued["meta"]["replaces"] == "tiny_en_all_nopic"
        wait_for(lambda: get_json(f"{portal}/api/jobs/{queued['id']}")["state"] == "done", 60, "the update")
        wait_for(lambda: "The 2024-06-01 release of tiny_en_all" in get_text(link), 20, "the new release at the link")
    assert box.json("content", "updates") == []
    assert sha256(box.data / "archives" / "tiny_en_all_nopic.zim") == sha256(
        world["books"][("tiny_en_all", "2024-06-01")]
    )


def test_export_to_a_folder_and_import_from_it_round_trip(world, tmp_path):
    a, b = Box(tmp_path / "a"), Box(tmp_path / "b")
    for name in ("example", "small_nons"):
        assert a.run("content", "add", str(zim(name))).returncode == 0
    drive = tmp_path / "drive"
    drive.mkdir()
    report = a.json("content", "export", str(drive))
    assert sorted(e["name"] for e in report["exported"]) == ["example", "small_nons"]
    assert a.json("content", "export", str(drive), "example")["unchanged"] == ["example"]
    shutil.copytree(world["checkpoints"].streamed("qwen3_moe"), drive / "tiny-model")

    done = b.run("content", "import", str(drive))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "3 imported, 0 skipped, 0 refused"
    for name in ("example", "small_nons"):
        assert sha256(b.data / "archives" / f"{name}.zim") == sha256(zim(name))
    assert {x["name"] for x in b.json("content", "list")} == {"example", "small_nons"}
    assert models_in(b.data) == ["tiny-model"]
    again = b.json("content", "import", str(drive))
    assert again["imported"] == [] and len(again["skipped"]) == 3

    (drive / "tiny-model" / "experts" / "layer-000.bin").write_bytes(b"\0" * 100)
    c = Box(tmp_path / "c")
    done = c.run("content", "import", str(drive))
    assert done.returncode == 1 and "refused" in done.stdout and "model check failed" in done.stdout
    assert models_in(c.data) == []
    done = a.run("content", "export", str(tmp_path / "no-such-drive"))
    assert done.returncode == 2 and "no such folder" in done.stderr


def test_model_pull_from_a_hub_mirror_and_import_are_atomic(world, tmp_path):
    import llm_engine

    hub = world["hub"]
    box = Box(tmp_path, extra_env={"HF_ENDPOINT": hub.url})
    done = box.run("model", "pull", "tiny/qwen3-moe", "--bits", "4")
    assert done.returncode == 0, done.stderr
    dest = box.data / "models" / "qwen3-moe-4bit"
    assert done.stdout.startswith(f"pulled tiny/qwen3-moe -> {dest}: qwen3_moe, 2 MoE layers")
    assert "Fetching 4 files" in done.stderr and "convert" in done.stderr  # progress shown
    reference = llm_engine.convert(world["checkpoints"].hf("qwen3_moe"), tmp_path / "ref", bits=4, progress=False)
    assert reference.layers and llm_engine.verify(dest) == []
    for f in (tmp_path / "ref").rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (dest / f.relative_to(tmp_path / "ref")).read_bytes(), f
    served = [json.loads(line)["path"] for line in hub.log.read_text().splitlines()]
    assert any(p.endswith("/tiny/qwen3-moe/revision/main") for p in served)
    assert any("/tiny/qwen3-moe/resolve/" in p and p.endswith("/model.safetensors") for p in served)

    via_url = Box(tmp_path / "url")  # no HF_ENDPOINT: the mirror is named in the URL
    done = via_url.run("model", "pull", f"{hub.url}/tiny/qwen3-moe", "--name", "from-url", "--quiet")
    assert done.returncode == 0 and models_in(via_url.data) == ["from-url"], done.stderr

    done = box.run("model", "pull", "tiny/broken-moe", "--quiet")
    assert done.returncode == 1 and "download failed" in done.stderr
    assert models_in(box.data) == ["qwen3-moe-4bit"]  # nothing half-made
    done = box.run("model", "pull", "tiny/none", "--quiet")
    assert done.returncode == 1 and f"no repository tiny/none at {hub.url}" in done.stderr
    done = box.run("model", "pull", "tiny/qwen3-moe", "--bits", "4")
    assert done.returncode == 1 and "already exists" in done.stderr

    other = Box(tmp_path / "other")
    done = other.run("model", "import", str(dest))
    assert done.returncode == 0 and models_in(other.data) == ["qwen3-moe-4bit"], done.stderr
    assert llm_engine.verify(other.data / "models" / "qwen3-moe-4bit") == []
    broken = tmp_path / "broken-copy"
    shutil.copytree(dest, broken)
    layer = broken / "experts" / "layer-001.bin"
    data = bytearray(layer.read_bytes())
    data[100] ^= 0xFF
    layer.write_bytes(bytes(data))
    done = other.run("model", "import", str(broken))
    assert done.returncode == 1 and "does not verify, nothing copied" in done.stderr
    assert f"{layer}: expert 0 checksum mismatch" in done.stderr
    assert models_in(other.data) == ["qwen3-moe-4bit"]


def test_jobs_list_pause_resume_cancel_and_run(world, tmp_path):
    box = Box(tmp_path)
    url = publish(zim("small_nons"), world["files"].root, world["files"].url)
    queued = box.json("content", "download", url, "--no-wait")
    assert queued["state"] == "queued" and queued["name"] == "small_nons"
    jid = str(queued["id"])
    assert [j["state"] for j in box.json("jobs")["jobs"]] == ["queued"]
    assert box.json("jobs", "pause", jid)["state"] == "paused"
    done = box.run("jobs", "pause", jid)
    assert done.returncode == 2 and "only a queued or running job can be paused" in done.stderr
    assert box.json("jobs", "resume", jid)["state"] == "queued"
    listed = box.run("jobs")
    assert listed.stdout.split("\t")[:4] == [jid, "zim", "small_nons", "queued"]
    assert box.json("jobs", "cancel", jid)["state"] == "cancelled"
    second = box.json("content", "download", url, "--no-wait")
    ran = box.json("jobs", "run")["jobs"]
    assert [(j["id"], j["state"]) for j in ran] == [(second["id"], "done")]
    assert sha256(box.data / "archives" / "small_nons.zim") == sha256(zim("small_nons"))
    assert [j["state"] for j in box.json("jobs", "list", "--all")["jobs"]] == ["cancelled", "done"]


def test_jobs_api_is_read_only_json(client):
    empty = client.get("/api/jobs")
    assert empty.status_code == 200 and empty.json["jobs"] == [] and set(empty.json["counts"]) >= {"queued", "done"}
    bad = client.get("/api/jobs?state=bogus")
    assert bad.status_code == 400 and "unknown state 'bogus'" in bad.json["message"]
    missing = client.get("/api/jobs/1")
    assert missing.status_code == 404 and missing.json["message"] == "no download job 1"
    assert client.post("/api/jobs").status_code == 405  # read-only: the console changes jobs behind its login
