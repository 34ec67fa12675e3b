"""The assistant's views: the chat page (and its JSON twin) and the server-sent event stream.

They only turn the events of appliance.assistant.answer() into HTML, JSON or SSE; what is asked, of whom,
and with which passages is decided there.
"""

from __future__ import annotations

import dataclasses

import json

from flask import Response, abort, request, stream_with_context

from .. import assistant
from ..assistant import model_client
from ..assistant.speeds import prompt_chars
from . import worker_state
from .answers import deep_status
from .cite import cite
from .conversations import entries, history_of, owned
from .device import device
from .render import page, wants_json

__all__ = ["assistant_page", "cite", "stream"]


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
    """The chat page; with ?q= (no JavaScript, or the JSON twin) the whole answer is written before replying.

    ?c=ID resumes a saved conversation of this device: its turns are shown, and a question asked with it is
    answered in its light and saved in it."""
    settings = _settings()
    question = (request.args.get("q") or "").strip()
    cid = request.args.get("c") or None
    data: dict = {
        "question": question,
        "passages": [],
        "answer": None,
        "finish_reason": None,
        "error": None,
        "declined": False,
        "nearest": [],
        "model": _model_status(settings),
        "deep": deep_status(question),
        "conversation": None,
        "books": request.args.getlist("books.name") or request.args.getlist("book"),
    }
    history: list[dict] = []
    if cid is not None:
        c = owned(cid)
        data["conversation"] = {**c.to_json(), "entries": entries(c.id)}
        history = history_of(c.id)
    if not question:
        return page("assistant.html", data)
    books = _books()
    if not data["model"]["available"]:
        settings = dataclasses.replace(settings, url="")  # passages only: ask no server
    answer: list[str] = []
    for event in assistant.answer(question, books, settings, history, model=data["model"]["model"]):
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
        elif event.nearest is not None:
            data["declined"], data["nearest"], data["error"] = True, event.nearest, event.message
        elif data["model"]["available"] and event.error:
            data["error"] = event.error  # the model was there and failed: say why
    if cid is not None and data["passages"]:
        worker_state.get().conversations.add_turn(cid, question, data["answer"] or "", data["passages"])
    return page("assistant.html", data)


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
        elif event.nearest is not None:
            yield _sse(
                "done",
                {
                    "finish_reason": None,
                    "answered": False,
                    "message": event.message,
                    "declined": True,
                    "nearest": event.nearest,
                },
            )
        else:
            yield _sse("done", {"finish_reason": None, "answered": False, "message": event.message})


def _saved(events, question: str, conversation: dict | None, settings: assistant.Settings, history: list[dict]):
    """answer()'s events passed on; the turn is saved in the conversation (if any) and the model's measured
    speed kept once the answer is done. `conversation` is {"id": ..., "new": bool} or None."""
    s = worker_state.get()
    passages: list[dict] = []
    text: list[str] = []
    for event in events:
        if isinstance(event, assistant.PassagesFound):
            passages = event.passages
            if conversation is not None and conversation["new"] and passages:
                c = s.conversations.create(conversation["device"], question)
                conversation.update(id=c.id, new=False)
                yield "conversation", {"id": c.id, "title": c.title, "url": f"/conversations/{c.id}"}
        elif isinstance(event, assistant.TextDelta):
            text.append(event.text)
        elif isinstance(event, assistant.Done):
            if conversation is not None and conversation["id"] and passages:
                s.conversations.add_turn(
                    conversation["id"], question, "".join(text) if event.answered else "", passages
                )
            if event.answered and event.usage and event.first_token_s:
                s.speeds.record(
                    settings.url,
                    prompt_chars(assistant.build_messages(question, passages, history)),
                    int(event.usage.get("prompt_tokens") or 0),
                    event.first_token_s,
                    int(event.usage.get("completion_tokens") or 0),
                    max(0.0, event.seconds - event.first_token_s),
                )
        yield event


def _sse_with_conversation(items):
    for item in items:
        if isinstance(item, tuple):
            yield _sse(*item)
        else:
            yield from sse_events([item])


def stream():
    """Server-sent events for the chat page: `passages`, then `delta` pieces of the answer, then `done`.

    GET ?q= asks one question (what EventSource can send); POST with JSON also carries the conversation so
    far, so a follow-up is searched and answered in its light.

    `error` replaces the rest when the question cannot be searched or the model fails; the passages already
    sent stay useful either way.
    """
    conversation = None
    if request.method == "POST":  # the page's questions: {"q", "history" | "conversation", "books"} as JSON
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, description='send a JSON object: {"q": question, "history": [...], "books": [...]}')
        question = str(body.get("q") or "").strip()
        try:
            history = assistant.parse_history(body.get("history"))
        except assistant.HistoryError as e:
            abort(400, description=str(e))
        books = _books(body.get("books") if isinstance(body.get("books"), list) else None)
        cid = body.get("conversation")
        if cid == "new":  # saved on the box from this first question on; the id comes back first
            conversation = {"id": None, "new": True, "device": device()}
        elif cid is not None:
            if not isinstance(cid, str):
                abort(400, description='conversation must be a conversation id or "new"')
            conversation = {"id": owned(cid).id, "new": False, "device": device()}
            history = history_of(cid)
    else:
        if wants_json():  # EventSource asks for text/event-stream; anything else gets the whole answer at once
            return assistant_page()
        question, history = (request.args.get("q") or "").strip(), []
        books = _books()  # an unknown book is a 404 before the stream starts
    settings = _settings()
    events = _saved(assistant.answer(question, books, settings, history), question, conversation, settings, history)
    return Response(
        stream_with_context(_sse_with_conversation(events)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
