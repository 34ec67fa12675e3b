"""Every configuration key with its documented default: defaults.yaml read as the Settings page and
`almanac config` describe it, each key with the comment above it (a section's comment is its own)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .config import DEFAULTS_FILE, Config

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")


@dataclass(frozen=True)
class Setting:
    key: str  # dotted
    default: Any
    help: str
    kind: str  # bool, int, float, text

    def to_json(self, value: Any) -> dict:
        return {"key": self.key, "default": self.default, "value": value, "help": self.help, "kind": self.kind}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "text"


def settings(defaults: dict) -> list[Setting]:
    """Each leaf key of defaults.yaml, in the file's order, with its comment."""
    out, stack, comment = [], [], []
    for line in DEFAULTS_FILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        m = _KEY.match(line)
        if not m:
            comment = [] if not stripped else comment
            continue
        depth = len(m["indent"]) // 2
        stack = stack[:depth] + [m["key"]]
        dotted = ".".join(stack)
        node: Any = defaults
        for part in stack:
            node = node[part]
        if not isinstance(node, dict):
            out.append(Setting(dotted, node, " ".join(comment), _kind(node)))
        comment = []
    return out


def current(config: Config) -> list[dict]:
    from .config import load_defaults

    return [s.to_json(config.get(s.key)) for s in settings(load_defaults())]
