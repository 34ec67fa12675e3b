"""The model server beside the portal: `almanac model serve` for `assistant.model_dir`, in its own process.

The model gets its own process because every gunicorn worker would otherwise load it; the portal asks it over
HTTP (appliance.assistant.model_client).
"""

from __future__ import annotations

import os
import subprocess
import sys
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
        [sys.executable, "-m", "appliance.cli", "model", "serve", str(directory), "--port", str(port), *where],
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
