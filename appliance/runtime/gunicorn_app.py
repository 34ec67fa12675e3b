"""Run the portal under gunicorn, in the foreground or detached."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gunicorn.app.base import BaseApplication

from .config import Config
from .datadir import DataDir


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict, config: Config):
        self.options, self.almanac_config = options, config
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings:  # newer gunicorn options are skipped on older releases
                self.cfg.set(key, value)

    def load(self):
        from . import create_app

        return create_app(self.almanac_config)


def gunicorn_options(config: Config, data: DataDir, host: str, port: int, workers: int) -> dict:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": [bind],
        "workers": workers,
        "worker_class": "gthread",
        "threads": config.get("server.threads"),
        "timeout": config.get("server.timeout"),
        "graceful_timeout": 10,
        "keepalive": 5,
        "pidfile": str(data.pidfile),
        "accesslog": "-" if config.get("log_level") == "debug" else None,
        "errorlog": "-",
        "loglevel": config.get("log_level"),
        "proc_name": "almanac",
        # The app is built in each worker, so an archive opened by one worker is never shared across a fork.
        "preload_app": False,
        # gunicorn >= 24 opens a control socket under $HOME, which a sandboxed service user may not have.
        "control_socket_disable": True,
    }


def serve(config: Config, data: DataDir, host: str, port: int, workers: int) -> None:
    model = start_model_server(config, data)
    try:
        _Gunicorn(gunicorn_options(config, data, host, port, workers), config).run()
    finally:
        if model is not None:
            stop_child(model)


LOCAL_HOSTS = ("127.0.0.1", "localhost")  # `almanac model serve` listens on IPv4


class ModelServerError(RuntimeError):
    """The model beside the portal cannot be started; the message says why and what to change."""


def model_dir(config: Config, data: DataDir) -> Path | None:
    """The model `assistant.model_dir` names (a folder under models/, or a path); None when unset."""
    name = str(config.get("assistant.model_dir")).strip()
    if not name:
        return None
    path = Path(name).expanduser()
    return path if path.is_absolute() else data.models / path


def model_server_address(config: Config) -> tuple[str, int]:
    """Host and port of `assistant.url`, which must be this machine for Almanac to run the model there."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(config.get("assistant.url")))
    host = parts.hostname or ""
    if host not in LOCAL_HOSTS:
        raise ModelServerError(f"assistant.model_dir is set, so assistant.url must be on this machine "
                           f"(127.0.0.1), not {host or 'empty'}")
    return "127.0.0.1", parts.port or 80


def start_model_server(config: Config, data: DataDir) -> subprocess.Popen | None:
    """Run `almanac model serve` for `assistant.model_dir` beside the portal, logging to logs/model.log.

    The model gets its own process because every gunicorn worker would otherwise load it; the portal asks it
    over HTTP. Nothing is started when the option is empty or a server already answers at the URL.
    """
    directory = model_dir(config, data)
    if directory is None:
        return None
    if not (directory / "manifest.json").is_file():
        raise ModelServerError(f"assistant.model_dir: {directory} is not a converted model (no manifest.json); "
                           "convert one with `almanac model convert`")
    host, port = model_server_address(config)
    from .model_client import probe

    if probe(str(config.get("assistant.url")), timeout=1.0).models:
        return None  # one is running already (a previous portal's, or started by hand)
    log = open(data.logs / "model.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "appliance.cli", "model", "serve", str(directory),
                             "--host", host, "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=os.environ.copy())


def stop_child(proc: subprocess.Popen, wait_s: float = 20) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def running_pid(data: DataDir) -> int | None:
    try:
        pid = int(data.pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def health(host: str, port: int, timeout: float = 2.0) -> dict | None:
    import json

    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    url = f"http://[{probe_host}]:{port}/healthz" if ":" in probe_host else f"http://{probe_host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def start_detached(data: DataDir, args: list[str], host: str, port: int, wait_s: float = 60) -> int:
    """Start `almanac serve ARGS` in its own session, logging to logs/server.log; return once it answers."""
    log = open(data.logs / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", *args], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True, env=os.environ.copy())
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}; see {data.logs / 'server.log'}")
        if health(host, port, timeout=1):
            return proc.pid
        time.sleep(0.3)
    raise RuntimeError(f"the server did not answer within {wait_s:.0f} s; see {data.logs / 'server.log'}")


def stop(data: DataDir, wait_s: float = 30) -> int | None:
    pid = running_pid(data)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return pid
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return pid
