"""Every HTML view has a JSON twin: the same data, asked for with ?format=json or Accept: application/json.
`wants_json()` is the one rule for "does this request want JSON", errors included."""

from __future__ import annotations

from flask import jsonify, render_template, request


def wants_json() -> bool:
    if request.args.get("format") == "json" or request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def page(template: str, data: dict, status: int = 200):
    if wants_json():
        return jsonify(data), status
    return render_template(template, **data), status
