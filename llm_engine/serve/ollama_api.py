"""The Ollama API: /api/generate, /api/chat, /api/tags, /api/version.

Streams newline-delimited JSON by default ("stream": false for one object). As in Ollama,
/api/generate wraps the prompt in the model's chat template (as one user message, after
`system`) unless "raw" is true or the checkpoint has no template; /api/chat always builds
the prompt from the messages (see prompts.py for the fallback without a template).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone

from . import fields as f
from .worker import Done, Job, ModelInfo

# The Ollama API version whose endpoints and fields this server follows; clients that
# check a minimum version read it from /api/version.
API_VERSION = "0.6.0"
DEFAULT_TEMPERATURE = 0.8  # Ollama's own default
NDJSON = "ndjson"
NS = 1_000_000_000


def error(e: f.ApiError) -> dict:
    return {"error": e.message}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def version() -> dict:
    return {"version": API_VERSION}


def tags(info: ModelInfo) -> dict:
    digest = hashlib.sha256((info.path / "manifest.json").read_bytes()).hexdigest()
    modified = datetime.fromtimestamp(info.modified, timezone.utc).isoformat()
    return {
        "models": [
            {
                "name": info.name + ":latest",
                "model": info.name + ":latest",
                "modified_at": modified,
                "size": info.size_bytes,
                "digest": digest,
                "details": {
                    "parent_model": "",
                    "format": "almanac-moe",
                    "family": info.model_type,
                    "families": [info.model_type],
                    "parameter_size": "",
                    "quantization_level": info.quantization,
                },
            }
        ]
    }


def _options(body: dict) -> dict:
    opts = body.get("options") or {}
    if not isinstance(opts, dict):
        raise f.ApiError(400, "'options' must be an object", "options")
    return opts


def _job(body: dict, limits: f.Limits, **prompt) -> Job:
    f.unsupported(body, "tools", "format", "images", "context", "suffix")
    opts = _options(body)
    n = f.integer(opts, "num_predict", None, -2, 2**31, "options.")
    if n == 0:
        raise f.ApiError(400, "'options.num_predict' must be >= 1 (or -1 for the limit)", "options.num_predict")
    seed = f.integer(opts, "seed", None, -1, 2**63 - 1, "options.")
    return Job(
        **prompt,
        # -1 (until done) and -2 (fill the context) both mean: up to this server's limit.
        max_tokens=f.max_tokens(None if n is None or n < 0 else n, limits, "options.num_predict"),
        temperature=f.number(opts, "temperature", DEFAULT_TEMPERATURE, 0.0, 100.0, "options."),
        seed=None if seed == -1 else seed,  # Ollama's -1: a random seed
        stop=f.stops(opts.get("stop"), "options.stop"),
    )


@dataclass
class Reply:
    """Shapes one /api/generate answer; ChatReply puts the text in a message instead."""

    model: str
    stream: bool
    framing: str = NDJSON

    def _text(self, text: str) -> dict:
        return {"response": text}

    def first(self) -> list[dict]:
        return []

    def chunk(self, text: str) -> dict:
        return {"model": self.model, "created_at": _now(), **self._text(text), "done": False}

    def _done(self, text: str, done: Done) -> dict:
        return {
            "model": self.model,
            "created_at": _now(),
            **self._text(text),
            "done": True,
            "done_reason": done.finish_reason,
            "total_duration": int(done.total_s * NS),
            "load_duration": 0,  # the model stays loaded between requests
            "prompt_eval_count": done.prompt_tokens,
            "prompt_eval_duration": int(done.prompt_eval_s * NS),
            "eval_count": done.completion_tokens,
            "eval_duration": int(done.eval_s * NS),
        }

    def final(self, done: Done) -> list[dict]:
        return [self._done("", done)]

    def loaded(self) -> dict:
        """The answer to a request without a prompt: the model is loaded, nothing generated."""
        return {"model": self.model, "created_at": _now(), **self._text(""), "done": True, "done_reason": "load"}

    def whole(self, text: str, done: Done) -> dict:
        return self._done(text, done)


@dataclass
class ChatReply(Reply):
    def _text(self, text: str) -> dict:
        return {"message": {"role": "assistant", "content": text}}


def generate(body: dict, info: ModelInfo, limits: f.Limits) -> tuple[Job | None, Reply]:
    name = f.model(body, info.name)
    reply = Reply(name, f.boolean(body, "stream", True))
    prompt = f.string(body, "prompt") or ""
    system = f.string(body, "system")
    if not prompt:
        return None, reply
    if info.has_chat_template and not f.boolean(body, "raw", False):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return _job(body, limits, messages=messages), reply
    text = f"{system}\n\n{prompt}" if system else prompt
    return _job(body, limits, prompt=text), reply


def chat(body: dict, info: ModelInfo, limits: f.Limits) -> tuple[Job | None, ChatReply]:
    name = f.model(body, info.name)
    reply = ChatReply(name, f.boolean(body, "stream", True))
    if body.get("messages") == []:
        return None, reply
    return _job(body, limits, messages=f.messages(body)), reply
