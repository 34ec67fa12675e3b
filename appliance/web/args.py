"""Typed query arguments: a bad value is a 400 that names the argument."""

from __future__ import annotations

from flask import abort, request


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """?name= as a whole number clamped to [low, high]; missing or empty: `default`."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(400, description=f"{name} must be a whole number")
    return max(low, min(high, value))


def whole_number(value: str, what: str) -> int:
    """A path part (a tile's z, x or y) as a whole number that is not negative."""
    try:
        n = int(value)
    except ValueError:
        abort(400, description=f"{what} must be a whole number")
    if n < 0:
        abort(400, description=f"{what} must not be negative")
    return n


def float_arg(name: str, low: float, high: float, default: float | None = None) -> float:
    """?name= as a number in [low, high]; required unless a default is given."""
    if name not in request.args:
        if default is None:
            abort(400, description=f"{name} is required")
        return default
    try:
        value = float(request.args[name])
    except ValueError:
        abort(400, description=f"{name} must be a number")
    if not low <= value <= high:
        abort(400, description=f"{name} must be between {low} and {high}")
    return value
