"""The console's Settings: every configuration key with its documented default and its current value; a
change is validated exactly as `almanac config set` validates it, written atomically to the config file,
and used by the portal at once (what needs a restart says so)."""

from __future__ import annotations

from flask import abort, request

from ...config import load_defaults, parse_value
from ...settings_doc import current, settings
from .. import worker_state
from ..render import page
from .common import config_path, done, form, save_setting

# Read once at start: a change is saved now and takes effect when the portal restarts.
NEEDS_RESTART = ("data_dir", "server.", "library.cluster_cache_mb", "library.scan_interval_s", "log_level")


def settings_page():
    """GET /admin/settings."""
    rows = current(worker_state.get().config)
    for r in rows:
        r["restart"] = r["key"].startswith(NEEDS_RESTART)
    data = {"settings": rows, "file": str(config_path()), "notice": request.args.get("notice", "")}
    return page("console/settings.html", data)


def change():
    """POST /admin/settings (key, value): one key, typed as its default is (text stays text; true/false,
    numbers are read as `almanac config set` reads them)."""
    key = form("key")
    known = {s.key: s for s in settings(load_defaults())}
    if key not in known:
        abort(400, f"unknown key {key!r}")
    raw = request.form.get("value", "")
    if known[key].kind == "bool":
        raw = "true" if raw.strip().lower() in ("true", "on", "1", "yes") else "false"
    value = raw.strip() if known[key].kind == "text" else parse_value(raw.strip())
    save_setting(key, value)
    restart = key.startswith(NEEDS_RESTART)
    message = f"{key} = {value!r} saved" + ("; it takes effect when the portal restarts" if restart else "")
    return done(message, "/admin/settings", key=key, value=worker_state.get().config.get(key), restart=restart)
