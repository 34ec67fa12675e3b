"""What `almanac status` says, as one dict: the CLI prints it, the console's Status page shows it."""

from __future__ import annotations

import shutil

from . import __version__
from .config import Config
from .datadir import DataDir
from .runtime import pidfile
from .runtime.netinfo import urls as lan_urls


def status_report(config: Config, data: DataDir, *, library=None) -> dict:
    """Installed books, maps and models, free disk, the service's state, whether the portal answers, every
    LAN URL and the model server; ``library`` is an open one to use (else one is opened and closed here)."""
    from content.library import Library
    from content.maps.registry import MapRegistry

    from .assistant.model_client import probe
    from .runtime.service_manager import detect

    own = library is None
    library = library or Library(data.db, data.archives)
    books = library.list()
    if own:
        library.close()
    host, port = config.get("server.host"), config.get("server.port")
    disk = shutil.disk_usage(data.root)
    live = pidfile.health(host, port)
    maps = MapRegistry(data.db, data.maps)
    try:
        map_names = sorted(p.name for p in maps.scan().values())
    finally:
        maps.close()
    model_server = probe(str(config.get("assistant.url")))
    return {
        "version": __version__,
        "config": config.source,
        "data_dir": str(data.root),
        "books": [{"name": b.name, "title": b.title, "articles": b.article_count, "size": b.size} for b in books],
        "maps": map_names,
        "models": sorted(p.name for p in data.models.iterdir() if p.is_dir() and not p.name.startswith("."))
        if data.models.is_dir()
        else [],
        "disk": {"free_bytes": disk.free, "total_bytes": disk.total},
        "service": detect(data).describe(),
        "answering": bool(live),
        "urls": lan_urls(host, port),
        "assistant": {"url": model_server.url, "models": model_server.models, "message": model_server.message},
    }
