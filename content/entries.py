"""How a path in a book becomes what to send: redirects (followed up to one limit), the old-namespace fallback,
main page, random article and illustration. The web views call these and never touch a libzim entry."""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_REDIRECTS = 32


class RedirectLoop(Exception):
    """A redirect chain longer than MAX_REDIRECTS."""


class Unreadable(Exception):
    """The entry exists but its bytes cannot be read (the file was removed or is damaged)."""


@dataclass(frozen=True)
class Item:
    path: str
    body: bytes
    mimetype: str
    uuid: str  # the archive's: with the path, what identifies these bytes (ETags)


@dataclass(frozen=True)
class Redirect:
    path: str  # where the chain ends


def resolve(entry):
    """The entry a redirect chain ends at; RedirectLoop when it does not end within MAX_REDIRECTS."""
    for _ in range(MAX_REDIRECTS):
        if not entry.is_redirect:
            return entry
        entry = entry.get_redirect_entry()
    raise RedirectLoop("This page redirects in a loop.")


def find(archive, path: str):
    """The entry at `path`, also asked as A/`path` in an old-scheme archive; None when there is none."""
    candidates = [path]
    if not archive.has_new_namespace_scheme and "/" not in path[:2]:
        candidates.append(f"A/{path}")  # old-scheme archive asked with a new-style path
    for candidate in candidates:
        try:
            return archive.get_entry_by_path(candidate)
        except KeyError:
            continue
    return None


def lookup(archive, path: str) -> Item | Redirect | None:
    """What `path` serves: its bytes, the end of its redirect chain, or None. Raises RedirectLoop, Unreadable."""
    entry = find(archive, path)
    if entry is None:
        return None
    if entry.is_redirect:
        return Redirect(resolve(entry).path)
    try:
        item = entry.get_item()
        body = bytes(item.content)
    except (RuntimeError, OSError):
        raise Unreadable(path) from None
    return Item(entry.path, body, item.mimetype or "application/octet-stream", str(archive.uuid))


def main_path(archive) -> str | None:
    """The path of the book's main page (redirects followed); None when it has none. Raises RedirectLoop."""
    if not archive.has_main_entry:
        return None
    return resolve(archive.main_entry).path


def random_path(archive) -> str | None:
    """A random article's path; None when the book has none to pick from."""
    try:
        for _ in range(16):  # a random front entry can be a redirect; try a few
            entry = archive.get_random_entry()
            if not entry.is_redirect:
                return entry.path
        return resolve(entry).path
    except (KeyError, RuntimeError):
        pass
    # Older archives flag no front articles at all: draw HTML entries by id instead, and when a few draws
    # find none (an archive of mostly images and scripts), walk on from a random id so that one is found if
    # the archive has any.
    count = archive.all_entry_count
    if not count:
        return None
    rng = random.Random()
    ids = [rng.randrange(count) for _ in range(64)]
    start = rng.randrange(count)
    for i in ids + [(start + k) % count for k in range(count)]:
        entry = archive._get_entry_by_id(i)
        if not entry.is_redirect and entry.get_item().mimetype.startswith("text/html"):
            return entry.path
    return None


def illustration(archive, size: int = 48) -> Item | None:
    """The book's square PNG illustration of `size` pixels, or None."""
    if not archive.has_illustration(size):
        return None
    item = archive.get_illustration_item(size)
    return Item(f"illustration{size}", bytes(item.content), item.mimetype or "image/png", str(archive.uuid))
