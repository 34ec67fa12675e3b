"""The console's first page (/admin/): what is in the box and what is going on, with a link to each page."""

from __future__ import annotations

from .. import worker_state
from ..render import page
from .common import box, tasks


def home():
    s = worker_state.get()
    jobs = box().downloader.jobs(("queued", "running", "verifying", "paused", "failed"))
    data = {
        "installed": s.installed(),
        "disk": s.disk(),
        "jobs": {state: sum(j.state == state for j in jobs) for state in ("running", "queued", "paused", "failed")},
        "tasks_running": len(tasks().running()),
        "pages": [
            {
                "url": "/admin/library",
                "title": "Library",
                "about": "books: add from the catalog, update, remove, drives",
            },
            {"url": "/admin/packs", "title": "Packs", "about": "curated sets of books, maps and models, sized first"},
            {"url": "/admin/jobs", "title": "Downloads and jobs", "about": "progress, pause, resume, cancel"},
            {"url": "/admin/maps", "title": "Maps", "about": "installed maps, add a region"},
            {"url": "/admin/models", "title": "Models", "about": "pull, import, choose the assistant's model"},
            {"url": "/admin/settings", "title": "Settings", "about": "every configuration key and its default"},
            {"url": "/admin/status", "title": "Status", "about": "status, doctor, disk, memory, logs"},
        ],
    }
    return page("console/home.html", data)
