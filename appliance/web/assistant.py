"""The assistant: a question answered from the library's passages, with numbered citations.

The passages come from content.passages (the library's full-text index); the answer from the model server at
`assistant.url` (see model_client). Without a model the page still gives the passages, each linked to its
article, so the assistant is useful from the first minute.
"""
from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

from flask import Response, abort, request, stream_with_context
from markupsafe import Markup, escape

from content import passages as passage_finder
from content.search import QueryError

from . import model_client, services
from .render import page, wants_json

SYSTEM_PROMPT = (
    "You answer questions for the people using an offline library. Use only the numbered passages from the "
    "library given with the question. Cite the passages you use with their numbers in square brackets, like "
    "[1] or [2][3], right after the sentence they support. If the passages do not answer the question, say so "
    "plainly instead of guessing. Answer in the language of the question, briefly and clearly."
)


def _settings() -> dict:
    return services.get().config.get("assistant")


def _books(wanted: list[str] | None = None) -> list[tuple[str, object]]:
    """(name, Archive) of the books asked for (?books.name=, repeatable), else of every book."""
    s = services.get()
    wanted = wanted if wanted is not None else (request.args.getlist("books.name") or request.args.getlist("book"))
    names = wanted or [b.name for b in s.library.list()]
    out = [(name, archive) for name in names if (archive := s.library.archive(name)) is not None]
    if wanted and not out:
        abort(404, description="None of the requested books is in this library.")
    return out


def _cited(found: list) -> list[dict]:
    return [{"n": i, "book": p.book, "path": p.path, "title": p.title, "text": p.text,
             "url": f"/content/{quote(p.book)}/{quote(p.path)}", "score": p.score}
            for i, p in enumerate(found, start=1)]


HISTORY_TURNS = 6  # earlier questions and answers of a conversation kept in the prompt ...
HISTORY_CHARS = 1500  # ... each answer cut to this many characters: the passages matter more


def build_messages(question: str, cited: list[dict], history: list[dict] = ()) -> list[dict]:
    """The chat the model is given: the instructions, the conversation so far (its questions and answers,
    without their passages), then the numbered passages for this question and the question."""
    sources = "\n\n".join(f"[{c['n']}] {c['title']} ({c['book']})\n{c['text']}" for c in cited)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for turn in list(history)[-HISTORY_TURNS:]:
        messages += [{"role": "user", "content": turn["q"]},
                     {"role": "assistant", "content": turn["a"][:HISTORY_CHARS]}]
    messages.append({"role": "user", "content": f"Passages from the library:\n\n{sources}\n\nQuestion: {question}"})
    return messages


def parse_history(raw) -> list[dict]:
    """A conversation sent by the page: [{"q": question, "a": answer}, ...]; anything else is a 400."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 50:
        abort(400, description="history must be a list of at most 50 {q, a} turns")
    for turn in raw:
        if not (isinstance(turn, dict) and isinstance(turn.get("q"), str) and isinstance(turn.get("a"), str)):
            abort(400, description="each history turn must be {\"q\": text, \"a\": text}")
    return [{"q": t["q"][:2000], "a": t["a"]} for t in raw]


def _find(question: str, books: list[tuple[str, object]], history: list[dict] = ()) -> list[dict]:
    context = " ".join(t["q"] for t in list(history)[-2:])  # the last questions name what "it" is
    return _cited(passage_finder.find(books, question, k=_settings()["passages"], context=context))


def _model_status() -> dict:
    cfg = _settings()
    state = model_client.probe(cfg["url"], cfg["model"])
    return {"available": state.available, "model": state.model, "message": state.message}


def assistant_page():
    """The chat page; with ?q= (no JavaScript, or the JSON twin) the whole answer is written before replying."""
    question = (request.args.get("q") or "").strip()
    data: dict = {"question": question, "passages": [], "answer": None, "finish_reason": None, "error": None,
                  "model": _model_status()}
    if not question:
        return page("assistant.html", data)
    books = _books()
    try:
        data["passages"] = _find(question, books)
    except QueryError as e:
        data["error"] = str(e)
        return page("assistant.html", data, 400)
    if data["passages"] and data["model"]["available"]:
        answer = []
        try:
            for event in _ask_model(question, data["passages"], data["model"]["model"]):
                if isinstance(event, model_client.Delta):
                    answer.append(event.text)
                else:
                    data["finish_reason"] = event.finish_reason
            data["answer"] = "".join(answer)
        except model_client.ModelUnavailable as e:
            data["error"] = str(e)
    return page("assistant.html", data)


def _ask_model(question: str, cited: list[dict], model: str | None = None, history: list[dict] = ()):
    cfg = _settings()
    return model_client.chat_stream(cfg["url"], model or cfg["model"], build_messages(question, cited, history),
                                    max_tokens=cfg["max_tokens"], temperature=float(cfg["temperature"]),
                                    timeout=float(cfg["timeout_s"]))


def cite(answer: str, cited: list[dict]) -> Markup:
    """The answer as HTML: its text escaped, each [n] that names a passage a link to that source."""
    def link(m: re.Match) -> str:
        n = int(m.group(1))
        return f'<a class="cite" href="#source-{n}">[{n}]</a>' if 1 <= n <= len(cited) else m.group(0)

    return Markup(re.sub(r"\[(\d+)\]", link, str(escape(answer))))


def _event(name: str, data) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


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
            abort(400, description="send a JSON object: {\"q\": question, \"history\": [...], \"books\": [...]}")
        question = str(body.get("q") or "").strip()
        history = parse_history(body.get("history"))
        books = _books(body.get("books") if isinstance(body.get("books"), list) else None)
    else:
        if wants_json():  # EventSource asks for text/event-stream; anything else gets the whole answer at once
            return assistant_page()
        question, history = (request.args.get("q") or "").strip(), []
        books = _books()  # an unknown book is a 404 before the stream starts

    def events():
        try:
            cited = _find(question, books, history)
        except QueryError as e:
            yield _event("error", {"message": str(e), "stage": "search"})
            return
        yield _event("passages", cited)
        if not cited:
            yield _event("done", {"finish_reason": None, "answered": False, "message": None})
            return
        t0, started, finish = time.monotonic(), False, None
        try:
            for event in _ask_model(question, cited, history=history):
                if isinstance(event, model_client.Delta):
                    started = True
                    yield _event("delta", {"text": event.text})
                else:
                    finish = event
        except model_client.ModelUnavailable as e:
            if started:  # the answer broke off: say so beside what was written
                yield _event("error", {"message": str(e), "stage": "model"})
                return
            # No model (the state of a fresh install) or it refused: the sources are the answer.
            yield _event("done", {"finish_reason": None, "answered": False,
                                  "message": f"No answer from a model ({e}); the sources below are what the "
                                             "library has on your question."})
            return
        yield _event("done", {"finish_reason": finish.finish_reason if finish else None, "answered": True,
                              "usage": finish.usage if finish else None,
                              "seconds": round(time.monotonic() - t0, 2)})

    return Response(stream_with_context(events()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
