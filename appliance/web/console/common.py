"""What the console's pages share: the Box of this worker (its downloader, catalog and provenance over the
worker's own library), the task store, and how a change answers (JSON, or a redirect back with a notice)."""

from __future__ import annotations

from urllib.parse import quote

from flask import abort, current_app, jsonify, redirect, request

from ...config import ConfigError, set_value, writable_config_path
from ...fill import Box, FillError
from ...tasks import TaskStore
from .. import worker_state
from ..auth import reload_config
from ..render import wants_json


def box() -> Box:
    """The Box of this worker, over the current configuration (its catalog follows library.catalog_url)."""
    from content.downloads import open_downloader

    s = worker_state.get()
    b = current_app.extensions.get("almanac_console_box")
    if b is None:
        downloader, provenance = open_downloader(s.data.root, s.library)
        b = current_app.extensions.setdefault(
            "almanac_console_box", Box(s.config, s.data, s.library, downloader, provenance)
        )
    if b.config is not s.config:  # a setting changed: the catalog may be another one
        b.config = s.config
        if b._catalog is not None:
            b._catalog.close()
            b._catalog = None
    return b


def catalog():
    """The configured catalog, or a 400 that says what to set."""
    try:
        return box().catalog()
    except FillError as e:
        abort(400, str(e))


def tasks() -> TaskStore:
    s = worker_state.get()
    t = current_app.extensions.get("almanac_console_tasks")
    if t is None:
        t = current_app.extensions.setdefault("almanac_console_tasks", TaskStore(s.data.db, s.data))
    return t


def start_task(kind: str, label: str, argv: list[str]):
    return tasks().start(kind, label, argv, config_path=worker_state.get().config.path)


def form(name: str, *, required: bool = True) -> str:
    value = (request.form.get(name) or "").strip()
    if required and not value:
        abort(400, f"{name} is required")
    return value


def done(message: str, back: str, **data):
    """A change made: its JSON, or (a form) back to the page it came from with the message shown."""
    if wants_json():
        return jsonify({"ok": True, "message": message, **data})
    return redirect(f"{back}?notice={quote(message)}", 303)


def config_path():
    config = worker_state.get().config
    return config.path or writable_config_path()


def save_setting(key: str, value) -> None:
    """What `almanac config set KEY VALUE` does (the same validation), then this worker uses it at once."""
    try:
        set_value(config_path(), key, value)
    except ConfigError as e:
        abort(400, e.message if e.key else str(e))
    reload_config()
    current_app.logger.info("setting %s changed from the console", key)
