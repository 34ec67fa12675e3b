"""What the views need, built once per process by the app factory."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

from flask import current_app

from content.library import Library

from .config import Config
from .datadir import DataDir


FOOTER_TTL_S = 5.0  # the footer's counts need not be fresher than this; they are on every page


@dataclass
class Services:
    config: Config
    data: DataDir
    library: Library
    started_at: float
    version: str
    _cache: dict = field(default_factory=dict, repr=False)

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
        return self._cached("installed", lambda: {
            "books": self.library.count(),
            "maps": sum(1 for p in self.data.maps.glob("*.pmtiles")),
            "models": sum(1 for p in self.data.models.iterdir() if p.is_dir()) if self.data.models.exists() else 0,
        })

    def disk(self) -> dict[str, int]:
        def measure():
            usage = shutil.disk_usage(self.data.root)
            return {"total_bytes": usage.total, "free_bytes": usage.free}

        return self._cached("disk", measure)


def get() -> Services:
    return current_app.extensions["almanac"]
