"""The citations in an answer: [n] for passage n. A number that names no passage is dropped from what is
shown, so a model's stray [7] never points at nothing."""

from __future__ import annotations

import re

CITATION = re.compile(r"\[(\d+)\]")


def valid(text: str, count: int) -> list[int]:
    """The passage numbers `text` cites that exist (1..count), in order, with repeats."""
    return [int(n) for n in CITATION.findall(text) if 1 <= int(n) <= count]


def clean(text: str, count: int) -> str:
    """`text` without the citations that name no passage of the `count` given."""
    return CITATION.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= count else "", text)
