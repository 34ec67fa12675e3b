"""How fast a model server reads a prompt and writes an answer, as measured on this box, and the waiting times
that follow from it.

Every answer the runner gets is a measurement: the time to its first token (the prompt read, at
prompt_tokens / s) and the rest (the answer written, at (completion_tokens - 1) / s). They are kept per model
server in the state database as moving averages, with the characters per prompt token (to size a prompt
before it is sent) and the usual answer length, so an estimate needs no tokenizer and no model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_speeds (
    url TEXT PRIMARY KEY,
    prompt_tps REAL NOT NULL,
    decode_tps REAL NOT NULL,
    chars_per_token REAL NOT NULL,
    answer_tokens REAL NOT NULL,
    samples INTEGER NOT NULL,
    updated REAL NOT NULL
);
"""

WEIGHT = 0.3  # of the newest measurement in the moving averages


@dataclass(frozen=True)
class Speed:
    prompt_tps: float
    decode_tps: float
    chars_per_token: float
    answer_tokens: float  # the usual answer length, in tokens
    samples: int

    def answer_s(self, prompt_chars: int, max_tokens: int) -> float:
        """Seconds to answer a prompt of `prompt_chars` characters from nothing."""
        return self.prompt_s(prompt_chars) + min(max_tokens, self.answer_tokens) / self.decode_tps

    def prompt_s(self, prompt_chars: int) -> float:
        return prompt_chars / self.chars_per_token / self.prompt_tps

    def rest_s(self, tokens_written: int, max_tokens: int) -> float:
        """Seconds left of an answer that has `tokens_written` tokens (the usual length, or more if it is past)."""
        expected = min(max_tokens, max(self.answer_tokens, tokens_written + 1))
        return max(0.0, expected - tokens_written) / self.decode_tps


def prompt_chars(messages: list[dict]) -> int:
    return sum(len(m.get("content") or "") for m in messages)


class SpeedStore(SqliteStore):
    SCHEMA = SCHEMA

    def get(self, url: str) -> Speed | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM model_speeds WHERE url = ?", (url,)).fetchone()
        if row is None:
            return None
        return Speed(row["prompt_tps"], row["decode_tps"], row["chars_per_token"], row["answer_tokens"], row["samples"])

    def record(
        self, url: str, chars: int, prompt_tokens: int, prompt_s: float, completion_tokens: int, decode_s: float
    ) -> Speed | None:
        """One answer's figures; ignored when they cannot give a speed (no tokens, no time)."""
        if prompt_tokens <= 0 or completion_tokens < 2 or prompt_s <= 0 or decode_s <= 0 or chars <= 0:
            return None
        new = Speed(
            prompt_tokens / prompt_s, (completion_tokens - 1) / decode_s, chars / prompt_tokens, completion_tokens, 1
        )
        old = self.get(url)
        if old is not None:

            def mix(a: float, b: float) -> float:
                return (1 - WEIGHT) * a + WEIGHT * b

            new = Speed(
                mix(old.prompt_tps, new.prompt_tps),
                mix(old.decode_tps, new.decode_tps),
                mix(old.chars_per_token, new.chars_per_token),
                mix(old.answer_tokens, new.answer_tokens),
                old.samples + 1,
            )
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO model_speeds VALUES (?,?,?,?,?,?,?)",
                (url, new.prompt_tps, new.decode_tps, new.chars_per_token, new.answer_tokens, new.samples, time.time()),
            )
        return new


def schedule(waiting: list, speed: Speed | None, now: float | None = None) -> dict[int, tuple[int, float | None]]:
    """Each waiting job's (position, seconds until its answer is ready), in the order the queue serves them
    (jobs.JobStore.waiting()); the seconds are None until the model's speed has been measured."""
    now = time.time() if now is None else now
    out, clock = {}, 0.0
    for position, job in enumerate(waiting, start=1):
        if speed is None:
            out[job.id] = (position, None)
            continue
        if job.status == "running" and job.first_token is not None:
            clock += speed.rest_s(job.tokens, job.max_tokens)
        elif job.status == "running" and job.started is not None:
            left = speed.prompt_s(prompt_chars(job.messages)) - (now - job.started)
            clock += max(0.0, left) + min(job.max_tokens, speed.answer_tokens) / speed.decode_tps
        else:
            clock += speed.answer_s(prompt_chars(job.messages), job.max_tokens)
        out[job.id] = (position, round(clock, 1))
    return out


def new_job_eta(waiting: list, speed: Speed | None, chars: int, max_tokens: int) -> float | None:
    """Seconds until a question asked now would be answered, behind the jobs already waiting."""
    if speed is None:
        return None
    ahead = schedule(waiting, speed)
    last = max((eta for _, eta in ahead.values()), default=0.0)
    return round(last + speed.answer_s(chars, max_tokens), 1)
