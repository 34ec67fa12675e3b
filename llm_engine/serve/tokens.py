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
import os
import re
import sys
import threading

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
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        wanted = digest(token).encode()
        with self._lock:
            self._load()
            digests = self._digests
        ok = False
        for d in digests:
            ok |= hmac.compare_digest(wanted, d.encode())
        return ok
