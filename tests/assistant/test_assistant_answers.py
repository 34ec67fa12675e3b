"""The assistant with a real model: `almanac model serve` on a tiny checkpoint, asked by the portal.

A tiny random model writes nonsense, but deterministic nonsense: at temperature 0 the portal's answer must be
exactly what the model server gives for the prompt built from the cited passages, so every step between the
question and the page (passages, prompt, HTTP, streaming, assembly) is checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from almanac_testing import ROOT, csrf_headers, free_port, sse_events, wait_http, zim

QUESTION = "How do I add zim files to the library?"
MAX_TOKENS = 12


def _start_model_server(model_dir: Path, port: int = 0) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "model", "serve", str(model_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    ready, _, _ = select.select([p.stdout], [], [], 120)
    line = p.stdout.readline() if ready else ""
    if " on http://127.0.0.1:" not in line:
        p.kill()
        pytest.fail(f"model server did not start: {line!r} {p.stderr.read()}")
    threading.Thread(target=p.stderr.read, daemon=True).start()  # its request log must not fill the pipe
    return p, line.split(" on ")[1].split()[0]


@pytest.fixture(scope="module")
def model_server(checkpoints):
    proc, url = _start_model_server(checkpoints.streamed("qwen3_moe"))
    yield url
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def config(data_dir, model_server):
    from appliance.config import load_config

    (data_dir.parent / "config.yaml").write_text(
        "server:\n  host: 127.0.0.1\n"
        f"assistant:\n  url: {model_server}\n  passages: 3\n  max_tokens: {MAX_TOKENS}\n  temperature: 0\n"
    )
    return load_config()


def _direct_reply(url: str, model: str, messages: list[dict]) -> dict:
    body = json.dumps({"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0}).encode()
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def test_the_answer_is_the_models_reply_to_the_cited_passages(client, model_server):
    from appliance.assistant import build_messages

    data = client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()
    assert data["model"]["available"] is True and data["model"]["model"]
    assert data["error"] is None and data["passages"]
    reply = _direct_reply(model_server, data["model"]["model"], build_messages(QUESTION, data["passages"]))
    assert reply["usage"]["completion_tokens"] == MAX_TOKENS  # the portal's max_tokens reached the model
    assert data["answer"] == reply["choices"][0]["message"]["content"] and data["answer"]
    assert data["finish_reason"] == reply["choices"][0]["finish_reason"] == "length"
    assert "Answers are written by" in client.get("/assistant").get_data(as_text=True)


def test_the_stream_adds_up_to_the_same_answer(client):
    whole = client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()
    r = client.get("/assistant/stream", query_string={"q": QUESTION}, headers={"Accept": "text/event-stream"})
    got = sse_events(r.get_data(as_text=True))
    names = [n for n, _ in got]
    assert names[0] == "passages" and names[-1] == "done" and set(names[1:-1]) == {"delta"}
    assert got[0][1] == whole["passages"]
    assert "".join(d["text"] for n, d in got if n == "delta") == whole["answer"]
    done = got[-1][1]
    assert done["answered"] is True and done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == MAX_TOKENS


@contextlib.contextmanager
def _portal(tmp_path: Path, assistant_yaml: str):
    """`almanac serve` as a real process on 127.0.0.1 with the example book; yields (url, data dir)."""
    data, port = tmp_path / "data", free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"server:\n  host: 127.0.0.1\nassistant:\n{assistant_yaml}")
    env = dict(os.environ, ALMANAC_DATA=str(data), ALMANAC_CONFIG=str(config), HF_HUB_OFFLINE="1")
    subprocess.run(
        [sys.executable, "-m", "appliance.cli", "content", "add", str(zim("example"))],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", data
    finally:
        serve.terminate()
        serve.wait(30)
        log.close()


def test_a_follow_up_is_answered_with_the_conversation_in_the_prompt(client, model_server):
    from appliance.assistant import build_messages

    first = client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()
    history = [{"q": QUESTION, "a": first["answer"]}]
    r = client.post(
        "/assistant/stream", json={"q": "Where do they come from?", "history": history}, headers=csrf_headers(client)
    )
    got = sse_events(r.get_data(as_text=True))
    cited = got[0][1]
    assert cited and got[-1][1]["answered"] is True
    reply = _direct_reply(
        model_server, first["model"]["model"], build_messages("Where do they come from?", cited, history)
    )
    assert "".join(d["text"] for n, d in got if n == "delta") == reply["choices"][0]["message"]["content"]
    # ... and the conversation did change what the model was asked.
    alone = _direct_reply(model_server, first["model"]["model"], build_messages("Where do they come from?", cited))
    assert alone["usage"]["prompt_tokens"] > 0
    assert reply["usage"]["prompt_tokens"] > alone["usage"]["prompt_tokens"]


def test_almanac_serve_runs_the_configured_model_beside_the_portal(tmp_path, checkpoints):
    model_port = free_port()
    with _portal(
        tmp_path,
        f"  url: http://127.0.0.1:{model_port}\n  model_dir: {checkpoints.streamed('qwen3_moe')}"
        "\n  max_tokens: 4\n  temperature: 0\n",
    ) as (url, data):
        wait_http(f"http://127.0.0.1:{model_port}/health", timeout=120)
        with urllib.request.urlopen(f"{url}/assistant?format=json&q=offline+wikipedia", timeout=120) as r:
            answer = json.load(r)
        assert answer["model"]["available"] is True
        assert answer["passages"] and answer["answer"]
        assert (data / "logs" / "model.log").is_file()
    # The model server went with the portal.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{model_port}/health", timeout=2)


def test_the_chat_page_in_a_browser_streams_the_answer_under_its_sources(tmp_path, model_server):
    pytest.importorskip("websocket", reason="websocket-client (dev dependency) drives Chromium")
    from appliance.assistant import build_messages
    from maps.cdp import Browser, chromium_path

    if chromium_path() is None:
        pytest.fail("Debian's chromium is required for the browser tests (apt-get install chromium)")
    with _portal(tmp_path, f"  url: {model_server}\n  max_tokens: {MAX_TOKENS}\n  temperature: 0\n  passages: 3\n") as (
        url,
        _data,
    ):
        with urllib.request.urlopen(f"{url}/assistant?format=json&q={urllib.parse.quote(QUESTION)}", timeout=120) as r:
            expected = json.load(r)
        b = Browser(chromium_path())
        try:
            b.watch_everything()
            b.call("Page.navigate", url=f"{url}/assistant")
            assert b.wait_for("document.body && document.body.dataset.assistant === 'ready'", 30), b.console_errors()
            b.evaluate(
                f"document.querySelector('#ask input[name=q]').value = {json.dumps(QUESTION)};"
                " document.querySelector('#ask button').click()"
            )
            assert b.wait_for("document.body.dataset.assistant === 'done'", 120), b.console_errors()
            assert b.evaluate("document.getElementById('answer').textContent") == expected["answer"]
            titles = b.evaluate("[...document.querySelectorAll('#sources li > a')].map(a => a.textContent)")
            assert titles == [p["title"] for p in expected["passages"]]
            hrefs = b.evaluate("[...document.querySelectorAll('#sources li > a')].map(a => a.getAttribute('href'))")
            assert hrefs == [p["url"] for p in expected["passages"]]
            assert b.evaluate("document.getElementById('error').hidden") is True
            # The conversation is saved on the box; the address resumes it.
            assert b.evaluate("location.search").startswith("?c=")
            saved = b.evaluate(
                "fetch('/conversations/' + new URLSearchParams(location.search).get('c') + '?format=json')"
                ".then(r => r.json())",
                await_promise=True,
            )
            assert [(e["q"], e["a"]) for e in saved["entries"]] == [(QUESTION, expected["answer"])]
            # A follow-up: the first turn moves up into the conversation, the second is asked with it.
            follow = "Where do they come from?"
            b.evaluate(
                f"document.querySelector('#ask input[name=q]').value = {json.dumps(follow)};"
                " document.querySelector('#ask button').click()"
            )
            assert b.wait_for(
                "document.body.dataset.assistant === 'done'"
                " && document.querySelectorAll('#conversation .turn').length === 1",
                120,
            )
            assert b.evaluate("document.querySelector('#conversation .turn .question').textContent") == QUESTION
            assert b.evaluate("document.querySelector('#conversation .turn .answer').textContent") == expected["answer"]
            assert b.evaluate("document.getElementById('asked').textContent") == follow
            # The page's follow-up is the model's one-go reply to the saved conversation's append-only prompt:
            # the first turn with its own passages and answer, then the follow-up's passages and question.
            saved = b.evaluate(
                "fetch('/conversations/' + new URLSearchParams(location.search).get('c') + '?format=json')"
                ".then(r => r.json())",
                await_promise=True,
            )
            first, then = saved["entries"]
            assert then["q"] == follow and then["passages"]
            messages = build_messages(
                follow, then["passages"], [{"q": first["q"], "a": first["a"], "passages": first["passages"]}]
            )
            assert messages[1]["content"].startswith("Passages from the library:")  # the first turn, as asked
            second = _direct_reply(model_server, expected["model"]["model"], messages)["choices"][0]["message"][
                "content"
            ]
            assert b.evaluate("document.getElementById('answer').textContent") == second == then["a"]
            assert b.evaluate("document.getElementById('restart').hidden") is False
            b.evaluate("document.getElementById('restart').click()")
            assert b.evaluate("document.querySelectorAll('#conversation .turn').length") == 0
            assert b.evaluate("document.getElementById('result').hidden") is True
            assert all(u.startswith(url) or u.startswith(("data:", "about:")) for u in b.requested_urls()), json.dumps(
                b.requested_urls()
            )
            assert b.console_errors() == []
        finally:
            b.close()


def test_a_model_dir_that_is_not_a_model_stops_serve_with_one_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"assistant:\n  model_dir: {tmp_path}\n")
    env = dict(os.environ, ALMANAC_DATA=str(tmp_path / "data"), ALMANAC_CONFIG=str(config))
    out = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "serve", "--port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert (
        out.stderr.strip().splitlines()[-1]
        == f"Error: assistant.model_dir: {tmp_path} is not a converted model (no manifest.json); "
        "convert one with `almanac model convert`"
    )


def test_almanac_ask_gives_the_pages_answer_from_the_same_generator(client, model_server):
    from almanac_testing import almanac
    from appliance.assistant import build_messages

    page = client.get("/assistant", query_string={"q": QUESTION, "format": "json"}).get_json()
    done = almanac("ask", QUESTION, "--json", env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["passages"] == page["passages"] and got["answer"] == page["answer"] and got["answer"]
    reply = _direct_reply(model_server, page["model"]["model"], build_messages(QUESTION, got["passages"]))
    assert got["answer"] == reply["choices"][0]["message"]["content"]
    assert got["finish_reason"] == "length" and got["usage"]["completion_tokens"] == MAX_TOKENS
    text = almanac("ask", QUESTION, env={"HF_HUB_OFFLINE": "1"})
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(got["answer"] + "\n\nSources:\n")
    assert (
        f"[1] {got['passages'][0]['title']} ({got['passages'][0]['book']}: {got['passages'][0]['url']})" in text.stdout
    )


def test_a_question_the_library_does_not_cover_never_reaches_the_model(client):
    r = client.get("/assistant/stream", query_string={"q": "Who won the football world cup in 1998?"})
    got = sse_events(r.get_data(as_text=True))
    assert [n for n, _ in got] == ["passages", "done"]  # no delta: the model wrote nothing
    assert got[1][1]["declined"] is True and got[1][1]["answered"] is False
