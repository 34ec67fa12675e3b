"""The assistant's views: the chat page (and its JSON twin) and the server-sent event stream.

They only turn the events of appliance.assistant.answer() into HTML, JSON or SSE; what is asked, of whom,
and with which passages is decided there.
"""

from __future__ import annotations

import json
import re

from flask import Response, abort, request, stream_with_context
from markupsafe import Markup, escape

from .. import assistant
from ..assistant import model_client
from . import worker_state
from .render import page, wants_json


def _settings() -> assistant.Settings:
    return assistant.Settings.from_config(worker_state.get().config.get("assistant"))


def _books(names: list[str] | None = None) -> list[tuple[str, object]]:
    """(name, Archive) of the books asked for (?books.name= or ?book=, repeatable), else of every book."""
    if names is None:
        names = request.args.getlist("books.name") or request.args.getlist("book")
    chosen = worker_state.get().library.select(names)
    if chosen.unknown:
        abort(404, description="None of the requested books is in this library.")
    return chosen.archives


def _model_status(settings: assistant.Settings) -> dict:
    state = model_client.probe(settings.url, settings.model)
    return {"available": state.available, "model": state.model, "message": state.message}


def assistant_page():
    """The chat page; with ?q= (no JavaScript, or the JSON twin) the whole answer is written before replying."""
    settings = _settings()
    question = (request.args.get("q") or "").strip()
    data: dict = {
        "question": question,
        "passages": [],
        "answer": None,
        "finish_reason": None,
        "error": None,
        "model": _model_status(settings),
    }
    if not question:
        return page("assistant.html", data)
    books = _books()
    if not data["model"]["available"]:
        settings = assistant.Settings(url="", passages=settings.passages)  # passages only: ask no server
    answer: list[str] = []
    for event in assistant.answer(question, books, settings, model=data["model"]["model"]):
        if isinstance(event, assistant.PassagesFound):
            data["passages"] = event.passages
        elif isinstance(event, assistant.TextDelta):
            answer.append(event.text)
        elif isinstance(event, assistant.Failed):
            data["error"] = event.reason
            if event.stage == "search":
                return page("assistant.html", data, 400)
        elif event.answered:
            data["answer"], data["finish_reason"] = "".join(answer), event.finish_reason
        elif data["model"]["available"] and event.error:
            data["error"] = event.error  # the model was there and failed: say why
    return page("assistant.html", data)


def cite(answer: str, cited: list[dict]) -> Markup:
    """The answer as HTML: its text escaped, each [n] that names a passage a link to that source."""

    def link(m: re.Match) -> str:
        n = int(m.group(1))
        return f'<a class="cite" href="#source-{n}">[{n}]</a>' if 1 <= n <= len(cited) else m.group(0)

    return Markup(re.sub(r"\[(\d+)\]", link, str(escape(answer))))


def _sse(name: str, data) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_events(events) -> str:
    """answer()'s events as server-sent events: `passages`, `delta`..., then `done` or `error`."""
    for event in events:
        if isinstance(event, assistant.PassagesFound):
            yield _sse("passages", event.passages)
        elif isinstance(event, assistant.TextDelta):
            yield _sse("delta", {"text": event.text})
        elif isinstance(event, assistant.Failed):
            yield _sse("error", {"message": event.reason, "stage": event.stage})
        elif event.answered:
            yield _sse(
                "done",
                {
                    "finish_reason": event.finish_reason,
                    "answered": True,
                    "usage": event.usage,
                    "seconds": event.seconds,
                },
            )
        else:
            yield _sse("done", {"finish_reason": None, "answered": False, "message": event.message})


def stream():
    """Server-sent events for the chat page: `passages`, then `delta` pieces of the answer, then `done`.

    GET ?q= asks one question (what EventSource can send); POST with JSON also carries the conversation so
    far, so a follow-up is searched and answered in its light.

    `error` replaces the rest when the question cannot be searched or the model fails; the passages already
    sent stay useful either way.
    """
    if request.method == "POST":  # the page's follow-up questions: {"q", "history", "books"} as JSON
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, description='send a JSON object: {"q": question, "history": [...], "books": [...]}')
        question = str(body.get("q") or "").strip()
        try:
            history = assistant.parse_history(body.get("history"))
        except assistant.HistoryError as e:
            abort(400, description=str(e))
        books = _books(body.get("books") if isinstance(body.get("books"), list) else None)
    else:
        if wants_json():  # EventSource asks for text/event-stream; anything else gets the whole answer at once
            return assistant_page()
        question, history = (request.args.get("q") or "").strip(), []
        books = _books()  # an unknown book is a 404 before the stream starts
    events = assistant.answer(question, books, _settings(), history)
    return Response(
        stream_with_context(sse_events(events)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
