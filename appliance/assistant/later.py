"""Asking for a waiting answer: the passages are found and the prompt built now, when the question is asked,
and both are kept in the job, so the answer written later is the answer to what was asked then."""

from __future__ import annotations

from .answer import NOT_COVERED, Settings, find_sources
from .jobs import Job, JobStore
from .prompt import build_messages


class NothingToAsk(Exception):
    """The library has nothing to answer the question from; `nearest` names its nearest titles, if any."""

    def __init__(self, message: str, nearest: list[dict] | None = None):
        super().__init__(message)
        self.nearest = nearest or []


def ask_later(
    jobs: JobStore,
    device: str,
    question: str,
    books: list[tuple[str, object]],
    book_names: list[str],
    deep: Settings,
    history: list[dict] = (),
    conversation: str | None = None,
) -> Job:
    """Queue `question` for the deep model. Raises content.search.QueryError for a question that cannot be
    searched, NothingToAsk when no passage answers it, and ValueError when there is no deep model."""
    if not deep.url:
        raise ValueError("no deep model is configured (assistant.deep.url is empty)")
    sources, nearest = find_sources(question, books, deep, history)
    if nearest is not None:
        raise NothingToAsk(NOT_COVERED, nearest)
    if not sources:
        raise NothingToAsk("Nothing in the library matches this question.")
    return jobs.submit(
        device,
        question,
        list(book_names),
        sources,
        build_messages(question, sources, history),
        deep.max_tokens,
        deep.temperature,
        conversation,
    )
