"""What the model is given: the instructions, the conversation so far, the numbered passages, the question."""

from __future__ import annotations

SYSTEM_PROMPT = (
    "You answer questions for the people using an offline library. Use only the numbered passages from the "
    "library given with the question. Cite the passages you use with their numbers in square brackets, like "
    "[1] or [2][3], right after the sentence they support. If the passages do not answer the question, say so "
    "plainly instead of guessing. Answer in the language of the question, briefly and clearly."
)

HISTORY_TURNS = 6  # earlier questions and answers of a conversation kept in the prompt ...
HISTORY_CHARS = 1500  # ... each answer cut to this many characters: the passages matter more
MAX_HISTORY = 50  # turns a client may send
QUESTION_CHARS = 2000  # an earlier question is cut to this


class HistoryError(ValueError):
    """A conversation sent by a client is not a list of {"q": text, "a": text} turns."""


def parse_history(raw) -> list[dict]:
    """A conversation sent by the page: [{"q": question, "a": answer}, ...]; anything else is a HistoryError."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_HISTORY:
        raise HistoryError(f"history must be a list of at most {MAX_HISTORY} {{q, a}} turns")
    for turn in raw:
        if not (isinstance(turn, dict) and isinstance(turn.get("q"), str) and isinstance(turn.get("a"), str)):
            raise HistoryError('each history turn must be {"q": text, "a": text}')
    return [{"q": t["q"][:QUESTION_CHARS], "a": t["a"]} for t in raw]


def search_context(history: list[dict]) -> str:
    """The words that steer the search besides the question: the last questions name what "it" is."""
    return " ".join(t["q"] for t in list(history)[-2:])


def build_messages(question: str, cited: list[dict], history: list[dict] = ()) -> list[dict]:
    """The chat the model is given: the instructions, the conversation so far (its questions and answers,
    without their passages), then the numbered passages for this question and the question."""
    sources = "\n\n".join(f"[{c['n']}] {c['title']} ({c['book']})\n{c['text']}" for c in cited)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for turn in list(history)[-HISTORY_TURNS:]:
        messages += [
            {"role": "user", "content": turn["q"]},
            {"role": "assistant", "content": turn["a"][:HISTORY_CHARS]},
        ]
    messages.append({"role": "user", "content": f"Passages from the library:\n\n{sources}\n\nQuestion: {question}"})
    return messages
