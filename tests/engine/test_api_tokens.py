"""API tokens of the model server: `almanac model serve` on 0.0.0.0, asked from this machine's LAN address,
refuses a request with no token, a wrong one or a revoked one (401) and answers a valid one; clients on this
machine (the portal) and a server on 127.0.0.1 need none. Tokens are made, listed and revoked with
`almanac model tokens`, which keeps their SHA-256 digests only."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from almanac_testing import ROOT, almanac
from engine_testing import model_serve

LAN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def model_dir(checkpoints, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tokens") / "tiny-qwen3"
    shutil.copytree(checkpoints.streamed("qwen3_moe"), d)
    return d


@pytest.fixture
def env(tmp_path) -> dict:
    (tmp_path / "config.yaml").write_text("server:\n  host: 127.0.0.1\n")
    return dict(
        os.environ,
        ALMANAC_DATA=str(tmp_path / "data"),
        ALMANAC_CONFIG=str(tmp_path / "config.yaml"),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
    )


def lan_address() -> str:
    from appliance.runtime.netinfo import lan_addresses

    found = lan_addresses()
    if not found:
        pytest.fail("this test needs a network interface with an address other than loopback")
    return found[0]


@contextlib.contextmanager
def serving(model_dir: Path, env: dict, *args: str):
    """`almanac model serve DIR --port 0 ARGS`; yields its port once it listens."""
    with model_serve(model_dir, *args, env=env, timeout=LAN_TIMEOUT_S) as (_p, url):
        yield int(url.rsplit(":", 1)[1])


def ask(host: str, port: int, token: str | None, path: str = "/v1/models", body: dict | None = None):
    """(status, JSON, WWW-Authenticate) of one request to the server at host:port."""
    c = http.client.HTTPConnection(host, port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    c.request("POST" if body else "GET", path, body=json.dumps(body).encode() if body else None, headers=headers)
    r = c.getresponse()
    out = r.status, json.loads(r.read()), r.getheader("WWW-Authenticate")
    c.close()
    return out


def create(env: dict, name: str) -> tuple[int, str]:
    done = almanac("model", "tokens", "create", name, "--json", env=env)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    return made["token"]["id"], made["secret"]


def test_lan_clients_need_a_valid_token(model_dir, env, tmp_path):
    phone_id, phone = create(env, "phone")
    laptop_id, laptop = create(env, "laptop")
    lan = lan_address()
    with serving(model_dir, env, "--host", "0.0.0.0") as port:
        # From the LAN: nothing without a valid token, on every endpoint.
        for token in (None, "", "alm_not-a-token", phone[:-1], phone + "x"):
            status, body, challenge = ask(lan, port, token)
            assert status == 401 and body["error"]["code"] == "unauthorized", (token, body)
            assert challenge and challenge.startswith("Bearer")
        status, body, _ = ask(
            lan, port, None, "/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert status == 401 and "error" in body  # the Ollama API's error shape
        # A valid token is answered: models, and a completion.
        status, body, _ = ask(lan, port, phone)
        assert status == 200 and body["data"][0]["id"] == model_dir.name
        status, body, _ = ask(
            lan, port, laptop, "/v1/completions", {"model": model_dir.name, "prompt": "Hi", "max_tokens": 3}
        )
        assert status == 200 and body["usage"]["completion_tokens"] >= 1
        # The real OpenAI client, with the token as its API key.
        from openai import OpenAI

        client = OpenAI(base_url=f"http://{lan}:{port}/v1", api_key=laptop, max_retries=0)
        assert [m.id for m in client.models.list().data] == [model_dir.name]
        # The server notes when each token was last used; the list shows it (a token unused shows none).
        _, unused = create(env, "unused")
        listed = {t["name"]: t for t in json.loads(almanac("model", "tokens", "list", "--json", env=env).stdout)}
        assert listed["phone"]["last_used"] and listed["laptop"]["last_used"] and listed["unused"]["last_used"] is None
        assert "last used never" in almanac("model", "tokens", "list", env=env).stdout
        # Revoked: refused from the next request on; the other token still works.
        done = almanac("model", "tokens", "revoke", str(phone_id), env=env)
        assert done.returncode == 0 and f"token {phone_id} revoked" in done.stdout
        assert ask(lan, port, phone)[0] == 401
        assert ask(lan, port, laptop)[0] == 200
        # A token made while it runs is taken at once.
        _, tablet = create(env, "tablet")
        assert ask(lan, port, tablet)[0] == 200
        # This machine (the portal beside it) needs none.
        assert ask("127.0.0.1", port, None)[0] == 200


def test_listing_and_storage_keep_no_secret(env, tmp_path):
    token_id, secret = create(env, "kitchen laptop")
    listed = almanac("model", "tokens", "list", "--json", env=env)
    assert listed.returncode == 0
    [row] = json.loads(listed.stdout)
    assert row["id"] == token_id and row["name"] == "kitchen laptop" and secret.startswith(row["hint"])
    assert len(row["hint"]) < len(secret) // 4
    data = Path(env["ALMANAC_DATA"])
    tokens_file = data / "model-api-tokens.sha256"
    import hashlib

    assert hashlib.sha256(secret.encode()).hexdigest() in tokens_file.read_text()
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    for f in data.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    # Plain text, and the errors.
    assert "kitchen laptop" in almanac("model", "tokens", "list", env=env).stdout
    again = almanac("model", "tokens", "create", "kitchen laptop", env=env)
    assert again.returncode == 1 and "exists already" in again.stderr
    blank = almanac("model", "tokens", "create", "  ", env=env)
    assert blank.returncode == 1 and "name" in blank.stderr
    missing = almanac("model", "tokens", "revoke", "999", env=env)
    assert missing.returncode == 2 and "no API token with id 999" in missing.stderr
    assert almanac("model", "tokens", "revoke", str(token_id), env=env).returncode == 0
    assert json.loads(almanac("model", "tokens", "list", "--json", env=env).stdout) == []
    assert "#" in tokens_file.read_text() and hashlib.sha256(secret.encode()).hexdigest() not in tokens_file.read_text()


def test_no_token_source_beyond_loopback_is_refused(model_dir, env, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli.model", "serve", str(model_dir), "--host", "0.0.0.0", "--api-tokens",
         str(tmp_path / "missing.sha256")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=LAN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 1 and "api tokens" in done.stderr and "missing.sha256" in done.stderr
    (tmp_path / "bad.sha256").write_text("not a digest\n")
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli.model", "serve", str(model_dir), "--host", "0.0.0.0", "--api-tokens",
         str(tmp_path / "bad.sha256")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=LAN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 1 and "line 1 is not a SHA-256 hex digest" in done.stderr


def test_loopback_server_keeps_the_old_behaviour(model_dir, env):
    with serving(model_dir, env) as port:
        status, body, _ = ask("127.0.0.1", port, None)
        assert status == 200 and body["data"][0]["id"] == model_dir.name
        assert ask("127.0.0.1", port, "anything")[0] == 200  # a client that sends a key anyway is answered
    assert not (Path(env["ALMANAC_DATA"]) / "model-api-tokens.sha256").exists()


def test_token_file_reload_and_fail_closed(tmp_path):
    from llm_engine.errors import EngineError
    from llm_engine.serve.http_server import token_check
    from llm_engine.serve.tokens import TokenFile, digest, is_loopback

    path = tmp_path / "tokens.sha256"
    path.write_text(f"# comment\n\n{digest('one')}  # the first\n")
    tokens = TokenFile(path)
    assert tokens.allows("Bearer one") and tokens.allows("bearer  one ") and not tokens.allows("Bearer two")
    assert not tokens.allows(None) and not tokens.allows("Basic one") and not tokens.allows("one")
    path.write_text(f"{digest('two')}\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    assert tokens.allows("Bearer two") and not tokens.allows("Bearer one")
    path.write_text("garbage\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert not tokens.allows("Bearer two")  # broken: every token refused until it is fixed
    path.unlink()
    assert not tokens.allows("Bearer two") and tokens.count() == 0
    path.write_text(f"{digest('two')}\n")
    assert tokens.allows("Bearer two")
    # The last use of each token, beside the file: at once the first time, then at most every every_s.
    from llm_engine.serve.tokens import LastUsed

    noted = LastUsed(path, every_s=3600)
    noted.note("a" * 64)
    first = json.loads(Path(f"{path}.last-used").read_text())
    assert set(first) == {"a" * 64}
    time.sleep(0.05)  # the second use of the token gets a later time
    noted.note("a" * 64)
    assert json.loads(Path(f"{path}.last-used").read_text()) == first  # not yet: within every_s
    noted.note("b" * 64)  # another token's first use: at once
    second = json.loads(Path(f"{path}.last-used").read_text())
    assert set(second) == {"a" * 64, "b" * 64} and second["a" * 64] > first["a" * 64]
    time.sleep(0.05)
    noted.note("a" * 64)
    assert json.loads(Path(f"{path}.last-used").read_text()) == second
    noted.close()  # what was noted since is written at close
    assert json.loads(Path(f"{path}.last-used").read_text())["a" * 64] > second["a" * 64]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("box.local")
    assert token_check("127.0.0.1", None) is None
    with pytest.raises(EngineError, match="serves the model to the network"):
        token_check("0.0.0.0", None)


def test_almanac_serve_serves_the_model_to_the_lan_with_tokens(tmp_path, model_dir):
    from almanac_testing import Portal, free_port, wait_http

    port = free_port()
    portal = Portal(
        tmp_path,
        "server:\n  host: 127.0.0.1\n"
        f"assistant:\n  url: http://127.0.0.1:{port}\n  model_dir: {model_dir}\n  serve_to_lan: true\n"
        "  max_tokens: 4\n  temperature: 0\n",
    )
    _, secret = create(portal.env, "phone")
    lan = lan_address()
    with portal:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=LAN_TIMEOUT_S)
        assert ask(lan, port, None)[0] == 401
        assert ask(lan, port, secret)[0] == 200
        # The portal beside it asks over loopback, with no token.
        with urllib.request.urlopen(f"{portal.url}/assistant?format=json&q=offline+wikipedia", timeout=120) as r:
            answer = json.load(r)
        assert answer["model"]["available"] is True and answer["answer"]
