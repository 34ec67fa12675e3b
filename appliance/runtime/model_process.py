"""The model server beside the portal: `almanac model serve` for `assistant.model_dir`, in its own process.

The model gets its own process because every gunicorn worker would otherwise load it; the portal asks it over
HTTP (appliance.assistant.model_client).
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit

from ..assistant.model_client import probe
from ..config import Config
from ..datadir import DataDir

LOCAL_HOSTS = ("127.0.0.1", "localhost")  # `almanac model serve` listens on IPv4


class ModelServerError(RuntimeError):
    """The model beside the portal cannot be started; the message says why and what to change."""


def model_server_address(config: Config) -> tuple[str, int]:
    """Host and port of `assistant.url`, which must be this machine for Almanac to run the model there."""
    parts = urlsplit(str(config.get("assistant.url")))
    host = parts.hostname or ""
    if host not in LOCAL_HOSTS:
        raise ModelServerError(
            f"assistant.model_dir is set, so assistant.url must be on this machine (127.0.0.1), not {host or 'empty'}"
        )
    return "127.0.0.1", parts.port or 80


def start_model_server(config: Config, data: DataDir) -> subprocess.Popen | None:
    """Run `almanac model serve` for `assistant.model_dir` beside the portal, logging to logs/model.log.

    Nothing is started when the option is empty or a server already answers at the URL.
    """
    directory = data.model_path(config.get("assistant.model_dir"))
    if directory is None:
        return None
    if not (directory / "manifest.json").is_file():
        raise ModelServerError(
            f"assistant.model_dir: {directory} is not a converted model (no manifest.json); "
            "convert one with `almanac model convert`"
        )
    host, port = model_server_address(config)
    if probe(str(config.get("assistant.url")), timeout=1.0).models:
        return None  # one is running already (a previous portal's, or started by hand)
    log = open(data.logs / "model.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "model", "serve", str(directory), "--host", host, "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=os.environ.copy(),
    )


def stop_child(proc: subprocess.Popen, wait_s: float = 20) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
