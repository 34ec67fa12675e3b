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
from .library_words import known_share
from .prompt import build_messages, in_context, passage_key, search_context


@dataclass(frozen=True)
class Settings:
    """The `assistant` section of the configuration."""

    url: str
    model: str = ""
    passages: int = 5
    max_tokens: int = 512
    temperature: float = 0.2
    timeout_s: float = 300
    min_coverage: float = 0.0  # below it (on a first question) the library is said not to cover the question ...
    min_known: float = 1.0  # ... unless this share of its words is in the library (library_words; 1: never)
    follow_up_passages: int = 20  # new passages a follow-up adds to those its conversation holds (prompt.py)

    @classmethod
    def from_config(cls, section: dict) -> Settings:
        """The quick model's settings: the `assistant` section."""
        return cls(
            url=str(section["url"]).strip(),
            model=str(section["model"]),
            passages=int(section["passages"]),
            max_tokens=int(section["max_tokens"]),
            temperature=float(section["temperature"]),
            timeout_s=float(section["timeout_s"]),
            min_coverage=float(section["min_coverage"]),
            min_known=float(section["min_known"]),
            follow_up_passages=int(section["follow_up_passages"]),
        )

    @classmethod
    def deep_from_config(cls, section: dict) -> Settings:
        """The deep model's settings: `assistant.deep`, with the temperature and threshold of `assistant`."""
        deep = section["deep"]
        return cls(
            url=str(deep["url"]).strip(),
            model=str(deep["model"]),
            passages=int(deep["passages"]),
            max_tokens=int(deep["max_tokens"]),
            temperature=float(section["temperature"]),
            timeout_s=float(deep["timeout_s"]),
            min_coverage=float(section["min_coverage"]),
            min_known=float(section["min_known"]),
            follow_up_passages=int(section["follow_up_passages"]),
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
    first_token_s: float | None = None  # from asking to the first piece of the answer: reading the prompt
    nearest: list[dict] | None = None  # declined: the library does not cover the question; its nearest titles


@dataclass(frozen=True)
class Failed:
    stage: str  # "search": the question cannot be searched; "model": the answer broke off
    reason: str


Event = PassagesFound | TextDelta | Done | Failed


NOT_COVERED = "The library does not cover this question."


def cited(found: list) -> list[dict]:
    """content.passages' Passages, numbered as the answer cites them, each with the URL of its article's
    section."""
    return [
        {
            "n": i,
            "book": p.book,
            "path": p.path,
            "title": p.title,
            "text": p.text,
            "url": f"/content/{quote(p.book)}/{quote(p.path)}" + (f"#{quote(p.anchor)}" if p.anchor else ""),
            "score": p.score,
            "coverage": p.coverage,
        }
        for i, p in enumerate(found, start=1)
    ]


def nearest_titles(sources: list[dict], limit: int = 5) -> list[dict]:
    """The articles of passages too weak to cite, once each: what the library has nearest the question."""
    out: dict[str, dict] = {}
    for s in sources:
        key = f"/content/{quote(s['book'])}/{quote(s['path'])}"
        out.setdefault(key, {"title": s["title"], "book": s["book"], "url": key})
    return list(out.values())[:limit]


def find_sources(question: str, books: list[tuple[str, object]], settings: Settings, history: list[dict] = ()):
    """The numbered passages for `question`, and the nearest titles when the library does not cover it (then
    the passages are []). Raises content.search.QueryError for a question that cannot be searched.

    Only a first question is declined: a follow-up's words ("how tall is it?") lean on the conversation, and
    it takes at most settings.follow_up_passages passages the conversation does not already hold (those it
    holds cost the model nothing to read again: prompt.build_messages names them)."""
    sources = cited(passage_finder.find(books, question, k=settings.passages, context=search_context(history)))
    held = in_context(history) if history else {}
    if held:
        fresh = [s["n"] for s in sources if passage_key(s) not in held][: settings.follow_up_passages]
        kept = [s for s in sources if passage_key(s) in held or s["n"] in fresh]
        sources = [{**s, "n": n} for n, s in enumerate(kept, start=1)]
    if sources and not history and not covers(question, books, sources, settings):
        return [], nearest_titles(sources)
    return sources, None


def covers(question: str, books: list[tuple[str, object]], sources: list[dict], settings: Settings) -> bool:
    """Whether the library covers a first question: its best passage holds min_coverage of it, or the library
    holds min_known of its words (a wordy question whose answer uses other words than its own)."""
    if max(s["coverage"] for s in sources) >= settings.min_coverage:
        return True
    if settings.min_known >= 1:
        return False
    known = known_share(books, question)
    return known is not None and known >= settings.min_known


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
        sources, nearest = find_sources(question, books, settings, history)
    except QueryError as e:
        yield Failed("search", str(e))
        return
    yield PassagesFound(sources)
    if nearest is not None:
        yield Done(answered=False, message=NOT_COVERED, nearest=nearest)
        return
    if not sources:
        yield Done(answered=False)
        return
    t0, started, finish, first = time.monotonic(), False, None, None
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
                if not started:
                    started, first = True, time.monotonic()
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
        first_token_s=round(first - t0, 3) if first is not None else None,
    )
