"""Tokens for the model API served to the LAN: created, listed and revoked here (the CLI's `almanac model
tokens`, the admin console's Tokens page), kept in the state database, and written to the digest file the
model server reads (llm_engine/serve/tokens.py).

A token's secret is shown once, when it is created; only its SHA-256 digest is stored, in the database and in
the file (mode 0600, replaced atomically on every change). The model server reads the file again when it
changes, so a revoked token is refused from the next request on.

    token, secret = create(data, "kitchen laptop")   # give `secret` to the client, once
    list_tokens(data)                                # [ApiToken(id, name, created, hint, last_used)]
    revoke(data, token.id)                           # True if it existed
    token_file(data)                                 # the file to pass as `almanac model serve --api-tokens`
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from content import db

from .config import write_atomic
from .datadir import DataDir

FILE_NAME = "model-api-tokens.sha256"
PREFIX = "alm_"
NAME_MAX = 64
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    digest TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def digest(secret: str) -> str:
    """What the file holds of a token: its SHA-256 hex digest (the format llm_engine's server reads; not
    imported from there, which would load the engine)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenError(ValueError):
    """A token cannot be made as asked (the message says why)."""


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    created: float  # Unix time
    hint: str  # the secret's first characters, to tell tokens apart; not enough to use one
    last_used: float | None = None  # Unix time of its last request to a model server (noted once a minute)

    def to_json(self) -> dict:
        return asdict(self)


def token_file(data: DataDir) -> Path:
    """The digest file the model server reads, written again from the database (empty if there are no tokens:
    then every client beyond this machine is refused)."""
    with _changing(data):
        _write_file(data, _digests(data))
    return data.root / FILE_NAME


def create(data: DataDir, name: str) -> tuple[ApiToken, str]:
    """A new token named `name`: (the token, its secret). The secret is not kept: show it now."""
    name = " ".join(str(name).split())
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise TokenError(f"a token's name is 1-{NAME_MAX} printable characters")
    secret = PREFIX + secrets.token_urlsafe(32)
    created = time.time()
    with _changing(data), _open(data) as conn:
        try:
            cur = conn.execute(
                "INSERT INTO api_tokens (name, digest, hint, created) VALUES (?, ?, ?, ?)",
                (name, digest(secret), secret[: len(PREFIX) + 4], created),
            )
        except sqlite3.IntegrityError:
            raise TokenError(f"a token named {name!r} exists already; revoke it or choose another name") from None
        token = ApiToken(cur.lastrowid, name, created, secret[: len(PREFIX) + 4])
        _write_file(data, _digests(data))
    return token, secret


def list_tokens(data: DataDir) -> list[ApiToken]:
    """Every valid token, oldest first, with when a model server last saw it (None: never, or not yet noted)."""
    with _open(data) as conn:
        rows = conn.execute("SELECT id, name, created, hint, digest FROM api_tokens ORDER BY id").fetchall()
    used = _last_used(data)
    return [ApiToken(r["id"], r["name"], r["created"], r["hint"], used.get(r["digest"])) for r in rows]


def _last_used(data: DataDir) -> dict[str, float]:
    """What the model servers noted beside the token file (llm_engine.serve.tokens.LastUsed); {} when nothing."""
    try:
        noted = json.loads((data.root / f"{FILE_NAME}.last-used").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(noted, dict):
        return {}
    return {k: float(v) for k, v in noted.items() if isinstance(k, str) and isinstance(v, (int, float))}


def revoke(data: DataDir, token_id: int) -> bool:
    """Take a token out: refused by the model server from its next request on. False if there was none."""
    with _changing(data), _open(data) as conn:
        gone = conn.execute("DELETE FROM api_tokens WHERE id = ?", (int(token_id),)).rowcount > 0
        _write_file(data, _digests(data))
    return gone


@contextmanager
def _changing(data: DataDir):
    """One change at a time (two processes may run `almanac model tokens`): the file always ends up holding
    what the database holds."""
    with open(data.root / f".{FILE_NAME}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class _open:
    def __init__(self, data: DataDir):
        self.conn = db.connect(data.db)
        self.conn.executescript(SCHEMA)

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()


def _digests(data: DataDir) -> list[str]:
    with _open(data) as conn:
        return [r["digest"] for r in conn.execute("SELECT digest FROM api_tokens ORDER BY id")]


def _write_file(data: DataDir, digests: list[str]) -> None:
    """The digest file, replaced in one step (a reader sees the old file or the new one), readable by its
    owner only."""
    path = data.root / FILE_NAME
    text = "# SHA-256 digests of the model API's tokens; written by `almanac model tokens`, do not edit\n"
    text += "".join(d + "\n" for d in digests)
    write_atomic(path, text, mode=0o600)
