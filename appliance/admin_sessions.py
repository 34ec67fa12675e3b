"""The admin's sessions and the login throttle, in the state database (so every gunicorn worker sees the
same ones, and a restart keeps them): a session is a random token in the browser's cookie, stored here only
as its SHA-256, with its CSRF token and its expiry; logout deletes it. The throttle counts wrong passwords
per client address and makes each one past the first few wait longer before the next try."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .assistant.sqlite_store import SqliteStore

FREE_TRIES = 3  # wrong passwords in a row before the delay starts
MAX_DELAY_S = 15 * 60
FORGET_AFTER_S = 24 * 3600  # a client quiet this long starts again with its free tries


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Session:
    token: str  # what the cookie holds (never stored)
    csrf: str
    created: float
    expires: float
    client: str


class SessionStore(SqliteStore):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS admin_sessions (
        token_sha256 TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        client TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE IF NOT EXISTS login_failures (
        client TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_at REAL NOT NULL,
        locked_until REAL NOT NULL
    );
    """

    def __init__(self, path: Path, clock=time.time):
        super().__init__(path)
        self.clock = clock

    # -- sessions ---------------------------------------------------------------------------------------------
    def create(self, lifetime_s: float, client: str) -> Session:
        now = self.clock()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._run("DELETE FROM admin_sessions WHERE expires <= ?", (now,))
        self._run(
            "INSERT INTO admin_sessions (token_sha256, csrf, created, expires, client) VALUES (?, ?, ?, ?, ?)",
            (_digest(token), csrf, now, now + lifetime_s, client),
        )
        return Session(token, csrf, now, now + lifetime_s, client)

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie's token; None for no token, an unknown one or an expired one."""
        if not token:
            return None
        rows = self._rows(
            "SELECT csrf, created, expires, client FROM admin_sessions WHERE token_sha256 = ? AND expires > ?",
            (_digest(token), self.clock()),
        )
        if not rows:
            return None
        r = rows[0]
        return Session(token, r["csrf"], r["created"], r["expires"], r["client"])

    def end(self, token: str | None) -> bool:
        return bool(token) and self._run("DELETE FROM admin_sessions WHERE token_sha256 = ?", (_digest(token),)) > 0

    def end_all(self) -> int:
        """Every session ends (a new password was set)."""
        return self._run("DELETE FROM admin_sessions")

    def count(self) -> int:
        return self._rows("SELECT COUNT(*) AS n FROM admin_sessions WHERE expires > ?", (self.clock(),))[0]["n"]

    # -- the login throttle -------------------------------------------------------------------------------
    def wait_s(self, client: str) -> float:
        """Seconds this client must wait before its next password is even looked at (0: it may try now)."""
        rows = self._rows("SELECT locked_until FROM login_failures WHERE client = ?", (client,))
        return max(0.0, rows[0]["locked_until"] - self.clock()) if rows else 0.0

    def failed(self, client: str) -> tuple[int, float]:
        """One more wrong password from ``client``: (failures in a row, seconds until it may try again)."""
        now = self.clock()
        rows = self._rows("SELECT failures, last_at FROM login_failures WHERE client = ?", (client,))
        failures = 1 if not rows or now - rows[0]["last_at"] > FORGET_AFTER_S else rows[0]["failures"] + 1
        delay = 0.0 if failures <= FREE_TRIES else float(min(MAX_DELAY_S, 2 ** (failures - FREE_TRIES - 1)))
        self._run(
            "INSERT INTO login_failures (client, failures, last_at, locked_until) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(client) DO UPDATE SET failures = excluded.failures, last_at = excluded.last_at, "
            "locked_until = excluded.locked_until",
            (client, failures, now, now + delay),
        )
        return failures, delay

    def succeeded(self, client: str) -> None:
        self._run("DELETE FROM login_failures WHERE client = ?", (client,))


def secret_key(data_root: Path, name: str = "csrf.key") -> bytes:
    """A random key of the data dir, made once (0600) by whichever process needs it first."""
    path = Path(data_root) / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it this instant
            key = path.read_bytes()
            if len(key) == 32:
                return key
            time.sleep(0.01)
        raise RuntimeError(f"{path}: not a 32-byte key; delete it and restart") from None
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return key
