"""The OpenAI API: request bodies -> Jobs, events -> response objects.

/v1/chat/completions and /v1/completions, streamed as server-sent events or whole. Only
text generation is offered: n > 1, tools, logprobs and response formats are refused with a
400 rather than ignored.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from . import fields as f
from .worker import Done, Job, ModelInfo

MAX_SEED = 2**63 - 1
SSE = "sse"


def error(e: f.ApiError) -> dict:
    kind = "invalid_request_error" if e.status < 500 else "server_error"
    return {"error": {"message": e.message, "type": kind, "param": e.param, "code": e.code}}


def models(info: ModelInfo) -> dict:
    return {
        "object": "list",
        "data": [
            {"id": info.name, "object": "model", "created": int(info.modified), "owned_by": "almanac"},
        ],
    }


def _job(body: dict, limits: f.Limits, **prompt) -> Job:
    f.unsupported(body, "tools", "functions", "logprobs", "response_format")
    f.integer(body, "n", 1, 1, 1)  # one choice per request
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return Job(
        **prompt,
        max_tokens=f.max_tokens(f.integer(body, key, None, 1, 2**31), limits, key),
        temperature=f.number(body, "temperature", 1.0, 0.0, 2.0),
        seed=f.integer(body, "seed", None, 0, MAX_SEED),
        stop=f.stops(body.get("stop")),
    )


def _stream_options(body: dict) -> bool:
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise f.ApiError(400, "'stream_options' must be an object", "stream_options")
    return f.boolean(opts, "include_usage", False)


def _usage(done: Done) -> dict:
    usage = {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }
    reused = (done.stats or {}).get("prompt_tokens_reused")
    if reused is not None:  # the prompt tokens the prompt cache held: only the others were computed
        usage["prompt_tokens_details"] = {"cached_tokens": reused}
    return usage


@dataclass
class ChatReply:
    """Shapes one chat request's answer: chunks while streaming, or one object."""

    model: str
    stream: bool
    include_usage: bool = False
    framing: str = SSE
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    object: str = "chat.completion"

    def _base(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def _chunk(self, delta: dict, finish: str | None) -> dict:
        return {
            **self._base(self.object + ".chunk"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def first(self) -> list[dict]:
        return [self._chunk({"role": "assistant", "content": ""}, None)]

    def chunk(self, text: str) -> dict:
        return self._chunk({"content": text}, None)

    def final(self, done: Done) -> list[dict]:
        out = [self._chunk({}, done.finish_reason)]
        if self.include_usage:
            out.append({**self._base(self.object + ".chunk"), "choices": [], "usage": _usage(done)})
        return out

    def whole(self, text: str, done: Done) -> dict:
        return {
            **self._base(self.object),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": done.finish_reason,
                }
            ],
            "usage": _usage(done),
        }


@dataclass
class CompletionReply(ChatReply):
    id: str = field(default_factory=lambda: "cmpl-" + uuid.uuid4().hex)
    object: str = "text_completion"

    def _choice(self, text: str, finish: str | None) -> dict:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    def first(self) -> list[dict]:
        return []

    def chunk(self, text: str) -> dict:
        return {**self._base(self.object), "choices": [self._choice(text, None)]}

    def final(self, done: Done) -> list[dict]:
        out = [{**self._base(self.object), "choices": [self._choice("", done.finish_reason)]}]
        if self.include_usage:
            out.append({**self._base(self.object), "choices": [], "usage": _usage(done)})
        return out

    def whole(self, text: str, done: Done) -> dict:
        return {**self._base(self.object), "choices": [self._choice(text, done.finish_reason)], "usage": _usage(done)}


def chat(body: dict, info: ModelInfo, limits: f.Limits) -> tuple[Job, ChatReply]:
    name = f.model(body, info.name)
    job = _job(body, limits, messages=f.messages(body))
    return job, ChatReply(name, f.boolean(body, "stream", False), _stream_options(body))


def completion(body: dict, info: ModelInfo, limits: f.Limits) -> tuple[Job, CompletionReply]:
    name = f.model(body, info.name)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # a batch of one prompt
    ids = isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    if not (isinstance(prompt, str) and prompt) and not ids:
        raise f.ApiError(400, "'prompt' must be a non-empty string or a list of token ids", "prompt")
    f.unsupported(body, "echo", "suffix")
    job = _job(body, limits, prompt=prompt)
    return job, CompletionReply(name, f.boolean(body, "stream", False), _stream_options(body))
