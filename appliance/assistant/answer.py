"""`answer()`: one question, from the library's passages to the model's last word, as a stream of events.

The events are small dataclasses, in this order: one PassagesFound (or a Failed at the search stage), then
TextDelta pieces of the answer, then one Done (or a Failed at the model stage when the answer broke off).
With no model, or one that refuses before writing anything, Done says so and the passages are the answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import quote

from content import passages as passage_finder
from content.search import QueryError

from . import model_client
from .prompt import build_messages, search_context


@dataclass(frozen=True)
class Settings:
    """The `assistant` section of the configuration."""

    url: str
    model: str = ""
    passages: int = 5
    max_tokens: int = 512
    temperature: float = 0.2
    timeout_s: float = 300

    @classmethod
    def from_config(cls, section: dict) -> Settings:
        return cls(
            url=str(section["url"]),
            model=str(section["model"]),
            passages=int(section["passages"]),
            max_tokens=int(section["max_tokens"]),
            temperature=float(section["temperature"]),
            timeout_s=float(section["timeout_s"]),
        )


@dataclass(frozen=True)
class PassagesFound:
    passages: list[dict]  # numbered from 1: n, book, path, title, text, url, score


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Done:
    answered: bool  # False: no model wrote an answer; the passages are what there is
    finish_reason: str | None = None
    usage: dict | None = None
    seconds: float | None = None
    message: str | None = None  # why there is no answer, for the reader
    error: str | None = None  # the model server's own reason, when it was asked and failed


@dataclass(frozen=True)
class Failed:
    stage: str  # "search": the question cannot be searched; "model": the answer broke off
    reason: str


Event = PassagesFound | TextDelta | Done | Failed


def cited(found: list) -> list[dict]:
    """content.passages' Passages, numbered as the answer cites them, each with its article's URL."""
    return [
        {
            "n": i,
            "book": p.book,
            "path": p.path,
            "title": p.title,
            "text": p.text,
            "url": f"/content/{quote(p.book)}/{quote(p.path)}",
            "score": p.score,
        }
        for i, p in enumerate(found, start=1)
    ]


def answer(
    question: str,
    books: list[tuple[str, object]],
    settings: Settings,
    history: list[dict] = (),
    model: str | None = None,
) -> Iterator[Event]:
    """Answer `question` from `books` ((name, archive) pairs) with the model server of `settings`.

    `history` is the conversation so far ([{"q", "a"}], see prompt.parse_history); `model` a name the server
    lists (default: settings.model, else the first it lists).
    """
    try:
        sources = cited(passage_finder.find(books, question, k=settings.passages, context=search_context(history)))
    except QueryError as e:
        yield Failed("search", str(e))
        return
    yield PassagesFound(sources)
    if not sources:
        yield Done(answered=False)
        return
    t0, started, finish = time.monotonic(), False, None
    try:
        for event in model_client.chat_stream(
            settings.url,
            model or settings.model,
            build_messages(question, sources, history),
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            timeout=settings.timeout_s,
        ):
            if isinstance(event, model_client.Delta):
                started = True
                yield TextDelta(event.text)
            else:
                finish = event
    except model_client.ModelUnavailable as e:
        if started:  # the answer broke off: say so beside what was written
            yield Failed("model", str(e))
            return
        # No model (the state of a fresh install) or it refused: the sources are the answer.
        yield Done(
            answered=False,
            error=str(e),
            message=f"No answer from a model ({e}); the sources below are what the library has on your question.",
        )
        return
    yield Done(
        answered=True,
        finish_reason=finish.finish_reason if finish else None,
        usage=finish.usage if finish else None,
        seconds=round(time.monotonic() - t0, 2),
    )
