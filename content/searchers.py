"""libzim's Searcher and SuggestionSearcher, one of each per archive file, each with its lock.

Opening Xapian's database per query is the slow part of a search, so searchers are kept; they are not
thread-safe, so every use holds the lock that comes with it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

_cache: dict[tuple[str, str, str], tuple[object, threading.Lock]] = {}
_guard = threading.Lock()


def _get(kind: str, archive, factory):
    key = (kind, str(archive.uuid), archive.filename)
    with _guard:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = (factory(archive), threading.Lock())
        return found


@contextmanager
def fulltext(archive):
    from libzim.search import Searcher

    searcher, lock = _get("fulltext", archive, Searcher)
    with lock:
        yield searcher


@contextmanager
def titles(archive):
    from libzim.suggestion import SuggestionSearcher

    searcher, lock = _get("titles", archive, SuggestionSearcher)
    with lock:
        yield searcher
