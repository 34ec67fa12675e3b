"""A small client for an OpenAI-compatible chat server: `almanac model serve`, or any such server on the LAN.

The portal runs several worker processes, and a model must be loaded once, so the model lives in its own
server process and the portal talks to it over HTTP. Only the stdlib: the assistant's one request type does
not justify an HTTP library.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Iterator


class ModelUnavailable(Exception):
    """No model answers at the configured URL, or it refused the request; the message says which.

    `status` is the HTTP status of a refusal (None: nothing answered, or the connection broke), so a caller
    can tell a request that will never succeed (4xx) from a server that may come back."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def refused(self) -> bool:
        return self.status is not None and 400 <= self.status < 500


STREAM_CUT = "the model server stopped answering (its connection closed in the middle of the answer)"


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str | None
    usage: dict | None


def _endpoint(base: str, path: str) -> str:
    """`path` (like "/models") under the server's /v1 root, whether or not `base` already ends in /v1."""
    base = base.rstrip("/")
    return f"{base}{path}" if base.endswith("/v1") else f"{base}/v1{path}"


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read() or b"{}")
        err = body.get("error")
        message = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        message = None
    return f"the model server answered {e.code}: {message or e.reason}"


def list_models(base: str, timeout: float = 3.0) -> list[str]:
    if not base:
        raise ModelUnavailable("no model server is configured (assistant.url is empty)")
    try:
        with urllib.request.urlopen(_endpoint(base, "/models"), timeout=timeout) as r:
            data = json.load(r)
    except urllib.error.HTTPError as e:
        raise ModelUnavailable(_error_text(e), e.code) from None
    except (OSError, ValueError) as e:
        raise ModelUnavailable(f"no model server answers at {base} ({_reason(e)})") from None
    return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]


@dataclass(frozen=True)
class ServerState:
    """What a model server says of itself: the model the assistant would ask, or why there is none."""

    url: str
    models: list[str]
    model: str | None  # the configured name, else the first listed; None when nothing can answer
    message: str | None  # why nothing can answer

    @property
    def available(self) -> bool:
        return self.model is not None


def probe(base: str, model: str = "", timeout: float = 2.0) -> ServerState:
    """Ask the server at `base` which models it has (portal page, `almanac status`, `almanac doctor`)."""
    try:
        names = list_models(base, timeout=timeout)
    except ModelUnavailable as e:
        return ServerState(base, [], None, str(e))
    chosen = model or (names[0] if names else None)
    return ServerState(base, names, chosen, None if chosen else f"the model server at {base} lists no model")


def health(base: str, timeout: float = 2.0) -> dict | None:
    """`almanac model serve`'s GET /health ({"busy", "queued", ...}); None when the server has none or is down."""
    root = base.rstrip("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/health", timeout=timeout) as r:
            data = json.load(r)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None) or e
    return str(reason).strip() or type(e).__name__


def chat_stream(
    base: str, model: str, messages: list[dict], max_tokens: int, temperature: float, timeout: float
) -> Iterator[Delta | Finished]:
    """Stream one chat completion: Delta events as text arrives, then one Finished.

    `model` empty: the first model the server lists. Raises ModelUnavailable before the first event when the
    server is down or refuses; a connection lost midway also raises it.
    """
    if not model:
        names = list_models(base, timeout=min(timeout, 5.0))
        if not names:
            raise ModelUnavailable(f"the model server at {base} lists no model")
        model = names[0]
    body = json.dumps(
        {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    req = urllib.request.Request(
        _endpoint(base, "/chat/completions"),
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise ModelUnavailable(_error_text(e), e.code) from None
    except OSError as e:
        raise ModelUnavailable(f"no model server answers at {base} ({_reason(e)})") from None
    finish, usage, ended = None, None, False
    try:
        with resp:
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    ended = True
                    break
                chunk = json.loads(payload)
                if chunk.get("error"):  # the server failed after the stream began: it says so in-band
                    err = chunk["error"]
                    raise ModelUnavailable(
                        f"the model server failed midway: {err.get('message') if isinstance(err, dict) else err}",
                        (err.get("code") if isinstance(err, dict) and isinstance(err.get("code"), int) else None),
                    )
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield Delta(text)
                    finish = choice.get("finish_reason") or finish
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise ModelUnavailable(f"the model server stopped answering ({_reason(e)})") from None
    if not ended and finish is None:
        # The connection closed between two chunks: the server process died or was restarted (a kill -9 closes
        # its sockets cleanly, and http.client reads a chunked body cut at a chunk boundary as a plain end).
        raise ModelUnavailable(STREAM_CUT)
    yield Finished(finish, usage)
