"""What the views need, built once per process by the app factory."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from flask import current_app

from content.library import Library

from .config import Config
from .datadir import DataDir


@dataclass
class Services:
    config: Config
    data: DataDir
    library: Library
    started_at: float
    version: str

    def uptime_s(self) -> float:
        return round(time.time() - self.started_at, 1)

    def installed(self) -> dict[str, int]:
        return {
            "books": self.library.count(),
            "maps": sum(1 for p in self.data.maps.glob("*.pmtiles")),
            "models": sum(1 for p in self.data.models.iterdir() if p.is_dir()) if self.data.models.exists() else 0,
        }

    def disk(self) -> dict[str, int]:
        usage = shutil.disk_usage(self.data.root)
        return {"total_bytes": usage.total, "free_bytes": usage.free}


def get() -> Services:
    return current_app.extensions["almanac"]
