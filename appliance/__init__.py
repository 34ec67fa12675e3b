"""Almanac's web appliance: the Flask app factory and the CLI that composes content and llm_engine."""
from __future__ import annotations

import logging
import time
from importlib.metadata import PackageNotFoundError, version as _dist_version

from flask import Flask

from .config import Config, load_config
from .datadir import prepare

try:
    __version__ = _dist_version("almanac")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"


def create_app(config: Config | None = None) -> Flask:
    """Build the portal for one configuration. Each gunicorn worker calls this once."""
    from content.library import Library

    from . import routes, services

    config = config or load_config()
    data = prepare(config)
    app = Flask(__name__)
    app.config["ALMANAC"] = config
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    app.logger.setLevel(getattr(logging, config.get("log_level").upper()))
    import libzim

    libzim.set_cluster_cache_max_size(config.get("library.cluster_cache_mb") << 20)
    library = Library(data.db, data.archives, scan_interval_s=config.get("library.scan_interval_s"))
    library.scan()
    app.extensions["almanac"] = services.Services(config=config, data=data, library=library,
                                                  started_at=time.time(), version=__version__)
    routes.register(app)
    return app
