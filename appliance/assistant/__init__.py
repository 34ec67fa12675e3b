"""The assistant's core: a question answered from the library's passages by a model server, with numbered
citations. No Flask and no llm_engine here: the portal's views and `almanac ask` both drive `answer()` and
only turn its events into what they show (server-sent events, HTML, JSON, terminal text)."""

from .answer import Done, Failed, PassagesFound, Settings, TextDelta, answer, cited
from .prompt import HISTORY_CHARS, SYSTEM_PROMPT, HistoryError, build_messages, kept_turns, parse_history

__all__ = [
    "Done",
    "Failed",
    "HISTORY_CHARS",
    "HistoryError",
    "PassagesFound",
    "SYSTEM_PROMPT",
    "Settings",
    "TextDelta",
    "answer",
    "build_messages",
    "kept_turns",
    "cited",
    "parse_history",
]
