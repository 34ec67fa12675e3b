"""Reading the fields of a JSON request body, with an ApiError naming the field at fault.

Shared by the OpenAI and Ollama front ends; the HTTP server turns ApiError into a 4xx reply
in the shape of the API that was called.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ROLES = ("system", "user", "assistant")
MAX_STOPS = 16  # OpenAI allows 4; a few more cost nothing, hundreds would slow every token


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass
class Limits:
    max_tokens: int  # the most a request may ask to generate; also the default


def parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, f"the request body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _is_number(v) -> bool:
    # JSON true/false arrive as bool, which Python counts as int.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number(d: dict, key: str, default: float | None, lo: float, hi: float, where: str = "") -> float | None:
    v = d.get(key)
    if v is None:
        return default
    if not _is_number(v) or not lo <= v <= hi:
        raise ApiError(400, f"'{where}{key}' must be a number between {lo} and {hi}", where + key)
    return float(v)


def integer(d: dict, key: str, default: int | None, lo: int, hi: int, where: str = "") -> int | None:
    v = d.get(key)
    if v is None:
        return default
    if not _is_number(v) or v != int(v) or not lo <= v <= hi:
        raise ApiError(400, f"'{where}{key}' must be an integer between {lo} and {hi}", where + key)
    return int(v)


def boolean(d: dict, key: str, default: bool) -> bool:
    v = d.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ApiError(400, f"'{key}' must be true or false", key)
    return v


def string(d: dict, key: str, required: bool = False, where: str = "") -> str | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise ApiError(
            400, f"'{where}{key}' must be a string" if v is not None else f"'{where}{key}' is required", where + key
        )
    return v


def model(d: dict, served: str) -> str:
    """The requested model name; Ollama clients add a ':latest' tag to bare names."""
    name = string(d, "model", required=True)
    if name not in (served, served + ":latest"):
        raise ApiError(404, f"model '{name}' not found; this server runs '{served}'", "model", "model_not_found")
    return name


def max_tokens(value: int | None, limits: Limits, key: str) -> int:
    """A requested generation length: absent means the server's limit, above it is an error."""
    if value is None:
        return limits.max_tokens
    if value > limits.max_tokens:
        raise ApiError(400, f"'{key}' = {value} is above this server's limit of {limits.max_tokens} tokens", key)
    return value


def stops(value, key: str = "stop") -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_STOPS or not all(isinstance(s, str) and s for s in value):
        raise ApiError(
            400, f"'{key}' must be a non-empty string or a list of at most {MAX_STOPS} non-empty strings", key
        )
    return value


def _content(m: dict, where: str) -> str:
    """A message's text: a string, or OpenAI's list of {"type": "text", "text": ...} parts."""
    c = m.get("content")
    if c is None:
        return ""  # an assistant turn that only called tools has no content
    if isinstance(c, str):
        return c
    if isinstance(c, list) and all(isinstance(p, dict) for p in c):
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in c):
            raise ApiError(400, f"'{where}.content': only text parts are supported", where + ".content")
        return "".join(p["text"] for p in c)
    raise ApiError(400, f"'{where}.content' must be a string or a list of text parts", where + ".content")


def messages(d: dict) -> list[dict]:
    """Chat messages reduced to [{"role", "content"}] with roles system/user/assistant."""
    ms = d.get("messages")
    if not isinstance(ms, list) or not ms:
        raise ApiError(400, "'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(ms):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ApiError(400, f"'{where}' must be an object", where)
        if m.get("role") not in ROLES:
            raise ApiError(400, f"'{where}.role' must be one of {', '.join(ROLES)}", where + ".role")
        if m.get("images"):
            raise ApiError(400, f"'{where}.images': this model reads text only", where + ".images")
        out.append({"role": m["role"], "content": _content(m, where)})
    return out


def unsupported(d: dict, *keys: str) -> None:
    """Refuse features we do not implement rather than silently ignoring them."""
    for k in keys:
        if d.get(k):
            raise ApiError(400, f"'{k}' is not supported by this server", k)
