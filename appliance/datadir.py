"""The data directory's fixed layout, created on first use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def archives(self) -> Path:
        return self.root / "archives"

    @property
    def maps(self) -> Path:
        return self.root / "maps"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def db(self) -> Path:
        return self.root / "almanac.db"

    @property
    def pidfile(self) -> Path:
        return self.root / "almanac.pid"

    @property
    def kernel_cache(self) -> Path:
        """Where the model engine's compiled CPU kernels are cached (Numba's NUMBA_CACHE_DIR): the service's
        sandbox lets it write only the data dir."""
        return self.root / "cache" / "kernels"

    @property
    def gazetteer(self) -> Path:
        """The GeoNames place index `almanac maps init` builds."""
        return self.maps / "gazetteer.db"

    def model_path(self, name: str) -> Path | None:
        """A converted model named as `assistant.model_dir` names it (a folder under models/, or a path);
        None when the name is empty."""
        name = str(name).strip()
        if not name:
            return None
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.models / path


def prepare(config: Config) -> DataDir:
    """Create the layout (idempotent) and prove it is writable, or raise a ConfigError naming data_dir."""
    data = DataDir(config.data_dir)
    try:
        for folder in (data.root, data.archives, data.maps, data.models, data.logs):
            folder.mkdir(parents=True, exist_ok=True)
        probe = data.root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigError(
            config.data_dir_source, "data_dir", f"{data.root} is not a writable directory ({reason})"
        ) from None
    return data
