"""The model server beside the portal: `almanac model serve` for `assistant.model_dir`, in its own process,
kept running by a small supervisor process (`python -m appliance.runtime.model_process`).

The model gets its own process because every gunicorn worker would otherwise load it; the portal asks it over
HTTP (appliance.assistant.model_client). The supervisor restarts it when it dies (a crash, the OOM killer, a
kill -9), after a backoff that doubles from RESTART_S up to RESTART_MAX_S while it keeps dying soon after its
start, each restart logged in its log; a waiting answer cut by the death is queued again by the answer runner
and written again once the server answers. The supervisor stops its server when it is told to stop (SIGTERM)
or when the portal that started it is gone, so a killed portal leaves no model behind for the next to trip on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from .. import api_tokens
from ..assistant.model_client import probe
from ..config import Config
from ..datadir import DataDir

LOCAL_HOSTS = ("127.0.0.1", "localhost")  # `almanac model serve` listens on IPv4


class ModelServerError(RuntimeError):
    """The model beside the portal cannot be started; the message says why and what to change."""


def model_server_address(url: str, key: str = "assistant.url") -> tuple[str, int]:
    """Host and port of a model server's URL, which must be this machine for Almanac to run the model there."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in LOCAL_HOSTS:
        model_key = key.rsplit(".", 1)[0] + ".model_dir"
        raise ModelServerError(
            f"{model_key} is set, so {key} must be on this machine (127.0.0.1), not {host or 'empty'}"
        )
    return "127.0.0.1", parts.port or 80


def start_model_server(config: Config, data: DataDir, prefix: str = "assistant") -> subprocess.Popen | None:
    """Run `almanac model serve` for `<prefix>.model_dir` on the port of `<prefix>.url` beside the portal,
    logging to logs/model.log (the deep model's to logs/model-deep.log). With assistant.serve_to_lan it listens
    on 0.0.0.0 and asks clients beyond this machine for a token of the data dir's token file.

    Nothing is started when the option is empty or a server already answers at the URL.
    """
    key = f"{prefix}.model_dir"
    directory = data.model_path(config.get(key))
    if directory is None:
        return None
    if not (directory / "manifest.json").is_file():
        raise ModelServerError(
            f"{key}: {directory} is not a converted model (no manifest.json); convert one with `almanac model convert`"
        )
    url = str(config.get(f"{prefix}.url"))
    host, port = model_server_address(url, f"{prefix}.url")
    if probe(url, timeout=1.0).models:
        return None  # one is running already (a previous portal's, started by hand, or the quick model's)
    log = open(data.logs / ("model.log" if prefix == "assistant" else "model-deep.log"), "ab")
    where = ["--host", host]
    if config.get("assistant.serve_to_lan"):
        where = ["--host", "0.0.0.0", "--api-tokens", str(api_tokens.token_file(data))]
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.runtime.model_process", str(os.getpid()), "--"]
        + [sys.executable, "-m", "appliance.cli", "model", "serve", str(directory), "--port", str(port), *where],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=os.environ.copy(),
    )


def start_model_servers(config: Config, data: DataDir) -> list[subprocess.Popen]:
    """The quick model's server and, when it is another one, the deep model's."""
    started = [start_model_server(config, data)]
    quick, deep = config.get("assistant"), config.get("assistant.deep")
    same = str(deep["url"]).rstrip("/") == str(quick["url"]).rstrip("/")
    if deep["model_dir"] and not same:
        try:
            started.append(start_model_server(config, data, "assistant.deep"))
        except ModelServerError:
            for proc in started:
                if proc is not None:
                    stop_child(proc)
            raise
    return [p for p in started if p is not None]


def stop_child(proc: subprocess.Popen, wait_s: float = 20) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the supervisor: python -m appliance.runtime.model_process PARENT_PID -- COMMAND... -----------------------

RESTART_S = 1.0  # the first wait before a restart ...
RESTART_MAX_S = 60.0  # ... doubled on each quick death, up to this
STABLE_S = 60.0  # a server that ran this long before dying is restarted after RESTART_S again
CHECK_S = 0.5  # how often the server and the portal are looked at
STOP_WAIT_S = 15.0  # a server told to stop is killed after this (the portal's stop_child waits 20 s)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: {message}", flush=True)


def next_delay(delay: float, ran_s: float) -> float:
    """The wait before the next restart, after a server that ran `ran_s` seconds; `delay` the last wait."""
    return RESTART_S if ran_s >= STABLE_S else min(RESTART_MAX_S, max(RESTART_S, delay * 2))


def supervise(command: list[str], parent: int | None, stop: threading.Event) -> int:
    """Run `command` until `stop` is set or `parent` is gone, starting it again each time it ends."""
    delay = RESTART_S / 2  # doubled to RESTART_S before the first restart
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        _log(f"model server started (pid {child.pid})")
        while child.poll() is None:
            if stop.wait(CHECK_S) or (parent is not None and os.getppid() != parent):
                _log("stopping the model server" if stop.is_set() else "the portal is gone; stopping the model server")
                stop_child(child, STOP_WAIT_S)
                return 0
        ran = time.monotonic() - started
        delay = next_delay(delay, ran)
        how = f"signal {-child.returncode}" if child.returncode < 0 else f"status {child.returncode}"
        _log(f"model server (pid {child.pid}) ended with {how} after {ran:.0f} s; restarting it in {delay:.0f} s")
        if stop.wait(delay) or (parent is not None and os.getppid() != parent):
            return 0


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m appliance.runtime.model_process PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parent = int(argv[0]) if split else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return supervise(argv[split + 1 :], parent, stop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
