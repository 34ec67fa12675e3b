"""The assistant's stream from a real `almanac model serve` (tiny model, 127.0.0.1) when one end goes away.

The kill test (test_waiting_answers.py) sees one stream end early per run: that is its own kill -9 of the
model server, a second after the portal's death. These tests pin both halves down: a client that dies
mid-stream (the portal's runner, killed with it) must not cut the stream of the client after it, and a server
that dies mid-stream must be reported as a cut connection, not as an answer.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from urllib.parse import urlsplit

import pytest

from almanac_testing import start_model_server
from appliance.assistant import model_client

MESSAGES = [{"role": "user", "content": "Tell me about the library."}]


def _model(url: str) -> str:
    with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as r:
        return json.load(r)["data"][0]["id"]


def _health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
        return json.load(r)


def _collect(url: str, model: str, events: list, errors: list) -> None:
    try:
        events.extend(model_client.chat_stream(url, model, MESSAGES, 40, 0.0, timeout=60))
    except model_client.ModelUnavailable as e:
        errors.append(e)


def _raw_stream(url: str, model: str, max_tokens: int) -> socket.socket:
    """A streaming chat request on a bare socket, its first chunk read: a client that can vanish at once."""
    parts = urlsplit(url)
    body = json.dumps(
        {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    ).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    got = b""
    while b"data:" not in got:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the stream before its first chunk"
        got += chunk
    return sock


def test_a_client_gone_mid_stream_does_not_cut_the_stream_queued_behind_it(tmp_path, checkpoints):
    server, url = start_model_server(checkpoints.streamed("qwen3_moe"), 0, tmp_path / "model.log")
    try:
        model = _model(url)
        for _ in range(3):  # the race the kill test runs once, three times over
            dying = _raw_stream(url, model, max_tokens=2000)  # the old runner, mid-answer
            events: list = []
            errors: list = []

            # the new runner: asks while the old one's answer is still being written
            thread = threading.Thread(target=_collect, args=(url, model, events, errors))
            thread.start()
            dying.close()  # the portal's kill -9 takes its runner, and this connection, with it
            thread.join(120)
            assert not errors, f"the stream after a vanished client was cut: {errors}"
            assert isinstance(events[-1], model_client.Finished), events[-3:]
            assert events[-1].finish_reason == "length" and events[-1].usage["completion_tokens"] == 40
            assert "".join(e.text for e in events[:-1])
        health = _health(url)
        assert health["cancelled"] == 3 and health["served"] == 3 and health["failed"] == 0
    finally:
        server.kill()
        server.wait(10)


def test_a_server_killed_mid_stream_is_a_cut_connection_not_an_answer(tmp_path, checkpoints):
    server, url = start_model_server(checkpoints.streamed("qwen3_moe"), 0, tmp_path / "model.log")
    try:
        stream = model_client.chat_stream(url, _model(url), MESSAGES, 2000, 0.0, timeout=60)
        pieces = [next(stream) for _ in range(3)]
        assert all(isinstance(p, model_client.Delta) for p in pieces)
        server.kill()  # kill -9: the kernel closes its sockets, between two chunks of the stream
        server.wait(10)
        with pytest.raises(model_client.ModelUnavailable) as cut:
            for event in stream:
                assert not isinstance(event, model_client.Finished), "a cut stream passed for a whole answer"
        assert str(cut.value) == model_client.STREAM_CUT and cut.value.status is None and not cut.value.refused
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
