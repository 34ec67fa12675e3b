"""Every URL the portal answers, in one place (blueprint, rule, view[, methods: GET and HEAD unless named])."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from . import answers, assistant, auth, catalog, conversations, jobs, maps, portal, reader, search, worker_state
from .auth import admin_required
from .console import home as console_home
from .console import jobs as console_jobs
from .console import library as console_library
from .console import maps as console_maps
from .console import models as console_models
from .console import settings as console_settings
from .console import status as console_status
from .console import tokens as console_tokens
from .device import known_device
from .render import wants_json

ROUTES = {
    "portal": [
        ("/", portal.home),
        ("/library", portal.library),
        ("/catalog/illustration/<name>", portal.illustration),
        ("/healthz", portal.healthz),
    ],
    "reader": [
        ("/content/<book>/", reader.main_page),
        ("/content/<book>", reader.main_page),
        ("/content/<book>/<path:path>", reader.content),
        ("/random", reader.random_article),
        ("/viewer", reader.viewer),
        ("/raw/<book>/content/<path:path>", reader.raw),
    ],
    "catalog": [
        ("/book/<name>", catalog.book_home),
        ("/catalog/v2/entries", catalog.opds_entries),
        ("/catalog/download/<name>", catalog.download),
    ],
    "search": [
        ("/search", search.search),
        ("/suggest", search.suggest),
    ],
    "maps": maps.ROUTES,
    "assistant": [
        ("/assistant", assistant.assistant_page),
        ("/assistant/stream", assistant.stream, ["GET", "HEAD", "POST"]),
    ],
    "jobs": [  # read-only here: the console changes jobs (/admin/jobs/ID/...), behind the admin's login
        ("/api/jobs", jobs.jobs_list),
        ("/api/jobs/<int:job_id>", jobs.job_detail),
    ],
    "answers": [
        ("/answers", answers.inbox),
        ("/answers", answers.submit, ["POST"]),
        ("/answers/ready", answers.ready),
        ("/answers/<int:job_id>", answers.answer_page),
        ("/answers/<int:job_id>", answers.delete, ["DELETE"]),
        ("/answers/<int:job_id>/cancel", answers.cancel, ["POST"]),
        ("/answers/<int:job_id>/delete", answers.delete, ["POST"]),
    ],
    "conversations": [
        ("/conversations", conversations.conversation_list),
        ("/conversations/<cid>", conversations.conversation),
        ("/conversations/<cid>", conversations.delete, ["DELETE"]),
        ("/conversations/<cid>/rename", conversations.rename, ["POST"]),
        ("/conversations/<cid>/delete", conversations.delete, ["POST"]),
    ],
    "login": [
        ("/admin/login", auth.login_page),
        ("/admin/login", auth.login, ["POST"]),
        ("/admin/logout", auth.logout, ["POST"]),
        ("/api/csrf", auth.token),
    ],
}

# The admin console: every view behind auth.admin_required (the admin's session; a change also its CSRF token).
CONSOLE = [
    ("/admin/", console_home.home),
    ("/admin/library", console_library.library),
    ("/admin/library/download", console_library.download_book, ["POST"]),
    ("/admin/library/import", console_library.import_drive, ["POST"]),
    ("/admin/library/export", console_library.export_drive, ["POST"]),
    ("/admin/library/<name>/remove", console_library.remove, ["POST"]),
    ("/admin/library/<name>/update", console_library.update, ["POST"]),
    ("/admin/catalog", console_library.catalog_page),
    ("/admin/packs", console_library.packs),
    ("/admin/packs/<pack_id>/install", console_library.install_pack, ["POST"]),
    ("/admin/jobs", console_jobs.jobs_page),
    ("/admin/jobs/<int:job_id>/<verb>", console_jobs.change_job, ["POST"]),
    ("/admin/tasks/<int:task_id>", console_jobs.task_page),
    ("/admin/tasks/<int:task_id>/stop", console_jobs.stop_task, ["POST"]),
    ("/admin/maps", console_maps.maps_page),
    ("/admin/maps/estimate", console_maps.estimate),
    ("/admin/maps/region", console_maps.add_region, ["POST"]),
    ("/admin/maps/<name>/remove", console_maps.remove_map, ["POST"]),
    ("/admin/models", console_models.models_page),
    ("/admin/models/pull", console_models.pull, ["POST"]),
    ("/admin/models/import", console_models.import_model, ["POST"]),
    ("/admin/models/convert", console_models.convert, ["POST"]),
    ("/admin/models/choose", console_models.choose, ["POST"]),
    ("/admin/models/server/start", console_models.start_server, ["POST"]),
    ("/admin/models/server/stop", console_models.stop_server, ["POST"]),
    ("/admin/settings", console_settings.settings_page),
    ("/admin/settings", console_settings.change, ["POST"]),
    ("/admin/status", console_status.status_page),
    ("/admin/tokens", console_tokens.tokens_page),
    ("/admin/tokens", console_tokens.create_token, ["POST"]),
    ("/admin/tokens/<int:token_id>/revoke", console_tokens.revoke_token, ["POST"]),
]
ROUTES["console"] = [(rule, admin_required(view), *methods) for rule, view, *methods in CONSOLE]


def register(app: Flask) -> None:
    for name, rules in ROUTES.items():
        bp = Blueprint(name, __name__)
        for rule, view, *methods in rules:
            bp.add_url_rule(rule, view_func=view, methods=methods[0] if methods else ["GET", "HEAD"])
        app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.context_processor(_layout_context)
    app.before_request(_notice_new_archives)
    app.jinja_env.filters["human_bytes"] = human_bytes
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["cite"] = assistant.cite
    app.jinja_env.filters["minutes"] = minutes
    app.jinja_env.filters["when"] = when


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def minutes(seconds: float | None) -> str:
    """ "about 3 minutes", for a waiting answer's ETA; "" when it is not known."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "under a minute"
    n = round(seconds / 60)
    return f"about {n} minute{'s' if n != 1 else ''}" if n < 120 else f"about {round(n / 60)} hours"


