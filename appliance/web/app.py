"""The app factory: one portal for one configuration. Each gunicorn worker calls it once."""

from __future__ import annotations

import logging
import time

from flask import Flask

from content.library import Library, set_cluster_cache_mb

from .. import __version__
from ..config import Config, load_config
from ..datadir import prepare
from . import auth, cross_site, routes, security_headers
from .tile_fast_path import TileFastPath
from .worker_state import MapsState, WorkerState


def create_app(config: Config | None = None) -> Flask:
    """Build the portal: the library scanned, the maps state made, every URL registered, the tile fast path
    in front of Flask."""
    config = config or load_config()
    data = prepare(config)
    app = Flask(__name__)
    app.config["ALMANAC"] = config
    app.json.sort_keys = False
    app.logger.setLevel(getattr(logging, config.get("log_level").upper()))
    set_cluster_cache_mb(config.get("library.cluster_cache_mb"))
    library = Library(data.db, data.archives, scan_interval_s=config.get("library.scan_interval_s"))
    library.scan()
    state = WorkerState(
        config=config,
        data=data,
        library=library,
        maps=MapsState.open(data),
        started_at=time.time(),
        version=__version__,
    )
    app.extensions["almanac"] = state
    routes.register(app)
    cross_site.register(app)  # archive pages cannot act as the portal: no cross-site POST, sandboxed bytes
    auth.install(app)  # then the CSRF token of every change, the admin's login, admin.login_to_read
    security_headers.register(app)
    # Tiles are most of a map's requests: the common case skips Flask's request machinery; Flask still
    # answers everything else, errors included.
    app.wsgi_app = TileFastPath(
        app.wsgi_app, state.maps.registry, open_to_all=lambda: not state.config.get("admin.login_to_read")
    )
    return app
