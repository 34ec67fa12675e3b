"""A Kiwix catalog at a URL (Kiwix's public one, a mirror, or another box on the LAN), answered from the
network when it can be reached and from the SQLite cache when not, with the answer's age.

    cat = Catalog("http://192.168.1.20:8080", db_path)
    page = cat.entries(lang="eng", q="medicine", count=20)
    cat.refresh()                    # pull every entry, so the whole catalog browses offline
    entry = cat.newest("wikipedia_en_top", "nopic")
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .cache import CatalogCache
from .opds import Category, Entry, FeedError, Language, parse_categories, parse_entries, parse_languages

USER_AGENT = "Almanac-catalog/1"
PAGE = 500  # entries per request when the whole catalog is pulled


class CatalogError(Exception):
    """The catalog could not be read, and nothing cached answers the question; one line."""


@dataclass
class CatalogPage:
    entries: list[Entry]
    total: int
    start: int
    fetched_at: float  # when the answer came from the catalog (now, or when it was cached)
    offline: bool  # True: the catalog could not be reached and this is the cache
    catalog: str
    error: str = ""  # why the network was not used, when offline

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.fetched_at)

    def to_json(self) -> dict:
        return {
            "catalog": self.catalog,
            "total": self.total,
            "start": self.start,
            "offline": self.offline,
            "fetched_at": self.fetched_at,
            "age_s": round(self.age_s, 1),
            "error": self.error,
            "entries": [e.to_json() for e in self.entries],
        }


def catalog_root(url: str) -> str:
    """The catalog's base URL from what a user may type: a host, a base or a /catalog/v2 URL."""
    url = url.strip()
    if not url:
        raise CatalogError("the catalog URL is empty")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CatalogError(f"{url}: not an http(s) URL")
    path = parts.path
    cut = path.find("/catalog/")
    if cut >= 0:
        path = path[:cut]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", ""))


class Catalog:
    def __init__(self, url: str, db_path: Path, *, timeout_s: float = 20.0):
        self.url = catalog_root(url)
        self.timeout_s = timeout_s
        self.cache = CatalogCache(db_path)

    # -- the network ----------------------------------------------------------------------------
    def _get(self, path: str, params: dict | None = None) -> tuple[bytes, str]:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v not in ("", None)})
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            return response.read(), url

    def _fetch(self, path: str, params: dict | None = None) -> tuple[bytes, str, float, str]:
        """(body, url, fetched_at, error): from the network, else the cached copy of the same URL."""
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v not in ("", None)})
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        try:
            body, _ = self._get(path, params)
            return body, url, self.cache.put_feed(url, body), ""
        except (OSError, urllib.error.URLError) as e:
            reason = _reason(e)
            cached = self.cache.feed(url)
            if cached is None:
                raise _Offline(reason) from None
            return cached[0], url, cached[1], reason

    # -- what a user browses ----------------------------------------------------------------------
    def entries(
        self, *, q: str = "", lang: str = "", category: str = "", name: str = "", count: int = 20, start: int = 0
    ) -> CatalogPage:
        if count < 1 or start < 0:
            raise CatalogError(f"count must be >= 1 and start >= 0 (got count={count}, start={start})")
        params = {"q": q, "lang": lang, "category": category, "name": name, "count": count, "start": start}
        try:
            body, url, fetched_at, error = self._fetch("/catalog/v2/entries", params)
        except _Offline as e:
            return self._offline_page(str(e), q=q, lang=lang, category=category, name=name, count=count, start=start)
        entries, total, first = self._parse(body, url)
        if not error:
            self.cache.put_entries(self.url, entries)
        return CatalogPage(entries, total, first, fetched_at, bool(error), self.url, error)

    def _offline_page(self, reason: str, *, count: int, start: int, **filters) -> CatalogPage:
        found, seen_at = self.cache.entries(self.url, **filters)
        if seen_at is None and not self.cache.entries(self.url)[0]:
            raise CatalogError(f"catalog {self.url} unreachable ({reason}) and never fetched on this box")
        return CatalogPage(
            found[start : start + count], len(found), start, seen_at or time.time(), True, self.url, reason
        )

    def languages(self) -> list[Language]:
        try:
            body, url, _, _ = self._fetch("/catalog/v2/languages")
        except _Offline as e:
            raise CatalogError(f"catalog {self.url} unreachable ({e}) and its languages never fetched") from None
        return self._guard(parse_languages, body, url)

    def categories(self) -> list[Category]:
        try:
            body, url, _, _ = self._fetch("/catalog/v2/categories")
        except _Offline as e:
            raise CatalogError(f"catalog {self.url} unreachable ({e}) and its categories never fetched") from None
        return self._guard(parse_categories, body, url)

    def illustration(self, entry: Entry) -> bytes | None:
        """The entry's 48x48 PNG (cached like a feed), or None if it has none."""
        if not entry.illustration_url:
            return None
        url = entry.illustration_url
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
            self.cache.put_feed(url, body)
            return body
        except (OSError, urllib.error.URLError):
            cached = self.cache.feed(url)
            return cached[0] if cached else None

    def refresh(self) -> int:
        """Pull every entry (page by page) so the whole catalog can be browsed offline; returns the count."""
        got: list[Entry] = []
        start = 0
        while True:
            try:
                body, url = self._get("/catalog/v2/entries", {"count": PAGE, "start": start})
            except (OSError, urllib.error.URLError) as e:
                raise CatalogError(f"catalog {self.url} unreachable ({_reason(e)})") from None
            entries, total, _ = self._parse(body, url)
            got.extend(entries)
            start += len(entries)
            if not entries or start >= total:
                break
        self.cache.put_entries(self.url, got, replace_all=True)
        for path in ("/catalog/v2/languages", "/catalog/v2/categories"):
            try:
                self._fetch(path)
            except _Offline:
                pass
        return len(got)

    def newest(self, name: str, flavour: str = "") -> Entry | None:
        """The newest dated entry of a book (same name and flavour), from the network or the cache."""
        versions: list[Entry] = []
        start = 0
        try:
            while True:
                body, url = self._get("/catalog/v2/entries", {"name": name, "count": PAGE, "start": start})
                entries, total, _ = self._parse(body, url)
                self.cache.put_entries(self.url, entries)
                versions.extend(entries)
                start += len(entries)
                if not entries or start >= total:
                    break
        except (OSError, urllib.error.URLError) as e:
            cached, _ = self.cache.entries(self.url, name=name)
            if not cached and not self.cache.entries(self.url)[0]:
                raise CatalogError(f"catalog {self.url} unreachable ({_reason(e)}) and never fetched") from None
            versions = cached
        matching = [e for e in versions if e.name == name and e.flavour == flavour and e.url]
        return max(matching, key=lambda e: (e.date, e.id)) if matching else None

    def _parse(self, body: bytes, url: str):
        return self._guard(parse_entries, body, url, url)

    @staticmethod
    def _guard(parse, body: bytes, url: str, *args):
        try:
            return parse(body, *args)
        except FeedError as e:
            raise CatalogError(f"{url}: {e}") from None

    def close(self) -> None:
        self.cache.close()


class _Offline(Exception):
    pass


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__