def when(unix_time: float) -> str:
    """A moment as the box's clock shows it, to the minute: "2026-12-02 01:15"."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix_time))


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m"


def _http_error(e: HTTPException):
    if wants_json() or request.path == "/healthz" or request.path.startswith("/api/"):
        return jsonify({"error": e.name, "message": e.description, "status": e.code}), e.code
    if e.code == 405 and request.path.startswith("/admin/"):  # a change asked for by GET: say how it is made
        e.description = "this address changes the box: it takes a POST from the console's form, never a GET"
    return render_template("error.html", code=e.code, name=e.name, message=e.description), e.code


def _unexpected_error(e: Exception):
    # A bug or a broken file must cost one request, never the worker.
    current_app.logger.exception("unhandled error on %s", request.path)
    if wants_json():
        return jsonify({"error": "Internal Server Error", "status": 500}), 500
    return render_template(
        "error.html",
        code=500,
        name="Something went wrong",
        message="The server hit an error on this page; it is logged.",
    ), 500


def _notice_new_archives() -> None:
    # Archives dropped in, replaced or deleted appear without a restart; scan_if_due is throttled and
    # costs one directory listing when nothing changed.
    if not request.path.startswith("/static/"):
        worker_state.get().library.scan_if_due()


def _layout_context() -> dict:
    s = worker_state.get()
    return {
        "site_title": s.config.get("portal.title"),
        "version": s.version,
        "installed": s.installed(),
        "disk": s.disk(),
        "uptime_s": s.uptime_s(),
        **_answers_waiting(s),
    }


def _answers_waiting(s) -> dict:
    """The header's "N answers ready" for this device (no cookie: none, and no database read)."""
    dev = known_device()
    if not dev or request.path.startswith("/static/"):
        return {"answers_ready": 0, "answers_waiting": 0}
    return {"answers_ready": s.answers.ready_count(dev), "answers_waiting": s.answers.pending_count(dev)}
