"""The admin's login and the CSRF guard of every state-changing request.

Reading, searching, maps and the assistant are open to everyone on the LAN (``admin.login_to_read`` closes
them too); every change of the box needs the admin's session. A session is server-side (``admin_sessions``):
its token in an HttpOnly, SameSite=Strict cookie (Secure over TLS), with an expiry; logout deletes it.

Every POST, PUT, PATCH and DELETE carries a CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``;
pages have it in ``<meta name="csrf-token">``, and a script of a device with no cookie yet asks GET /api/csrf):
the admin session's own token, or, for the reader-side actions of a device with no login (asking, waiting
answers, conversations), an HMAC of its device id. An admin view takes only its session's token. Wrong
passwords are counted per client address and slowed (429 with Retry-After, growing), and every login,
failure and logout is logged.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import abort, current_app, g, jsonify, make_response, redirect, render_template, request

from .. import admin_password
from ..admin_sessions import Session, SessionStore, secret_key
from ..config import load_config, writable_config_path
from . import worker_state
from .device import device, known_device
from .render import wants_json

COOKIE = "almanac_admin"
CHANGING = ("POST", "PUT", "PATCH", "DELETE")
CONFIG_CHECK_S = 1.0  # how often a worker looks whether the config file changed (a setting saved elsewhere)


@dataclass
class AuthState:
    sessions: SessionStore
    key: bytes
    config_mtime: float | None = -1  # -1: not looked at yet, so the first request reads the file once
    config_checked: float = 0.0


def state() -> AuthState:
    s = current_app.extensions.get("almanac_auth")
    if s is None:
        data = worker_state.get().data
        s = current_app.extensions.setdefault(
            "almanac_auth", AuthState(SessionStore(data.db), secret_key(data.root), config_mtime=-1)
        )
    return s


def install(app) -> None:
    """The hooks (in this order): the config brought up to date, the CSRF check, the login-for-all rule."""
    app.before_request(_refresh_config)
    app.before_request(_check_csrf)
    app.before_request(_login_to_read)
    app.context_processor(lambda: {"csrf_token": csrf_token, "is_admin": is_admin()})


# -- who is asking -------------------------------------------------------------------------------------------
def session() -> Session | None:
    if "almanac_admin" not in g:
        g.almanac_admin = state().sessions.get(request.cookies.get(COOKIE))
    return g.almanac_admin


def is_admin() -> bool:
    return session() is not None


def device_token(device_id: str) -> str:
    return hmac.new(state().key, f"device:{device_id}".encode(), hashlib.sha256).hexdigest()


def csrf_token(create: bool = False) -> str:
    """The token this page's forms and scripts send back: the admin session's, else the device's. A device
    with no cookie yet gets "" (reading makes no cookie), unless ``create``: then its cookie is made now
    (GET /api/csrf does that for a page's script before its first change; the login form does it too)."""
    s = session()
    if s:
        return s.csrf
    dev = device() if create else known_device()
    return device_token(dev) if dev else ""


def sent_token() -> str:
    return request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""


def _check_csrf():
    if request.method not in CHANGING or request.routing_exception is not None:
        return None  # a 404 or 405 says more than a refusal would
    token = sent_token()
    s, dev = session(), known_device()
    good = [s.csrf] if s else []
    if dev:
        good.append(device_token(dev))
    if not token or not any(hmac.compare_digest(token, t) for t in good):
        current_app.logger.warning(
            "refused %s %s from %s: CSRF token missing or wrong", request.method, request.path, request.remote_addr
        )
        abort(403, "the form's security token is missing or out of date: reload the page and try again")
    return None


def admin_required(view):
    """Only the admin, logged in; a change also only with the session's own CSRF token."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        s = session()
        if s is None:
            if request.method in ("GET", "HEAD") and not wants_json():
                return redirect(f"/admin/login?next={request.full_path.rstrip('?')}")
            abort(401, "log in as the admin first (/admin/login)")
        if request.method in CHANGING and not hmac.compare_digest(sent_token(), s.csrf):
            abort(403, "this change needs the admin session's security token: reload the page and try again")
        return view(*args, **kwargs)

    return guarded


OPEN_WITHOUT_LOGIN = ("/admin/login", "/static/", "/healthz")


def _login_to_read():
    if not worker_state.get().config.get("admin.login_to_read") or is_admin():
        return None
    if request.path.startswith(OPEN_WITHOUT_LOGIN):
        return None
    if request.method in ("GET", "HEAD") and not wants_json() and not request.path.startswith("/api/"):
        return redirect(f"/admin/login?next={request.full_path.rstrip('?')}")
    abort(401, "this box asks everyone to log in (admin.login_to_read): /admin/login")


# -- the config file, re-read when another worker (or the CLI) changed it ------------------------------------
def _config_path():
    """The file this portal's settings are in: the one loaded, else the one `almanac config set` would write."""
    return worker_state.get().config.path or writable_config_path()


def _mtime(path) -> float | None:
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


def _refresh_config():
    a, now = state(), time.monotonic()
    if now - a.config_checked < CONFIG_CHECK_S:
        return None
    a.config_checked = now
    path = _config_path()
    mtime = _mtime(path)
    if mtime != a.config_mtime:
        a.config_mtime = mtime
        s = worker_state.get()
        try:
            s.config = load_config(path if mtime is not None else None)
        except Exception as e:  # a file broken by hand: keep serving with what was loaded
            current_app.logger.error("config file changed but does not load, kept the old one: %s", e)
    return None


def reload_config() -> None:
    """After this worker saved a setting: use it now (the others notice the file's new mtime)."""
    a = state()
    a.config_checked, a.config_mtime = 0.0, -1
    _refresh_config()


# -- the views -------------------------------------------------------------------------------------------------
def _safe_next(value: str | None) -> str:
    """Only a path on this box (never //host or a scheme): an open redirect would help phishing."""
    value = (value or "").strip()
    parts = urlsplit(value)
    if not value.startswith("/") or value.startswith("//") or parts.scheme or parts.netloc or "\\" in value:
        return "/admin/"
    return value


def token():
    """GET /api/csrf: this device's token, for a script or an app that posts (the device cookie comes with it)."""
    return jsonify({"csrf_token": csrf_token(create=True), "admin": is_admin()})


def login_page():
    """GET /admin/login: the form (and, as JSON, the token a script needs to post it)."""
    data = {
        "logged_in": is_admin(),
        "password_set": admin_password.is_set(worker_state.get().data.root),
        "next": _safe_next(request.args.get("next")),
        "error": "",
    }
    if wants_json():
        return jsonify({**data, "csrf_token": csrf_token(create=True)})
    return render_template("console/login.html", **data)


def login():
    """POST /admin/login (password, next): a new session, or 401 (wrong) / 429 (too many wrong, wait)."""
    st, data = state(), worker_state.get().data
    client = request.remote_addr or "?"
    nxt = _safe_next(request.form.get("next") or request.args.get("next"))
    wait = st.sessions.wait_s(client)
    if wait > 0:
        current_app.logger.warning("login refused from %s: throttled for %.0f s more", client, wait)
        return _login_error(429, f"too many wrong passwords: wait {int(wait) + 1} s and try again", nxt, wait)
    password = request.form.get("password", "")
    if not admin_password.is_set(data.root):
        return _login_error(403, "no admin password is set: run `almanac admin set-password` on the box", nxt)
    if not admin_password.check(data.root, password):
        failures, delay = st.sessions.failed(client)
        current_app.logger.warning("login failed from %s (%d wrong in a row)", client, failures)
        message = "wrong password" + (f"; the next try is possible in {int(delay)} s" if delay else "")
        return _login_error(401, message, nxt, delay or None)
    st.sessions.succeeded(client)
    hours = float(worker_state.get().config.get("admin.session_hours"))
    s = st.sessions.create(hours * 3600, client)
    current_app.logger.info("admin logged in from %s", client)
    if wants_json():
        response = jsonify({"logged_in": True, "csrf_token": s.csrf, "expires": s.expires})
    else:
        response = redirect(nxt, 303)
    response.set_cookie(
        COOKIE, s.token, max_age=int(hours * 3600), httponly=True, samesite="Strict", secure=request.is_secure, path="/"
    )
    return response


def _login_error(status: int, message: str, nxt: str, retry_after: float | None = None):
    if wants_json():
        response = make_response(jsonify({"error": "login refused", "message": message, "status": status}), status)
    else:
        page = render_template("console/login.html", logged_in=False, password_set=True, next=nxt, error=message)
        response = make_response(page, status)
    if retry_after:
        response.headers["Retry-After"] = str(int(retry_after) + 1)
    return response


def logout():
    """POST /admin/logout: the session ends on the server, and its cookie in the browser."""
    ended = state().sessions.end(request.cookies.get(COOKIE))
    if ended:
        current_app.logger.info("admin logged out from %s", request.remote_addr)
    response = jsonify({"logged_in": False}) if wants_json() else redirect("/admin/login", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=request.is_secure)
    return response
