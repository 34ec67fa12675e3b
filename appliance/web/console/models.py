"""The console's Models: the converted models in models/, pull / import / convert (each `almanac model ...`
run as a task, its progress in its output), the assistant's model (`assistant.model_dir`), the model server
started or stopped (a console task running `almanac model serve` on the port of `assistant.url`) and its
figures from its /health endpoint (requests, tokens, tok/s, expert cache hits, bytes read)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from flask import abort, request

from ...assistant.model_client import probe
from ...runtime.model_process import ModelServerError, model_server_address
from .. import worker_state
from ..render import page
from .common import done, form, save_setting, start_task, tasks

BITS = ("2", "3", "4", "5", "6", "8")


def _size(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _health(url: str) -> dict | None:
    """The model server's own figures (llm_engine's /health), or None when it does not answer."""
    if not url:
        return None
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def models_page():
    """GET /admin/models."""
    s = worker_state.get()
    chosen = str(s.config.get("assistant.model_dir")).strip()
    folder = s.data.models
    models = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                models.append(
                    {
                        "name": p.name,
                        "path": str(p),
                        "size": _size(p),
                        "converted": (p / "manifest.json").is_file(),
                        "chosen": chosen in (p.name, str(p)),
                    }
                )
    url = str(s.config.get("assistant.url"))
    server = probe(url, timeout=1.5) if url else None
    serving = tasks().running("model-serve")
    data = {
        "models": models,
        "model_dir": chosen,
        "assistant_url": url,
        "server": {
            "answering": bool(server and server.models),
            "models": server.models if server else [],
            "message": server.message if server else "assistant.url is empty",
            "health": _health(url),
            "task": serving[0].to_json() if serving else None,
        },
        "bits": BITS,
        "notice": request.args.get("notice", ""),
    }
    return page("console/models.html", data)


def pull():
    """POST /admin/models/pull (repo[, bits, name, endpoint])."""
    repo = form("repo")
    argv = ["model", "pull", repo, "--quiet"]
    bits = form("bits", required=False)
    if bits:
        if bits not in BITS:
            abort(400, f"bits must be one of {', '.join(BITS)}")
        argv += ["--bits", bits]
    for key in ("name", "endpoint"):
        if form(key, required=False):
            argv += [f"--{key}", form(key)]
    task = start_task("model-pull", f"pull model {repo}", argv)
    return done(f"task {task.id}: pull {repo}", "/admin/jobs", task=task.to_json())


def import_model():
    """POST /admin/models/import (path[, name]): a converted model folder from a drive."""
    path = form("path")
    argv = ["model", "import", path] + (["--name", form("name")] if form("name", required=False) else [])
    task = start_task("model-import", f"import model {path}", argv)
    return done(f"task {task.id}: import model {path}", "/admin/jobs", task=task.to_json())


def convert():
    """POST /admin/models/convert (src, name[, bits]): a checkpoint folder or GGUF into models/NAME."""
    src, name = form("src"), form("name")
    if "/" in name or name.startswith("."):
        abort(400, f"{name!r} is not a usable model folder name")
    dest = worker_state.get().data.models / name
    if dest.exists():
        abort(409, f"{dest} already exists")
    argv = ["model", "convert", src, str(dest), "--quiet"]
    bits = form("bits", required=False)
    if bits:
        if bits not in BITS:
            abort(400, f"bits must be one of {', '.join(BITS)}")
        argv += ["--bits", bits]
    task = start_task("model-convert", f"convert {src} into {name}", argv)
    return done(f"task {task.id}: convert {src}", "/admin/jobs", task=task.to_json())


def choose():
    """POST /admin/models/choose (model_dir; empty: none): the assistant's model, as `almanac config set
    assistant.model_dir` sets it; the portal runs it from its next start, or now with "start"."""
    name = form("model_dir", required=False)
    s = worker_state.get()
    if name and s.data.model_path(name) is not None and not (s.data.model_path(name) / "manifest.json").is_file():
        abort(400, f"{s.data.model_path(name)} is not a converted model (no manifest.json)")
    save_setting("assistant.model_dir", name)
    return done(f"assistant.model_dir = {name or '(none)'}", "/admin/models", model_dir=name)


def start_server():
    """POST /admin/models/server/start: `almanac model serve` of assistant.model_dir on the port of
    assistant.url, as a task (it stops with the portal, or with "stop")."""
    s = worker_state.get()
    directory = s.data.model_path(s.config.get("assistant.model_dir"))
    if directory is None:
        abort(400, "choose the assistant's model first (assistant.model_dir)")
    url = str(s.config.get("assistant.url"))
    try:
        host, port = model_server_address(url)
    except ModelServerError as e:
        abort(400, str(e))
    if probe(url, timeout=1.0).models:
        abort(409, f"a model server answers at {url} already")
    if tasks().running("model-serve"):
        abort(409, "the console's model server is starting already")
    argv = ["model", "serve", str(directory), "--host", host, "--port", str(port)]
    task = start_task("model-serve", f"model server for {directory.name} on {url}", argv)
    return done(f"task {task.id}: model server starting on {url}", "/admin/models", task=task.to_json())


def stop_server():
    """POST /admin/models/server/stop: the model server the console started (one started with the portal
    stops with the portal)."""
    running = tasks().running("model-serve")
    if not running:
        abort(409, "no model server started from the console is running (one started with the portal stops with it)")
    for t in running:
        tasks().stop(t.id)
    return done("model server stopping", "/admin/models", tasks=[t.id for t in running])
