"""API tokens for a server reachable beyond this machine: `Authorization: Bearer <token>` checked against a
file of the tokens' SHA-256 digests (64 hex digits a line; blank lines and `#` comments ignored).

The file is read again whenever it changes (its mtime, size or inode), so a token taken out of it is refused
from the next request on. A file that cannot be read or parsed refuses every token until it is fixed: the
server fails closed. Digests are compared with hmac.compare_digest, every one of them, so the time taken
tells nothing of how close a guess came.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import sys
import threading
import time

from ..files import write_text_atomic

_DIGEST = re.compile(r"[0-9a-f]{64}")


class TokenFileError(ValueError):
    """The token file cannot be used: the message names it and says why."""


def digest(token: str) -> str:
    """The SHA-256 hex digest of a token, as the file holds it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    """Is this address (or `localhost`) on this machine only?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def parse(text: str, source: str = "token file") -> tuple[str, ...]:
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if not _DIGEST.fullmatch(line):
            raise TokenFileError(f"{source}: line {n} is not a SHA-256 hex digest (64 hex digits)")
        found.append(line)
    return tuple(found)


class TokenFile:
    """The valid tokens, from a digest file kept up to date with the file on disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._digests: tuple[str, ...] = ()
        self._load()  # a missing or broken file at start is an error the operator sees at once
        if self._stamp is None:
            raise TokenFileError(f"{self.path}: {self._problem}")

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return
            with open(self.path, encoding="utf-8") as f:
                digests = parse(f.read(), self.path)
        except (OSError, UnicodeDecodeError, TokenFileError) as e:
            if self._stamp is not None:
                print(f"api tokens: {self.path}: {e}; refusing every token until it is fixed", file=sys.stderr)
            self._problem = str(e.strerror if isinstance(e, OSError) and e.strerror else e)
            self._stamp, self._digests = None, ()
            return
        self._stamp, self._digests = stamp, digests

    def count(self) -> int:
        with self._lock:
            self._load()
            return len(self._digests)

    def allows(self, authorization: str | None) -> bool:
        """Does this Authorization header carry a valid token?"""
        return self.match(authorization) is not None

    def match(self, authorization: str | None) -> str | None:
        """The digest of the valid token this Authorization header carries, else None."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        wanted = digest(token)
        with self._lock:
            self._load()
            digests = self._digests
        found = None
        for d in digests:  # every one compared, match or not
            if hmac.compare_digest(wanted.encode(), d.encode()):
                found = d
        return found


class LastUsed:
    """When each token was last used: `<token file>.last-used`, JSON {digest: Unix time}, replaced atomically
    when a token is first used, then at most every `every_s` seconds (and at close), for whoever manages the
    tokens to show. A folder that cannot
    be written only loses this record; tokens are checked all the same."""

    def __init__(self, token_path: str | os.PathLike, every_s: float = 60.0):
        self.path = os.fspath(token_path) + ".last-used"
        self.every_s = every_s
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        self._written = 0.0
        self._dirty = False
        self._failed = False

    def note(self, digest_hex: str) -> None:
        now = time.time()
        with self._lock:
            new = digest_hex not in self._seen  # a token's first use since start is written at once
            self._seen[digest_hex] = now
            self._dirty = True
            if new or now - self._written >= self.every_s:
                self._write(now)

    def close(self) -> None:
        with self._lock:
            if self._dirty:
                self._write(time.time())

    def _write(self, now: float) -> None:
        self._written, self._dirty = now, False
        try:
            with open(self.path, encoding="utf-8") as f:
                on_disk = json.load(f)
            if not isinstance(on_disk, dict):
                on_disk = {}
        except (OSError, ValueError):
            on_disk = {}
        on_disk.update(self._seen)
        try:
            write_text_atomic(self.path, json.dumps(on_disk))
        except OSError as e:
            if not self._failed:
                print(f"api tokens: cannot record last use in {self.path}: {e}", file=sys.stderr)
            self._failed = True
