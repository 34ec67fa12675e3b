"""The portal: views and HTTP helpers only. `create_app(config)` builds it; `routes.py` lists every URL."""

from .app import create_app

__all__ = ["create_app"]
