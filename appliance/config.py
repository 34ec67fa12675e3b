"""Load, validate and save Almanac's one YAML configuration file.

The documented defaults live in ``defaults.yaml`` beside this module; a user's file holds only overrides.
Every problem is reported as a ConfigError naming the file and the dotted key, so the CLI can print one line
and exit 2 instead of a traceback.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A configuration problem: ``file: key: message`` in one line."""

    def __init__(self, source: str, key: str | None, message: str):
        self.source, self.key, self.message = source, key, message
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


@dataclass(frozen=True)
class Config:
    values: dict[str, Any]
    path: Path | None = None  # the user's file, if any
    data_dir_source: str = field(default="defaults", compare=False)  # who decided data_dir, for errors

    def get(self, dotted: str) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def data_dir(self) -> Path:
        return Path(self.values["data_dir"])

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "built-in defaults"


def load_defaults() -> dict[str, Any]:
    with open(DEFAULTS_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def config_paths() -> list[Path]:
    """Where the config file is looked for when ALMANAC_CONFIG is not set, first match wins: the user's
    ($XDG_CONFIG_HOME/almanac/config.yaml, not for root), then the system's."""
    candidates = []
    if not is_root():
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        candidates.append(Path(xdg) / "almanac" / "config.yaml")
    candidates.append(Path("/etc/almanac/config.yaml"))
    return candidates


def default_config_path() -> Path | None:
    """The config file in use when ALMANAC_CONFIG is not set (None: defaults only)."""
    return next((p for p in config_paths() if p.is_file()), None)


def writable_config_path() -> Path:
    """The file `almanac config set` writes when ALMANAC_CONFIG is not set: the one in use, else the first
    place the loader looks, so the next command reads what was written."""
    return default_config_path() or config_paths()[0]


def default_data_dir() -> Path:
    if is_root():
        return Path("/usr/local/var/almanac") if os.uname().sysname == "Darwin" else Path("/var/lib/almanac")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "almanac"


def _check_types(user: dict, defaults: dict, source: str, prefix: str = "") -> None:
    for key, value in user.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            known = ", ".join(f"{prefix}{k}" for k in defaults)
            raise ConfigError(source, dotted, f"unknown key (known here: {known})")
        want = defaults[key]
        if isinstance(want, dict):
            if not isinstance(value, dict):
                raise ConfigError(source, dotted, "must be a mapping of keys")
            _check_types(value, want, source, dotted + ".")
        elif isinstance(want, bool):
            if not isinstance(value, bool):
                raise ConfigError(source, dotted, f"must be true or false, not {value!r}")
        elif isinstance(want, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(source, dotted, f"must be a whole number, not {value!r}")
        elif isinstance(want, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(source, dotted, f"must be a number, not {value!r}")
        elif isinstance(want, str):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ConfigError(source, dotted, f"must be text, not {value!r}")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict)
            else (str(value) if isinstance(base.get(key), str) else value)
        )
    return out


def _check_ranges(values: dict, source: str) -> None:
    server = values["server"]
    if not 1 <= server["port"] <= 65535:
        raise ConfigError(source, "server.port", f"{server['port']} is out of range 1-65535")
    for key, low, high in (("workers", 1, 64), ("threads", 1, 256), ("timeout", 1, 86400)):
        if not low <= server[key] <= high:
            raise ConfigError(source, f"server.{key}", f"{server[key]} is out of range {low}-{high}")
    if not str(server["host"]).strip():
        raise ConfigError(source, "server.host", "must not be empty")
    if values["log_level"] not in LOG_LEVELS:
        raise ConfigError(source, "log_level", f"{values['log_level']!r} is not one of {', '.join(LOG_LEVELS)}")
    library = values["library"]
    if not 0 <= library["cluster_cache_mb"] <= 1 << 20:
        raise ConfigError(source, "library.cluster_cache_mb", f"{library['cluster_cache_mb']} is out of range")
    if not 1 <= library["scan_interval_s"] <= 86400:
        raise ConfigError(source, "library.scan_interval_s", f"{library['scan_interval_s']} is out of range 1-86400")
    catalog_url = str(library["catalog_url"]).strip()
    if catalog_url and not catalog_url.startswith(("http://", "https://")):
        raise ConfigError(source, "library.catalog_url", f"{catalog_url!r} is not an http:// or https:// URL")
    if not 1 <= values["admin"]["session_hours"] <= 720:
        raise ConfigError(source, "admin.session_hours", f"{values['admin']['session_hours']} is out of range 1-720")
    if not str(values["portal"]["title"]).strip():
        raise ConfigError(source, "portal.title", "must not be empty")
    assistant = values["assistant"]
    for key, low, high in (
        ("passages", 1, 20),
        ("follow_up_passages", 1, 20),
        ("max_tokens", 1, 8192),
        ("temperature", 0, 2),
        ("timeout_s", 1, 86400),
    ):
        if not low <= assistant[key] <= high:
            raise ConfigError(source, f"assistant.{key}", f"{assistant[key]} is out of range {low}-{high}")
    for key in ("min_coverage", "min_known"):
        if not 0 <= assistant[key] <= 1:
            raise ConfigError(source, f"assistant.{key}", f"{assistant[key]} is out of range 0-1")
    deep = assistant["deep"]
    for key, low, high in (("passages", 1, 20), ("max_tokens", 1, 32768), ("timeout_s", 1, 86400)):
        if not low <= deep[key] <= high:
            raise ConfigError(source, f"assistant.deep.{key}", f"{deep[key]} is out of range {low}-{high}")
    for key, url in (("assistant.url", assistant["url"]), ("assistant.deep.url", deep["url"])):
        url = str(url).strip()
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(source, key, f"{url!r} is not an http:// or https:// URL")


def read_user_file(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(source, None, f"cannot read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(source, None, f"invalid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, None, "must be a YAML mapping of keys (like 'server: {port: 8080}')")
    return data


def load_config(path: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Config:
    """Effective configuration: defaults, then the user's file, then ALMANAC_DATA."""
    env = os.environ if env is None else env
    if path is None and env.get("ALMANAC_CONFIG"):
        path = env["ALMANAC_CONFIG"]
    file = Path(path).expanduser() if path else default_config_path()
    defaults = load_defaults()
    user = read_user_file(file) if file else {}
    source = str(file) if file else "built-in defaults"
    _check_types(user, defaults, source)
    values = _merge(defaults, user)
    _check_ranges(values, source)

    data_source = source if user.get("data_dir") else "defaults"
    if env.get("ALMANAC_DATA"):
        values["data_dir"], data_source = env["ALMANAC_DATA"], "ALMANAC_DATA"
    data_dir = str(values["data_dir"]).strip()
    values["data_dir"] = str(Path(data_dir).expanduser().absolute() if data_dir else default_data_dir())
    return Config(values=values, path=file, data_dir_source=data_source)


def parse_value(text: str) -> Any:
    """A value typed on the command line, read as YAML so `8081` is a number and `true` a boolean."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_value(path: Path, dotted: str, value: Any) -> Config:
    """Set one key in the user's file (validated first), rewriting it atomically."""
    user = read_user_file(path) if path.exists() else {}
    node = user
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(str(path), dotted, "parent key is not a mapping")
    node[parts[-1]] = value
    _check_types(user, load_defaults(), str(path))
    _check_ranges(_merge(load_defaults(), user), str(path))
    header = "# Almanac configuration: only the keys you change. Every key and its default: appliance/defaults.yaml\n"
    write_atomic(path, header + yaml.safe_dump(user, sort_keys=False, allow_unicode=True))
    return load_config(path, env={})


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` in one step (a reader sees the old file or the new one), synced to disk.
    ``mode``: the new file's permissions; by default an existing file's, else 0644. A secret passes 0o600:
    the file is never readable by others, not even for a moment (mkstemp makes it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is None:
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump(config: Config) -> str:
    return yaml.safe_dump(config.values, sort_keys=False, allow_unicode=True)
