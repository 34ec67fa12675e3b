"""Waiting answers: asking the deep model for one, the inbox, one answer, cancel and delete (each with its
JSON twin). The answers are written by the answer runner beside the portal; these views only read and write
the jobs of the requesting device."""

from __future__ import annotations

import math

from flask import abort, jsonify, redirect, request

from .. import assistant
from ..assistant import model_client
from ..assistant.jobs import Job
from ..assistant.later import NothingToAsk, ask_later
from ..assistant.prompt import SYSTEM_PROMPT, HistoryError
from ..assistant.speeds import new_job_eta, schedule
from content.search import QueryError

from . import worker_state
from .cite import cite
from .device import device, known_device
from .render import page, wants_json

PASSAGE_CHARS = 500  # a passage's usual length, to size a prompt before it is built


def deep_settings() -> assistant.Settings:
    return assistant.Settings.deep_from_config(worker_state.get().config.get("assistant"))


def deep_status(question: str = "") -> dict:
    """Whether a deep model answers, and in about how many seconds a question asked now would be ready."""
    deep = deep_settings()
    if not deep.url:
        return {"available": False, "model": None, "eta_s": None, "label": None, "message": "no deep model"}
    state = model_client.probe(deep.url, deep.model)
    s = worker_state.get()
    waiting = s.answers.waiting()
    chars = len(SYSTEM_PROMPT) + len(question) + deep.passages * PASSAGE_CHARS
    eta = new_job_eta(waiting, s.speeds.get(deep.url), chars, deep.max_tokens)
    if eta is None:
        label = "Ask the deep model — answered later (its speed is not measured yet)"
    else:
        minutes = max(1, math.ceil(eta / 60))
        label = f"Ask the deep model — ready in about {minutes} minute{'s' if minutes != 1 else ''}"
    return {
        "available": state.available,
        "model": state.model,
        "eta_s": eta,
        "queued": len(waiting),
        "label": label,
        "message": state.message,  # a waiting answer may be asked while the model is down: it waits for it
    }


def _timed(jobs: list[Job]) -> list[dict]:
    """Jobs as JSON, the waiting ones with their place in the queue and seconds until ready."""
    s = worker_state.get()
    deep = deep_settings()
    places = schedule(s.answers.waiting(), s.speeds.get(deep.url) if deep.url else None)
    out = []
    for job in jobs:
        d = job.to_json()
        d["position"], d["eta_s"] = places.get(job.id, (None, None))
        d["answer_html"] = str(cite(job.answer, job.passages))
        out.append(d)
    return out


def inbox():
    """This device's waiting answers, newest first; the answers ready and not yet read are counted."""
    s, dev = worker_state.get(), known_device()
    jobs = s.answers.list(device=dev) if dev else []
    data = {
        "ready": s.answers.ready_count(dev) if dev else 0,
        "waiting": sum(1 for j in jobs if j.waiting),
        "jobs": _timed(jobs),
        "deep": deep_status(),
    }
    return page("answers.html", data)


def ready():
    """The header's figure, polled by the page while answers wait: {"ready": n, "waiting": m}."""
    s, dev = worker_state.get(), known_device()
    if not dev:
        return jsonify({"ready": 0, "waiting": 0})
    return jsonify({"ready": s.answers.ready_count(dev), "waiting": s.answers.pending_count(dev)})


def _submission() -> tuple[str, list[str], str | None]:
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, description='send a JSON object: {"q": question, "books": [...], "conversation": id}')
        books = body.get("books") or []
        if not isinstance(books, list) or not all(isinstance(b, str) for b in books):
            abort(400, description="books must be a list of book names")
        conversation = body.get("conversation")
        if conversation is not None and not isinstance(conversation, str):
            abort(400, description="conversation must be a conversation id")
        return str(body.get("q") or "").strip(), books, conversation or None
    form = request.form
    return (form.get("q") or "").strip(), form.getlist("books.name") or form.getlist("book"), form.get("c") or None


def submit():
    """Ask the deep model: the question becomes a job (201 with it as JSON; a form is sent to its page)."""
    from .conversations import history_of

    question, names, conversation = _submission()
    s, dev = worker_state.get(), device()
    chosen = s.library.select(names)
    if chosen.unknown:
        abort(404, description="None of the requested books is in this library.")
    history: list[dict] = []
    if conversation is not None:
        if s.conversations.get(conversation, dev) is None:
            abort(404, description="No such conversation on this device.")
        history = history_of(conversation)
    try:
        job = ask_later(s.answers, dev, question, chosen.archives, names, deep_settings(), history, conversation)
    except (QueryError, HistoryError) as e:
        abort(400, description=str(e))
    except NothingToAsk as e:
        if wants_json():
            return jsonify({"error": "Nothing to ask", "message": str(e), "nearest": e.nearest, "status": 422}), 422
        abort(422, description=str(e))
    except ValueError as e:
        abort(503, description=str(e))
    if wants_json():
        return jsonify({"job": _timed([job])[0]}), 201
    return redirect(f"/answers/{job.id}", 303)


def _own(job_id: int) -> Job:
    dev = known_device()
    job = worker_state.get().answers.get(job_id, dev) if dev else None
    if job is None:
        abort(404, description="No such waiting answer on this device.")
    return job


def answer_page(job_id: int):
    """One waiting answer: its progress while it waits, the answer with its sources once written."""
    job = _own(job_id)
    if job.status == "done" and not job.seen and not wants_json():  # read by a person, not polled by a script
        worker_state.get().answers.mark_seen(job.id)
    return page("answer.html", {"job": _timed([job])[0]})


def cancel(job_id: int):
    job = _own(job_id)
    done = worker_state.get().answers.cancel(job.id, job.device)
    if wants_json():
        return jsonify({"cancelled": done, "job": _timed([worker_state.get().answers.get(job.id)])[0]})
    return redirect(f"/answers/{job.id}", 303)


def delete(job_id: int):
    job = _own(job_id)
    worker_state.get().answers.delete(job.id, job.device)
    if wants_json() or request.method == "DELETE":
        return jsonify({"deleted": True, "id": job.id})
    return redirect("/answers", 303)
