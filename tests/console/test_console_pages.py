"""The console's pages and changes with Flask's test client, logged in: settings validated as `almanac
config set` validates them, a book removed, download jobs paused, resumed and cancelled through their state,
a drive export run as a task (the real `almanac` command in its own process), the status and doctor; and
`almanac admin set-password`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from almanac_testing import almanac, zim
from console_testing import PASSWORD, admin_token, login, set_password


@pytest.fixture
def admin(app, data_dir, client):
    set_password(data_dir)
    login(client)
    return client


def post(client, url, **form):
    return client.post(url, data={**form, "csrf_token": admin_token(client)}, headers={"Accept": "application/json"})


def wait_task(client, task_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(f"/admin/tasks/{task_id}?format=json").get_json()["task"]
        if task["state"] != "running":
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} still running after {timeout} s")


def test_settings_lists_every_key_with_its_default_and_validates_a_change(admin, data_dir):
    from appliance.config import load_defaults

    rows = admin.get("/admin/settings?format=json").get_json()["settings"]
    keys = [r["key"] for r in rows]
    assert keys[:3] == ["data_dir", "server.host", "server.port"] and "assistant.deep.timeout_s" in keys
    assert len(keys) == len(set(keys))
    defaults = load_defaults()
    for r in rows:
        node = defaults
        for part in r["key"].split("."):
            node = node[part]
        assert r["default"] == node and r["help"], r["key"]  # each key documented, with its default
    port = next(r for r in rows if r["key"] == "server.port")
    assert port["value"] == 8080 and port["restart"] and "1-65535" in port["help"]

    config_file = data_dir.parent / "config.yaml"
    r = post(admin, "/admin/settings", key="portal.title", value="Shelter library")
    assert r.status_code == 200 and r.get_json()["value"] == "Shelter library" and not r.get_json()["restart"]
    assert "Shelter library" in admin.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    saved = config_file.read_text()
    for key, value, message in (
        ("server.port", "99999", "out of range 1-65535"),
        ("assistant.temperature", "hot", "must be a number"),
        ("library.catalog_url", "ftp://x", "is not an http:// or https:// URL"),
        ("portal.title", "  ", "must not be empty"),
        ("server.nope", "1", "unknown key"),
    ):
        r = post(admin, "/admin/settings", key=key, value=value)
        assert r.status_code == 400 and message in r.get_json()["message"], (key, r.get_json())
    assert config_file.read_text() == saved  # a refused value loses nothing
    r = post(admin, "/admin/settings", key="server.port", value="8081")
    assert r.status_code == 200 and r.get_json()["restart"] and r.get_json()["value"] == 8081
    done = almanac("config", "show")
    assert "port: 8081" in done.stdout and "title: Shelter library" in done.stdout  # the CLI reads what was saved


def test_a_book_is_removed_and_its_file_deleted_only_from_archives(admin, data_dir, app):
    library = app.extensions["almanac"].library
    copy = data_dir / "archives" / "dropped_in.zim"
    shutil.copy(zim("small_withns"), copy)
    library.scan()
    [name] = [b.name for b in library.list() if b.path == str(copy)]
    r = post(admin, f"/admin/library/{name}/remove")
    assert r.status_code == 200 and r.get_json()["deleted"] and not copy.exists()
    r = post(admin, "/admin/library/example/remove")
    assert r.status_code == 200 and not r.get_json()["deleted"] and zim("example").exists()
    assert post(admin, "/admin/library/example/remove").status_code == 404
    names = [b["name"] for b in admin.get("/admin/library?format=json").get_json()["books"]]
    assert "example" not in names and name not in names and "poor" in names


def test_jobs_are_paused_resumed_and_cancelled_through_their_state(admin, app, data_dir):
    from content.downloads import JobStore

    store = JobStore(data_dir / "almanac.db")
    job = store.add(
        kind="zim", name="later", source="http://127.0.0.1:9/later.zim", urls=["http://127.0.0.1:9/later.zim"]
    )
    listed = admin.get("/admin/jobs?format=json").get_json()
    assert [(j["id"], j["state"]) for j in listed["jobs"]] == [(job.id, "queued")] and listed["tasks"] == []
    for verb, state in (("pause", "paused"), ("resume", "queued"), ("cancel", "cancelled")):
        r = post(admin, f"/admin/jobs/{job.id}/{verb}")
        assert r.status_code == 200 and r.get_json()["job"]["state"] == state, verb
        assert store.get(job.id).state == state  # the state in SQLite is what the downloader's process obeys
    r = post(admin, f"/admin/jobs/{job.id}/pause")
    assert r.status_code == 409 and "only a queued or running job can be paused" in r.get_json()["message"]
    assert post(admin, f"/admin/jobs/{job.id + 50}/pause").status_code == 404
    assert post(admin, f"/admin/jobs/{job.id}/explode").status_code == 404
    html = admin.get("/admin/jobs", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert f'id="job-{job.id}" data-state="cancelled"' in html  # a job just ended stays in sight
    store.close()


def test_a_drive_export_runs_as_a_task_and_reports_its_result(admin, tmp_path):
    drive = tmp_path / "usb"
    r = post(admin, "/admin/library/export", path=str(drive))
    task = wait_task(admin, r.get_json()["task"]["id"])
    assert task["state"] == "failed" and "no such folder (mount the drive" in task["message"], task
    drive.mkdir()
    r = post(admin, "/admin/library/export", path=str(drive))
    assert r.status_code == 200
    task = wait_task(admin, r.get_json()["task"]["id"])
    assert task["state"] == "done" and task["rc"] == 0, task
    result = admin.get(f"/admin/tasks/{task['id']}?format=json").get_json()["result"]
    assert {e["name"] for e in result["exported"]} >= {"example", "poor"}
    assert (drive / "SHA256SUMS").is_file() and (drive / "example.zim").is_file()

    r = post(admin, "/admin/library/import", path=str(tmp_path / "no-such-drive"))
    task = wait_task(admin, r.get_json()["task"]["id"])
    assert task["state"] == "failed" and task["rc"] != 0 and task["message"], task
    html = admin.get("/admin/jobs", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert f"import from {tmp_path / 'no-such-drive'}" in html and 'data-state="failed"' in html


def test_a_running_task_is_stopped(admin, data_dir, app):
    from appliance.web.console.common import tasks

    with app.test_request_context():
        task = tasks().start("model-serve", "a long one", ["model", "serve", str(data_dir / "no-model")])
    r = post(admin, f"/admin/tasks/{task.id}/stop")
    if r.status_code == 409:  # it ended by itself first (no such folder): stopping it is then refused
        assert "only a running task" in r.get_json()["message"]
    else:
        assert r.status_code == 200
    ended = wait_task(admin, task.id)
    assert ended["state"] in ("stopped", "failed")
    assert post(admin, f"/admin/tasks/{task.id}/stop").status_code == 409


def test_status_shows_status_and_doctor(admin):
    data = admin.get("/admin/status?format=json").get_json()
    assert {b["name"] for b in data["status"]["books"]} >= {"example"}
    assert data["status"]["disk"]["free_bytes"] > 0 and data["memory"]["total_bytes"] > 0
    names = [c["name"] for c in data["doctor"]["checks"]]
    assert names[:2] == ["python", "data dir"] and "libzim" in names
    assert next(c for c in data["doctor"]["checks"] if c["name"] == "libzim")["ok"]
    html = admin.get("/admin/status?doctor=0", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Run the checks" in html and "Disk" in html


def test_the_model_page_chooses_the_assistants_model(admin, data_dir):
    (data_dir / "models" / "half-made").mkdir(parents=True)
    data = admin.get("/admin/models?format=json").get_json()
    assert [m["name"] for m in data["models"]] == ["half-made"] and not data["models"][0]["converted"]
    r = post(admin, "/admin/models/choose", model_dir="half-made")
    assert r.status_code == 400 and "not a converted model" in r.get_json()["message"]
    r = post(admin, "/admin/models/server/start")
    assert r.status_code == 400 and "choose the assistant's model first" in r.get_json()["message"]
    r = post(admin, "/admin/models/server/stop")
    assert r.status_code == 409
    assert post(admin, "/admin/models/choose", model_dir="").get_json()["model_dir"] == ""


def test_maps_region_needs_a_source_and_one_of_country_or_box(admin):
    r = admin.get("/admin/maps/estimate?format=json&country=FI&bbox=1,2,3,4")
    assert r.status_code == 400 and "exactly one of country" in r.get_json()["message"]
    r = admin.get("/admin/maps/estimate?format=json&country=FI&maxzoom=4")
    assert r.status_code == 400 and "no planet map source" in r.get_json()["message"]
    r = admin.get("/admin/maps/estimate?format=json&bbox=30,10,20,40&source=/x.pmtiles")
    assert r.status_code == 400 and "W < E" in r.get_json()["message"]


def test_the_catalog_and_packs_say_what_to_set_without_a_catalog(admin):
    data = admin.get("/admin/catalog?format=json").get_json()
    assert data["catalog"] is None and "no catalog is set" in data["error"]
    packs = admin.get("/admin/packs?format=json").get_json()
    assert packs["plans"] == [] and "no catalog is set" in packs["error"] and packs["packs"]
    r = post(admin, "/admin/packs/nope/install")
    assert r.status_code == 404


def test_admin_set_password_cli(data_dir, tmp_path):
    from appliance import admin_password

    file = tmp_path / "pw"
    file.write_text(PASSWORD + "\n")
    done = almanac("admin", "set-password", "--password-file", str(file))
    assert done.returncode == 0 and admin_password.check(data_dir, PASSWORD), done.stderr
    done = almanac("admin", "set-password", "--generate", "--keep")
    assert done.returncode == 0 and "kept" in done.stdout and admin_password.check(data_dir, PASSWORD)
    done = almanac("admin", "set-password", "--generate")
    generated = done.stdout.splitlines()[0].split(": ", 1)[1]
    assert done.returncode == 0 and admin_password.check(data_dir, generated) and len(generated) == 23
    file.write_text("short\n")
    done = almanac("admin", "set-password", "--password-file", str(file))
    assert done.returncode == 2 and "at least 8 characters" in done.stderr and admin_password.check(data_dir, generated)
    done = subprocess.run(  # no file: asked twice
        [sys.executable, "-m", "appliance.cli", "admin", "set-password"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and admin_password.check(data_dir, PASSWORD), done.stderr
    assert "open session" in almanac("admin", "status").stdout
    assert json.loads(almanac("doctor", "--json").stdout)["checks"][0]["name"] == "python"


def test_a_map_region_is_sized_first_then_cut_as_a_task_and_served(admin, data_dir):
    from almanac_testing import MAPS

    source = MAPS / "world-ne10m-z0-6.pmtiles"
    r = admin.get(f"/admin/maps/estimate?format=json&bbox=20,59,32,70&maxzoom=4&source={source}")
    estimate = r.get_json()
    assert r.status_code == 200 and estimate["tiles"] > 0 and estimate["bytes_needed"] > 0, estimate
    assert estimate["name"] == "region-20.00_59.00_32.00_70.00"
    assert not (data_dir / "maps" / f"{estimate['name']}.pmtiles").exists()  # an estimate fetches nothing
    r = post(admin, "/admin/maps/region", bbox="20,59,32,70", maxzoom="4", source=str(source), name="finland")
    task = wait_task(admin, r.get_json()["task"]["id"])
    assert task["state"] == "done", task
    maps = admin.get("/admin/maps?format=json").get_json()["maps"]
    assert "finland" in {m["name"] for m in maps}
    r = post(admin, "/admin/maps/finland/remove")
    assert r.status_code == 200 and r.get_json()["deleted"] and not (data_dir / "maps" / "finland.pmtiles").exists()
    assert (
        post(admin, "/admin/maps/region", bbox="20,59,32,70", maxzoom="4", name="../x", source="s").status_code == 400
    )


def test_model_api_tokens_are_made_shown_once_and_revoked(admin, data_dir):
    import hashlib

    from appliance import api_tokens

    token_file = data_dir / api_tokens.FILE_NAME
    r = post(admin, "/admin/tokens", name="kitchen laptop")
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
    made = r.get_json()
    secret = made["secret"]
    assert made["created"]["name"] == "kitchen laptop" and secret.startswith(made["created"]["hint"])
    # The model server's file holds its digest only; the list never shows the secret again.
    digests = token_file.read_text().split()
    assert hashlib.sha256(secret.encode()).hexdigest() in digests and secret not in token_file.read_text()
    listed = admin.get("/admin/tokens?format=json").get_json()
    assert [t["name"] for t in listed["tokens"]] == ["kitchen laptop"] and secret not in json.dumps(listed)
    assert listed["served_to_lan"] is False
    # The page form: the secret on that answer only.
    html = admin.post(
        "/admin/tokens", data={"name": "phone", "csrf_token": admin_token(admin)}, headers={"Accept": "text/html"}
    )
    page = html.get_data(as_text=True)
    assert html.status_code == 201 and 'id="secret-value"' in page and "Copy its secret now" in page
    assert 'id="secret-value"' not in admin.get("/admin/tokens", headers={"Accept": "text/html"}).get_data(True)
    # Bad names say why; a second token of the same name is refused.
    assert post(admin, "/admin/tokens", name="").status_code == 400
    again = post(admin, "/admin/tokens", name="phone")
    assert again.status_code == 400 and "exists already" in again.get_json()["message"]
    # Revoked: gone from the list and from the server's file.
    r = post(admin, f"/admin/tokens/{made['created']['id']}/revoke")
    assert r.status_code == 200 and "revoked" in r.get_json()["message"]
    assert hashlib.sha256(secret.encode()).hexdigest() not in token_file.read_text()
    assert [t["name"] for t in admin.get("/admin/tokens?format=json").get_json()["tokens"]] == ["phone"]
    assert post(admin, f"/admin/tokens/{made['created']['id']}/revoke").status_code == 404
