"""Waiting answers with real processes: `almanac serve` (gunicorn, two workers, the answer runner beside it) and
`almanac model serve` on a tiny model, both on 127.0.0.1, killed with SIGKILL while a job is being written.

At temperature 0 the tiny model's answer is deterministic, so the answer finally stored must be exactly what
the same server gives for the job's prompt in one request: nothing of the interrupted attempts may leak in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from almanac_testing import Device, Portal, free_port, start_model_server, wait_http
from appliance.assistant import model_client

QUESTION = "How do I add zim files to the library?"
MAX_TOKENS = 500  # a few seconds of the tiny model: long enough to be killed midway


def _config(model_url: str, quick_url: str | None = None) -> str:
    return (
        "server:\n  host: 127.0.0.1\n"
        f"assistant:\n  url: {quick_url or model_url}\n  temperature: 0\n  passages: 3\n"
        f"  deep:\n    url: {model_url}\n    passages: 3\n    max_tokens: {MAX_TOKENS}\n    timeout_s: 60\n"
    )


def _wait_job(device: Device, portal: Portal, job_id: int, until, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        status, body = device.request(f"{portal.url}/answers/{job_id}?format=json")
        assert status == 200, body
        job = body["job"]
        if until(job):
            return job
        time.sleep(0.1)
    logs = (portal.data / "logs" / "answers.log").read_text()
    if (portal.root / "model.log").exists():
        logs += (portal.root / "model.log").read_text()[-3000:]
    raise AssertionError(f"job never reached the state wanted: {job}\n{logs}")


def _one_go(model_url: str, messages: list[dict]) -> dict:
    with urllib.request.urlopen(f"{model_url}/v1/models", timeout=10) as r:
        model = json.load(r)["data"][0]["id"]
    body = json.dumps({"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0}).encode()
    req = urllib.request.Request(
        f"{model_url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def test_a_waiting_answer_survives_kill_9_of_the_portal_and_of_the_model_server(tmp_path, checkpoints):
    model_dir = checkpoints.streamed("qwen3_moe")
    model_port = free_port()
    model, model_url = start_model_server(model_dir, model_port, tmp_path / "model.log")
    phone = Device()
    portal = Portal(tmp_path, _config(model_url))
    try:
        portal.start()
        status, body = phone.request(f"{portal.url}/answers", "POST", {"q": QUESTION})
        assert status == 201, body
        job = body["job"]
        assert job["status"] == "queued" and job["position"] == 1 and job["passages"] and phone.cookie
        assert job["messages"][-1]["content"].endswith(f"Question: {QUESTION}")

        # 1. The portal dies (kill -9) while the runner writes the answer; the phone is gone too.
        _wait_job(phone, portal, job["id"], lambda j: j["status"] == "running" and j["tokens"] > 5)
        portal.kill()
        portal.start()  # a new portal on the same data dir: its runner finds the job interrupted
        job = _wait_job(phone, portal, job["id"], lambda j: j["note"] and j["status"] in ("running", "done"))
        assert job["note"].startswith("restarted from the beginning: the answer runner stopped while writing it")
        assert job["attempts"] == 2

        # 2. The model server dies (kill -9) mid-answer and comes back on the same port.
        job = _wait_job(phone, portal, job["id"], lambda j: j["status"] == "running" and j["tokens"] > 5)
        assert job["attempts"] == 2
        model.kill()
        model.wait(10)
        job = _wait_job(phone, portal, job["id"], lambda j: "model server stopped answering" in (j["note"] or ""))
        assert job["status"] == "queued"  # it waits for the model, in its place
        model, _ = start_model_server(model_dir, model_port, tmp_path / "model.log")
        job = _wait_job(phone, portal, job["id"], lambda j: j["status"] == "done", timeout=180)
        assert job["attempts"] == 3 and job["finish_reason"] == "length"
        # One stream broke off, the one the model server's kill -9 cut; the portal's death cut none.
        log = (portal.data / "logs" / "answers.log").read_text()
        assert log.count("stopped answering") == 1 and model_client.STREAM_CUT in log, log

        # The answer is the model's one-go answer to the prompt kept in the job, to the byte.
        reply = _one_go(model_url, job["messages"])
        assert job["answer"] == reply["choices"][0]["message"]["content"] and job["answer"]
        assert job["completion_tokens"] == reply["usage"]["completion_tokens"] == MAX_TOKENS
        assert job["prompt_tokens"] == reply["usage"]["prompt_tokens"]

        # The inbox lists it as ready, the header counts it until it is read, and the speeds were measured.
        status, inbox = phone.request(f"{portal.url}/answers?format=json")
        assert inbox["ready"] == 1 and [j["id"] for j in inbox["jobs"]] == [job["id"]]
        assert inbox["deep"]["available"] is True and inbox["deep"]["eta_s"] > 0
        assert "Ask the deep model — ready in about" in inbox["deep"]["label"]
        status, html = phone.request(f"{portal.url}/assistant", accept="text/html")
        assert "1 answer ready" in html
        status, html = phone.request(f"{portal.url}/answers/{job['id']}", accept="text/html")
        assert status == 200 and 'id="source-1"' in html
        assert phone.request(f"{portal.url}/answers/ready")[1] == {"ready": 0, "waiting": 0}
    finally:
        portal.stop()
        model.kill()
        model.wait(10)


def _model_pids(log: Path) -> list[int]:
    """The model servers the supervisor started, in order, from its lines in the model log."""
    return [int(m) for m in re.findall(r"supervisor: model server started \(pid (\d+)\)", log.read_text())]


def test_almanac_serve_restarts_a_dead_model_server_and_the_waiting_answer_goes_on(tmp_path, checkpoints):
    model_dir = checkpoints.streamed("qwen3_moe")
    model_url = f"http://127.0.0.1:{free_port()}"
    config = _config(model_url).replace("  temperature: 0\n", f"  temperature: 0\n  model_dir: {model_dir}\n")
    phone = Device()
    portal = Portal(tmp_path, config)
    log = portal.data / "logs" / "model.log"
    try:
        portal.start()  # it starts the model server, under its supervisor, for assistant.model_dir
        wait_http(f"{model_url}/v1/models", timeout=120)
        status, body = phone.request(f"{portal.url}/answers", "POST", {"q": QUESTION})
        assert status == 201, body
        job_id = body["job"]["id"]
        _wait_job(phone, portal, job_id, lambda j: j["status"] == "running" and j["tokens"] > 5)
        [first] = _model_pids(log)
        os.kill(first, signal.SIGKILL)  # the OOM killer, say: the portal must bring the model back by itself
        job = _wait_job(phone, portal, job_id, lambda j: "model server stopped answering" in (j["note"] or ""))
        assert job["note"].startswith("restarted from the beginning")  # no exact resume: see docs/assistant.md
        job = _wait_job(phone, portal, job_id, lambda j: j["status"] == "done", timeout=180)
        assert job["attempts"] == 2 and job["finish_reason"] == "length"
        assert job["answer"] == _one_go(model_url, job["messages"])["choices"][0]["message"]["content"]
        text = log.read_text()
        assert f"model server (pid {first}) ended with signal 9" in text and "restarting it in 1 s" in text
        second = _model_pids(log)[1]
        assert second != first and portal.proc.poll() is None  # the portal never went down
        assert phone.request(f"{portal.url}/healthz")[0] == 200

        # A portal killed with -9 takes its model server with it: the next portal starts its own.
        portal.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{second}").exists():
            time.sleep(0.2)
        assert not Path(f"/proc/{second}").exists(), "the model server outlived its portal"
    finally:
        portal.stop()
        for pid in _model_pids(log) if log.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_jobs_are_private_cancel_and_delete_and_bad_requests_lose_nothing(tmp_path):
    # No model server at all: jobs wait in the queue, which is what cancel and delete act on.
    nowhere = f"http://127.0.0.1:{free_port()}"
    with Portal(tmp_path, _config(nowhere)) as portal:
        phone, laptop = Device(), Device()
        status, body = phone.request(f"{portal.url}/answers", "POST", {"q": QUESTION})
        assert status == 201
        first = body["job"]
        status, body = phone.request(f"{portal.url}/answers", "POST", {"q": "What is Kiwix?", "books": ["example"]})
        second = body["job"]
        assert second["position"] == 2 and second["books"] == ["example"]
        # The other device sees none of them, and cannot touch them.
        assert laptop.request(f"{portal.url}/answers?format=json")[1]["jobs"] == []
        assert laptop.request(f"{portal.url}/answers/{first['id']}?format=json")[0] == 404
        assert laptop.request(f"{portal.url}/answers/{first['id']}/cancel", "POST", {})[0] == 404
        assert laptop.request(f"{portal.url}/answers/{first['id']}", "DELETE")[0] == 404
        # Bad input: a clear error each time, and the queue is untouched.
        for bad, code, words in (
            ({"q": "the of"}, 400, "no words"),
            ({"q": "wikipedia", "books": "example"}, 400, "books must be a list"),
            ({"q": "wikipedia", "books": ["nosuchbook"]}, 404, "None of the requested books"),
            ({"q": "wikipedia", "conversation": "nosuch"}, 404, "No such conversation"),
            ({"q": "What is the population of the library of Alexandria?"}, 422, "does not cover"),
        ):
            status, body = phone.request(f"{portal.url}/answers", "POST", bad)
            assert status == code and words in body["message"], (bad, body)
        assert [j["id"] for j in phone.request(f"{portal.url}/answers?format=json")[1]["jobs"]] == [
            second["id"],
            first["id"],
        ]
        # Cancel, then delete.
        status, body = phone.request(f"{portal.url}/answers/{first['id']}/cancel", "POST", {})
        assert body["cancelled"] is True and body["job"]["status"] == "cancelled"
        assert phone.request(f"{portal.url}/answers/{first['id']}/cancel", "POST", {})[1]["cancelled"] is False
        status, body = phone.request(f"{portal.url}/answers?format=json")
        assert {j["id"]: j["position"] for j in body["jobs"]} == {second["id"]: 1, first["id"]: None}
        assert phone.request(f"{portal.url}/answers/{second['id']}", "DELETE")[1] == {
            "deleted": True,
            "id": second["id"],
        }
        assert [j["id"] for j in phone.request(f"{portal.url}/answers?format=json")[1]["jobs"]] == [first["id"]]


def test_almanac_ask_later_and_almanac_answers(tmp_path):
    from almanac_testing import almanac

    nowhere = f"http://127.0.0.1:{free_port()}"
    portal = Portal(tmp_path, _config(nowhere))  # books added, nothing started: the CLI alone
    queued = almanac("ask", "--later", "--json", QUESTION, env=portal.env)
    assert queued.returncode == 0, queued.stderr
    job = json.loads(queued.stdout)
    assert job["status"] == "queued" and job["passages"]
    listed = almanac("answers", "list", env=portal.env)
    assert f"{job['id']:>5}" in listed.stdout and "queued, number 1 in line" in listed.stdout
    assert QUESTION in listed.stdout
    assert almanac("answers", "cancel", str(job["id"]), env=portal.env).stdout.strip() == f"cancelled {job['id']}"
    again = almanac("answers", "cancel", str(job["id"]), env=portal.env)
    assert again.returncode == 1 and "is cancelled, not waiting" in again.stderr
    assert almanac("answers", "delete", str(job["id"]), env=portal.env).returncode == 0
    gone = almanac("answers", "show", str(job["id"]), env=portal.env)
    assert gone.returncode == 1 and f"no waiting answer {job['id']}" in gone.stderr
    declined = almanac("ask", "--later", "What is the population of the library of Alexandria?", env=portal.env)
    assert declined.returncode == 1 and "The library does not cover this question." in declined.stderr
    assert "The nearest titles:" in declined.stderr
    portal.config.write_text("server:\n  host: 127.0.0.1\n")
    none = almanac("ask", "--later", QUESTION, env=portal.env)
    assert none.returncode == 1 and "no deep model is configured" in none.stderr


@pytest.mark.parametrize("key, value", [("assistant.deep.url", "ftp://x"), ("assistant.deep.max_tokens", 0)])
def test_bad_deep_settings_name_the_key(tmp_path, key, value):
    from appliance.config import ConfigError, load_config

    section, name = key.rsplit(".", 1)
    path = tmp_path / "config.yaml"
    path.write_text(f"assistant:\n  deep:\n    {name}: {json.dumps(value)}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    assert e.value.key == key


def test_the_inbox_and_the_ready_notification_in_chromium(tmp_path, checkpoints):
    pytest.importorskip("websocket", reason="websocket-client (dev dependency) drives Chromium")
    from maps.cdp import Browser, chromium_path

    if chromium_path() is None:
        pytest.fail("Debian's chromium is required for the browser tests (apt-get install chromium)")
    model, model_url = start_model_server(checkpoints.streamed("qwen3_moe"))
    try:
        with Portal(tmp_path, _config(model_url)) as portal:
            b = Browser(chromium_path())
            try:
                b.watch_everything()
                b.call("Page.navigate", url=f"{portal.url}/assistant")
                assert b.wait_for("document.body && document.body.dataset.assistant === 'ready'", 30)
                label = b.evaluate("document.getElementById('later').textContent")
                assert label.startswith("Ask the deep model")
                assert b.evaluate("document.getElementById('answers-ready').hidden") is True
                b.evaluate(
                    f"document.querySelector('#ask input[name=q]').value = {json.dumps(QUESTION)};"
                    " document.getElementById('later').click()"
                )
                assert b.wait_for("document.body.dataset.later === 'queued'", 30), b.console_errors()
                assert "number 1 in line" in b.evaluate("document.getElementById('later-note').textContent")
                # No reload: the header learns by itself that the answer is ready.
                assert b.wait_for(
                    "!document.getElementById('answers-ready').hidden"
                    " && document.getElementById('answers-ready').textContent === '1 answer ready'",
                    90,
                ), b.console_errors()
                # The inbox lists it; its page shows the answer the JSON API holds, then it counts as read.
                b.call("Page.navigate", url=f"{portal.url}/answers")
                assert b.wait_for("document.querySelector('#jobs li[data-status=done]') !== null", 30)
                assert b.evaluate("document.querySelector('#jobs li .status').textContent") == "ready (new)"
                assert b.evaluate("document.querySelector('#jobs li > a').textContent") == QUESTION
                b.evaluate("document.querySelector('#jobs li > a').click()")
                assert b.wait_for("document.getElementById('job') !== null", 30)
                job = b.evaluate("fetch(location.pathname + '?format=json').then(r => r.json())", await_promise=True)[
                    "job"
                ]
                assert job["status"] == "done" and job["answer"]
                assert b.evaluate("document.getElementById('answer').textContent") == job["answer"]
                assert b.evaluate("document.querySelectorAll('#sources li').length") == len(job["passages"])
                b.call("Page.reload")
                assert b.wait_for("document.readyState === 'complete' && document.getElementById('job') !== null", 30)
                assert b.evaluate("document.getElementById('answers-ready').hidden") is True
                assert b.console_errors() == []
            finally:
                b.close()
    finally:
        model.kill()
        model.wait(10)


def test_almanac_doctor_checks_the_deep_model_with_a_fix_line(tmp_path, checkpoints):
    from almanac_testing import almanac

    model_dir = checkpoints.streamed("qwen3_moe")
    port = free_port()
    quick = f"http://127.0.0.1:{free_port()}"
    env = {"ALMANAC_DATA": str(tmp_path / "data"), "ALMANAC_CONFIG": str(tmp_path / "config.yaml")}

    def doctor(deep: str) -> str:
        (tmp_path / "config.yaml").write_text(
            f"server:\n  host: 127.0.0.1\n  port: {free_port()}\nassistant:\n  url: {quick}\n  deep:\n{deep}"
        )
        return almanac("doctor", env=env).stdout.splitlines()

    def deep_lines(lines: list[str]) -> list[str]:
        i = next(i for i, line in enumerate(lines) if line[4:].strip().startswith("deep model:"))
        return lines[i : i + 2]

    none = deep_lines(doctor("    url: ''\n"))
    assert none[0] == "OK   deep model: none configured (assistant.deep.url is empty): no waiting answers"
    url = f"http://127.0.0.1:{port}"
    broken = deep_lines(doctor(f"    url: {url}\n    model_dir: {tmp_path / 'nothing'}\n"))
    assert broken[0].startswith("FAIL deep model: assistant.deep.model_dir") and "not a loadable" in broken[0]
    assert broken[1].strip().startswith("fix: convert one with `almanac model convert")
    down = deep_lines(doctor(f"    url: {url}\n    model_dir: {model_dir}\n"))
    assert down[0].startswith("FAIL deep model: waiting answers wait: no model server answers at")
    assert down[1].strip().startswith("fix: start the portal (`almanac serve`)") and "model-deep.log" in down[1]
    server, _ = start_model_server(model_dir, port)
    try:
        up = deep_lines(doctor(f"    url: {url}\n    model_dir: {model_dir}\n"))
        assert up[0] == f"OK   deep model: {model_dir.name} answering at {url}"
        wrong = deep_lines(doctor(f"    url: {url}\n    model: nosuch\n"))
        assert wrong[0] == f"FAIL deep model: the server at {url} lists {model_dir.name}, not nosuch"
        assert (
            wrong[1].strip()
            == f"fix: `almanac config set assistant.deep.model {model_dir.name}` (or empty: the first it lists)"
        )
    finally:
        server.kill()
        server.wait(10)
