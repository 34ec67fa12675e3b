"""The console's Tokens: who may use the model API from the LAN. A token is made here (its secret shown on the
answer to that one request, never again: not in a redirect, not in the list), listed with when a model server
last saw it, and revoked (refused from the next request on). The store is appliance/api_tokens.py, the same
as `almanac model tokens`."""

from __future__ import annotations

from flask import abort, make_response, request

from ... import api_tokens
from .. import worker_state
from ..render import page
from .common import done, form


def _data(**extra) -> dict:
    s = worker_state.get()
    return {
        "tokens": [t.to_json() for t in api_tokens.list_tokens(s.data)],
        "served_to_lan": bool(s.config.get("assistant.serve_to_lan")),
        "notice": request.args.get("notice", ""),
        **extra,
    }


def tokens_page():
    """GET /admin/tokens."""
    return page("console/tokens.html", _data())


def create_token():
    """POST /admin/tokens (name): the new token and its secret, shown on this answer only."""
    try:
        token, secret = api_tokens.create(worker_state.get().data, form("name"))
    except api_tokens.TokenError as e:
        abort(400, str(e))
    data = _data(created=token.to_json(), secret=secret)
    response = make_response(page("console/tokens.html", data, 201))
    response.headers["Cache-Control"] = "no-store"  # the secret must not stay in a cache
    return response


def revoke_token(token_id: int):
    """POST /admin/tokens/<id>/revoke."""
    if not api_tokens.revoke(worker_state.get().data, token_id):
        abort(404, f"no token {token_id}")
    return done(f"token {token_id} revoked: the model API refuses it from its next request on", "/admin/tokens")
