"""What one portal process holds, built once by the app factory: configuration, data dir, the library, the
maps, and the footer's figures."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app

from content.downloads import JobStore as DownloadJobs
from content.library import Library
from content.maps.gazetteer import Gazetteer, GazetteerError
from content.maps.geoindex import GeoIndex
from content.maps.registry import MapRegistry

from ..assistant.conversations import ConversationStore
from ..assistant.jobs import JobStore
from ..assistant.speeds import SpeedStore
from ..config import Config
from ..datadir import DataDir

FOOTER_TTL_S = 5.0  # the footer's counts need not be fresher than this; they are on every page
GEO_SYNC_INTERVAL_S = 10.0


@dataclass
class MapsState:
    registry: MapRegistry
    gazetteer_path: Path
    geo: GeoIndex
    _gazetteer: Gazetteer | None = None
    _geo_synced: float = -1e9

    @classmethod
    def open(cls, data: DataDir) -> MapsState:
        return cls(MapRegistry(data.db, data.maps), data.gazetteer, GeoIndex(data.db))

    def articles(self, library: Library) -> GeoIndex:
        """The article-coordinate index, brought up to date with the library every few seconds."""
        now = time.monotonic()
        if now - self._geo_synced >= GEO_SYNC_INTERVAL_S:
            self._geo_synced = now
            library.scan()  # one folder listing; catches a book dropped in since the last look
            self.geo.sync(library)
        return self.geo

    def gazetteer(self) -> Gazetteer | None:
        if self._gazetteer is None and self.gazetteer_path.is_file():
            try:
                self._gazetteer = Gazetteer(self.gazetteer_path)
            except GazetteerError:
                return None
        return self._gazetteer


@dataclass
class WorkerState:
    config: Config
    data: DataDir
    library: Library
    maps: MapsState
    started_at: float
    version: str
    _cache: dict = field(default_factory=dict, repr=False)
    _stores: dict = field(default_factory=dict, repr=False)

    def _store(self, kind):
        store = self._stores.get(kind)
        if store is None:
            store = self._stores.setdefault(kind, kind(self.data.db))
        return store

    @property
    def answers(self) -> JobStore:
        """The waiting answers (written by the answer runner, asked for and read here)."""
        return self._store(JobStore)

    @property
    def downloads(self) -> DownloadJobs:
        """The download jobs (read here; the downloader's own process runs them)."""
        return self._store(DownloadJobs)

    @property
    def speeds(self) -> SpeedStore:
        return self._store(SpeedStore)

    @property
    def conversations(self) -> ConversationStore:
        return self._store(ConversationStore)

    def uptime_s(self) -> float:
        return round(time.time() - self.started_at, 1)

    def _cached(self, key: str, compute):
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and now - hit[0] < FOOTER_TTL_S:
            return hit[1]
        value = compute()
        self._cache[key] = (now, value)
        return value

    def installed(self) -> dict[str, int]:
        return self._cached(
            "installed",
            lambda: {
                "books": self.library.count(),
                "maps": len(self.maps.registry.scan()),  # .pmtiles and .mbtiles, in maps/ or added from elsewhere
                "models": sum(1 for p in self.data.models.iterdir() if p.is_dir() and not p.name.startswith("."))
                if self.data.models.exists()
                else 0,
            },
        )

    def disk(self) -> dict[str, int]:
        def measure():
            usage = shutil.disk_usage(self.data.root)
            return {"total_bytes": usage.total, "free_bytes": usage.free}

        return self._cached("disk", measure)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self.maps.registry.close()
        self.library.close()


def get() -> WorkerState:
    return current_app.extensions["almanac"]
