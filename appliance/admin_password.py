"""The admin's password: a slow salted hash (scrypt, its parameters stored beside it), never the password
itself, in one 0600 file of the data dir, written atomically. The console's login and `almanac admin
set-password` read and write it here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from .config import write_atomic

FILE_NAME = "admin-password"
MIN_LENGTH = 8
# scrypt at N=2^15, r=8, p=1: 32 MiB and about 0.1 s a try on a small board, so a stolen file is slow to guess.
N, R, P = 1 << 15, 8, 1
MAX_MEM = 64 << 20


class PasswordError(Exception):
    """A password that cannot be set (too short, empty) or a file that cannot be read; one line."""


def path_in(data_root: Path) -> Path:
    return Path(data_root) / FILE_NAME


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """``scrypt$N$r$p$SALT$HASH`` (salt and hash in URL-safe base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEM, dklen=32)
    return "$".join(["scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)])


def matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.strip().split("$")
        if scheme != "scrypt":
            return False
        want = base64.urlsafe_b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=MAX_MEM,
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def is_set(data_root: Path) -> bool:
    return path_in(data_root).is_file()


def check(data_root: Path, password: str) -> bool:
    """True when ``password`` is the admin's; False when it is not, or when none is set."""
    try:
        stored = path_in(data_root).read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except OSError as e:
        raise PasswordError(f"{path_in(data_root)}: cannot read ({e.strerror or e})") from None
    return matches(password, stored)


def validate(password: str) -> str:
    if password != password.strip() or not password:
        raise PasswordError("the password must not be empty nor start or end with spaces")
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"the password must be at least {MIN_LENGTH} characters long")
    return password


def set_password(data_root: Path, password: str) -> Path:
    """Store the hash of ``password`` (checked first) in a 0600 file, replacing any earlier one at once."""
    validate(password)
    target = path_in(data_root)
    write_atomic(target, hash_password(password) + "\n", mode=0o600)
    return target


def generate() -> str:
    """A password to print once at install: 4 groups of 5 letters and digits (about 100 bits)."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")
