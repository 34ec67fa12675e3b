"""An OpenAI- and Ollama-compatible HTTP server for the engine, on the standard library.

HTTP threads parse requests (openai_api.py, ollama_api.py), hand Jobs to the one Worker
thread that owns the model, and write its events back: server-sent events or NDJSON while
streaming, one JSON object otherwise. Every error is a JSON reply in the called API's shape,
and the server keeps serving. A client that goes away cancels its request: the worker stops
at the next token.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import ollama_api, openai_api
from ..errors import EngineError
from .fields import ApiError, Limits, parse_body
from .tokens import LastUsed, TokenFile, TokenFileError, is_loopback
from .worker import Delta, Done, Failed, Started, Ticket, Worker

MAX_BODY = 16 << 20  # a long chat is well under a megabyte
POLL_S = 0.2  # how often a waiting request checks that its client is still there


@dataclass
class App:
    worker: Worker
    limits: Limits
    tokens: TokenFile | None = None  # asked of every client that is not on this machine
    last_used: LastUsed | None = None


def health(app: App) -> dict:
    w = app.worker
    return {"status": "ok", "model": w.info.name, "busy": w.busy, "queued": w.queued(), **asdict(w.counters)}


INFO = {
    "/health": health,
    "/v1/models": lambda app: openai_api.models(app.worker.info),
    "/api/tags": lambda app: ollama_api.tags(app.worker.info),
    "/api/version": lambda app: ollama_api.version(),
}
GENERATE = {
    "/v1/chat/completions": openai_api.chat,
    "/v1/completions": openai_api.completion,
    "/api/generate": ollama_api.generate,
    "/api/chat": ollama_api.chat,
}


def _peer_closed(sock: socket.socket) -> bool:
    """True when the client has closed its side (readable with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams use chunked transfer encoding
    server_version = "almanac-llm"
    timeout = 300  # an idle keep-alive connection gives its thread back after this
    server: Server

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        error = ollama_api.error if path.startswith("/api/") else openai_api.error
        app = self.server.app
        self._streaming = False
        try:
            if app.tokens is not None and not is_loopback(self.client_address[0]):
                used = app.tokens.match(self.headers.get("Authorization"))
                if used is None:
                    self.close_connection = True  # the body, if any, is not read
                    raise ApiError(401, "send a valid API token: Authorization: Bearer <token>", code="unauthorized")
                app.last_used.note(used)
            if method == "GET" and path in INFO:
                return self._json(200, INFO[path](app))
            if method == "POST" and path in GENERATE:
                body = parse_body(self._body())
                job, reply = GENERATE[path](body, app.worker.info, app.limits)
                if job is None:
                    return self._json(200, reply.loaded())
                return self._generate(app.worker.submit(job), reply, error)
            if path in INFO or path in GENERATE:
                raise ApiError(405, f"{method} is not allowed on {path}")
            raise ApiError(404, f"no such endpoint: {path}", code="not_found")
        except ApiError as e:
            self._json(e.status, error(e))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a bug: answer 500 (unless a stream is half sent), keep serving
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not self._streaming:
                self._json(500, error(ApiError(500, f"internal error: {type(e).__name__}: {e}")))

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(411, "send the body with a Content-Length")
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            n = -1
        if not 0 <= n <= MAX_BODY:
            self.close_connection = True  # the body was not read: the stream is out of step
            raise ApiError(413 if n > MAX_BODY else 400, f"bad Content-Length (at most {MAX_BODY})")
        return self.rfile.read(n)

    def _json(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="almanac-llm"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # --- generation -------------------------------------------------------------------

    def _next(self, ticket: Ticket):
        """The ticket's next event; None (and the ticket cancelled) once the client is gone."""
        while True:
            event = ticket.next(POLL_S)
            if time.monotonic() - self._checked >= POLL_S or event is None:
                self._checked = time.monotonic()
                if _peer_closed(self.connection):
                    ticket.cancel()
                    self.close_connection = True
                    return None
            if event is not None:
                return event

    def _generate(self, ticket: Ticket, reply, error) -> None:
        self._checked = time.monotonic()
        try:
            first = self._next(ticket)
            if isinstance(first, Failed):
                return self._json(first.status, error(ApiError(first.status, first.message)))
            if isinstance(first, Started):
                (self._stream if reply.stream else self._whole)(ticket, reply, error)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            ticket.cancel()
            self.close_connection = True

    def _whole(self, ticket: Ticket, reply, error) -> None:
        text = []
        while (event := self._next(ticket)) is not None:
            if isinstance(event, Delta):
                text.append(event.text)
            elif isinstance(event, Done):
                return self._json(200, reply.whole("".join(text), event))
            elif isinstance(event, Failed):
                return self._json(event.status, error(ApiError(event.status, event.message)))

    def _stream(self, ticket: Ticket, reply, error) -> None:
        sse = reply.framing == openai_api.SSE
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if sse else "application/x-ndjson")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(obj: dict | str) -> None:
            line = obj if isinstance(obj, str) else json.dumps(obj)
            data = (f"data: {line}\n\n" if sse else line + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        for obj in reply.first():
            send(obj)
        while (event := self._next(ticket)) is not None:
            if isinstance(event, Delta):
                send(reply.chunk(event.text))
                continue
            if isinstance(event, Done):
                for obj in reply.final(event):
                    send(obj)
            elif isinstance(event, Failed):  # the status line is sent: the error goes in-band
                send(error(ApiError(event.status, event.message)))
            if sse:
                send("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            return

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's signature)
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never blocks shutdown

    def __init__(self, address, app: App):
        super().__init__(address, Handler)
        self.app = app


def make_server(
    worker: Worker,
    host: str = "127.0.0.1",
    port: int = 11434,
    limits: Limits | None = None,
    api_tokens: str | os.PathLike | None = None,
) -> Server:
    """A bound server (port 0 picks a free one: read server.server_address); see token_check(). The last use of
    each token is noted beside the token file (tokens.LastUsed)."""
    tokens = token_check(host, api_tokens)
    last_used = LastUsed(api_tokens) if tokens is not None else None
    return Server((host, port), App(worker, limits or Limits(max_tokens=2048), tokens, last_used))


def token_check(host: str, api_tokens: str | os.PathLike | None) -> TokenFile | None:
    """The tokens a server on `host` asks of every client beyond this machine (loopback clients need none).

    A server on an address other than loopback must have a token file (SHA-256 digests, see tokens.py):
    EngineError without one, or when it cannot be read."""
    if api_tokens is None:
        if is_loopback(host):
            return None
        raise EngineError(
            f"listening on {host} serves the model to the network: give a token file (--api-tokens FILE, "
            "SHA-256 digests of the tokens clients send as Authorization: Bearer), or listen on 127.0.0.1"
        )
    try:
        return TokenFile(api_tokens)
    except TokenFileError as e:
        raise EngineError(f"api tokens: {e}") from None


def serve(
    path: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 11434,
    max_tokens_limit: int = 2048,
    max_prompt_tokens: int = 8192,
    on_ready=print,
    api_tokens: str | os.PathLike | None = None,
    **load_kwargs,
) -> None:
    """Load the model in DIR and serve it until SIGINT/SIGTERM. on_ready(url) once listening.

    `api_tokens`: the token file clients beyond this machine must match; required when `host` is not loopback.
    """
    if max_tokens_limit < 1:
        raise EngineError("max_tokens_limit must be >= 1")
    token_check(host, api_tokens)  # a server that may not start says so before the model is loaded
    worker = Worker.start(path, max_prompt_tokens, **load_kwargs)
    try:
        try:
            httpd = make_server(worker, host, port, Limits(max_tokens_limit), api_tokens)
        except OSError as e:
            raise EngineError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        if threading.current_thread() is threading.main_thread():
            # SystemExit unwinds serve_forever() so the finally blocks below run.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        bound_host, bound_port = httpd.server_address[:2]
        on_ready(f"http://{bound_host}:{bound_port}")
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            httpd.server_close()
            if httpd.app.last_used is not None:
                httpd.app.last_used.close()
    finally:
        worker.close()
