"""Saved conversations of the requesting device: the list, one conversation (its turns and waiting answers),
rename and delete. Resuming one is the chat page with ?c=ID."""

from __future__ import annotations

from flask import abort, jsonify, redirect, request

from ..assistant.conversations import Conversation, TitleError
from . import worker_state
from .answers import _timed
from .device import known_device
from .render import page, wants_json


def entries(cid: str) -> list[dict]:
    """The conversation in the order it happened: its answered turns and its waiting answers (jobs)."""
    s = worker_state.get()
    out = [{"kind": "turn", **t} for t in s.conversations.turns(cid)]
    jobs = s.answers.list(conversation=cid)
    for job in _timed(jobs):
        out.append(
            {
                "kind": "job",
                "q": job["question"],
                "a": job["answer"] if job["status"] == "done" else "",
                "passages": job["passages"],
                "created": job["created"],
                "job": job,
            }
        )
    out.sort(key=lambda e: e["created"])
    return out


def history_of(cid: str) -> list[dict]:
    """What the model is told of the conversation so far: the questions that got an answer, each with the
    passages it was answered from, and the answers (prompt.build_messages writes them as they were asked)."""
    return [{"q": e["q"], "a": e["a"], "passages": e["passages"]} for e in entries(cid) if e["a"]]


def owned(cid: str) -> Conversation:
    dev = known_device()
    conversation = worker_state.get().conversations.get(cid, dev) if dev else None
    if conversation is None:
        abort(404, description="No such conversation on this device.")
    return conversation


def conversation_list():
    dev = known_device()
    found = worker_state.get().conversations.list(dev) if dev else []
    return page("conversations.html", {"conversations": [c.to_json() for c in found]})


def conversation(cid: str):
    """JSON: the conversation with its turns; HTML: the chat page, resumed."""
    c = owned(cid)
    if not wants_json():
        return redirect(f"/assistant?c={c.id}", 303)
    return jsonify({**c.to_json(), "entries": entries(c.id)})


def rename(cid: str):
    c = owned(cid)
    body = request.get_json(silent=True) if request.is_json else request.form
    title = (body or {}).get("title") if isinstance(body, dict) or hasattr(body, "get") else None
    if not isinstance(title, str):
        abort(400, description='send the new title: {"title": text}')
    try:
        worker_state.get().conversations.rename(c.id, known_device(), title)
    except TitleError as e:
        abort(400, description=str(e))
    if wants_json():
        return jsonify(owned(cid).to_json())
    return redirect("/conversations", 303)


def delete(cid: str):
    c = owned(cid)
    s = worker_state.get()
    s.conversations.delete(c.id, known_device())
    for job in s.answers.list(conversation=c.id):
        s.answers.cancel(job.id)  # a running one stops at its next token
    s.answers.delete_conversation(c.id)
    if wants_json() or request.method == "DELETE":
        return jsonify({"deleted": True, "id": c.id})
    return redirect("/conversations", 303)
