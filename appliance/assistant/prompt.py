"""What the model is given: the instructions, the conversation so far (each turn with its own passages), the
numbered passages of this question, the question."""

from __future__ import annotations

SYSTEM_PROMPT = (
    "You answer questions for the people using an offline library. Use only the numbered passages from the "
    "library given with the question. Cite the passages you use with their numbers in square brackets, like "
    "[1] or [2][3], right after the sentence they support. If the passages do not answer the question, say so "
    "plainly instead of guessing. Answer in the language of the question, briefly and clearly."
)

HISTORY_CHARS = 9000  # the earlier turns kept in the prompt, in characters; past it the oldest go ...
HISTORY_KEEP = 0.5  # ... until what is left is at most this share of it, so the next turns append again
ANSWER_CHARS = 4000  # an earlier answer longer than this (none of max_tokens 512) is cut
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


def passage_key(c: dict) -> tuple:
    """What makes two cited passages the same one, across the turns of a conversation."""
    return (c.get("book"), c.get("path") or c.get("title"), c.get("text"))


def user_message(question: str, cited: list[dict], earlier: dict | None = None) -> str:
    """One turn's question as the model reads it: its own numbered passages, then the question. A passage the
    conversation already holds (`earlier`: passage_key -> (its number, the number of the question it came with,
    counted from 1 in the prompt)) is named by its place, not written again: its title is up there with it, and
    every token of a follow-up's new turn is one the model server computes."""
    if not cited:
        return question
    earlier = earlier or {}

    def line(c: dict) -> str:
        if passage_key(c) in earlier:
            n, turn = earlier[passage_key(c)]
            return f"[{c['n']}]: passage [{n}] of question {turn}"
        return f"[{c['n']}] {c['title']} ({c['book']})\n{c['text']}"

    sources = "\n\n".join(line(c) for c in cited)
    return f"Passages from the library:\n\n{sources}\n\nQuestion: {question}"


def kept_turns(history: list[dict]) -> list[dict]:
    """The earlier turns the prompt keeps: all of them until they pass HISTORY_CHARS, then the oldest are dropped
    down to HISTORY_KEEP of it at once. Worked out from the first turn on, so each turn's prompt is the last
    one's plus a turn (which lets the model server reuse what it computed for it), except at a drop."""
    sizes = [len(user_message(t["q"], t.get("passages") or [])) + len(t["a"][:ANSWER_CHARS]) for t in history]
    start, total = 0, 0
    for size in sizes:
        total += size
        if total > HISTORY_CHARS:
            while start < len(sizes) and total > HISTORY_CHARS * HISTORY_KEEP:
                total -= sizes[start]
                start += 1
    return list(history)[start:]


def in_context(history: list[dict]) -> dict:
    """The passages the kept turns hold, each at its first appearance: passage_key -> (number, question number)."""
    out: dict = {}
    for i, turn in enumerate(kept_turns(list(history)), start=1):
        for c in turn.get("passages") or []:
            out.setdefault(passage_key(c), (c["n"], i))
    return out


def build_messages(question: str, cited: list[dict], history: list[dict] = ()) -> list[dict]:
    """The chat the model is given: the instructions, the conversation so far, then the numbered passages for
    this question and the question.

    Append-only: each earlier turn is written as it was asked (with its own passages, when the history has
    them) and answered, so a follow-up's prompt begins with the whole of the last one and the model server's
    prompt cache pays only for the new turn (issue 13). A passage given in an earlier turn is named, not
    written again. Older turns are dropped only when kept_turns says so."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    earlier: dict = {}
    for i, turn in enumerate(kept_turns(list(history)), start=1):
        passages = turn.get("passages") or []
        messages += [
            {"role": "user", "content": user_message(turn["q"], passages, earlier)},
            {"role": "assistant", "content": turn["a"][:ANSWER_CHARS]},
        ]
        for c in passages:
            earlier.setdefault(passage_key(c), (c["n"], i))
    messages.append({"role": "user", "content": user_message(question, cited, earlier)})
    return messages
