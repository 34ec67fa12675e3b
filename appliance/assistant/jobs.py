"""Waiting answers: questions for the deep model, kept in the state database until their answer is written.

A job holds everything needed to answer it again from nothing: the question, the books in scope, the passages
retrieved when it was asked, the prompt built from them, and the answer's settings. Its status moves
queued -> running -> done | failed | cancelled, each step one UPDATE guarded by the status it leaves, so a
cancel or delete from the portal and the runner's progress never overwrite each other: the runner learns it
was cancelled when its next progress write changes no row.

A job found `running` when the runner starts was interrupted (the runner, the portal or the box stopped): it is
queued again at its old place, its answer restarted from the beginning, and its note says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS answer_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    conversation TEXT,
    question TEXT NOT NULL,
    books TEXT NOT NULL,
    passages TEXT NOT NULL,
    messages TEXT NOT NULL,
    max_tokens INTEGER NOT NULL,
    temperature REAL NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    answer TEXT NOT NULL DEFAULT '',
    tokens INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    finish_reason TEXT,
    error TEXT,
    note TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    first_token REAL,
    finished REAL,
    updated REAL NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS answer_jobs_device ON answer_jobs (device, id);
CREATE INDEX IF NOT EXISTS answer_jobs_status ON answer_jobs (status, id);
"""

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
WAITING = (QUEUED, RUNNING)
MAX_ATTEMPTS = 5  # a job that stops its runner this many times is failed, not retried forever


@dataclass(frozen=True)
class Job:
    id: int
    device: str
    conversation: str | None
    question: str
    books: list[str]
    passages: list[dict]
    messages: list[dict]
    max_tokens: int
    temperature: float
    status: str
    model: str
    answer: str
    tokens: int
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    error: str | None
    note: str | None
    attempts: int
    created: float
    started: float | None
    first_token: float | None
    finished: float | None
    updated: float
    seen: bool

    @property
    def waiting(self) -> bool:
        return self.status in WAITING

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "device"}
        out["url"] = f"/answers/{self.id}"
        return out


def _job(row) -> Job:
    d = dict(row)
    for key in ("books", "passages", "messages"):
        d[key] = json.loads(d[key])
    d["seen"] = bool(d["seen"])
    return Job(**d)


class JobStore(SqliteStore):
    """The waiting answers of the state database at `path`; safe to share between threads."""

    SCHEMA = SCHEMA

    # --- asking -----------------------------------------------------------------------------

    def submit(
        self,
        device: str,
        question: str,
        books: list[str],
        passages: list[dict],
        messages: list[dict],
        max_tokens: int,
        temperature: float,
        conversation: str | None = None,
    ) -> Job:
        now = time.time()
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO answer_jobs (device, conversation, question, books, passages, messages, max_tokens,"
                " temperature, status, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    device,
                    conversation,
                    question,
                    json.dumps(books),
                    json.dumps(passages, ensure_ascii=False),
                    json.dumps(messages, ensure_ascii=False),
                    max_tokens,
                    temperature,
                    QUEUED,
                    now,
                    now,
                ),
            )
            job_id = cur.lastrowid
        return self.get(job_id)

    def get(self, job_id: int, device: str | None = None) -> Job | None:
        sql, args = "SELECT * FROM answer_jobs WHERE id = ?", [job_id]
        if device is not None:
            sql, args = sql + " AND device = ?", args + [device]
        rows = self._rows(sql, args)
        return _job(rows[0]) if rows else None

    def list(self, device: str | None = None, conversation: str | None = None) -> list[Job]:
        """Newest first; a device's own, or one conversation's, or every job."""
        where, args = [], []
        if device is not None:
            where.append("device = ?")
            args.append(device)
        if conversation is not None:
            where.append("conversation = ?")
            args.append(conversation)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return [_job(r) for r in self._rows(f"SELECT * FROM answer_jobs{clause} ORDER BY id DESC", args)]

    def waiting(self) -> list[Job]:
        """The queue in the order it is served: the running job first, then the queued ones."""
        rows = self._rows(
            "SELECT * FROM answer_jobs WHERE status IN (?, ?) ORDER BY status = ? DESC, id", (*WAITING, RUNNING)
        )
        return [_job(r) for r in rows]

    def ready_count(self, device: str) -> int:
        """Answers written for this device that it has not opened yet."""
        rows = self._rows(
            "SELECT COUNT(*) FROM answer_jobs WHERE device = ? AND status = ? AND seen = 0", (device, DONE)
        )
        return rows[0][0]

    def pending_count(self, device: str) -> int:
        rows = self._rows("SELECT COUNT(*) FROM answer_jobs WHERE device = ? AND status IN (?, ?)", (device, *WAITING))
        return rows[0][0]

    def mark_seen(self, job_id: int) -> None:
        self._run("UPDATE answer_jobs SET seen = 1 WHERE id = ? AND status = ?", (job_id, DONE))

    def cancel(self, job_id: int, device: str | None = None) -> bool:
        """Stop a waiting job (the runner notices at its next write); False if it was not waiting."""
        sql = "UPDATE answer_jobs SET status = ?, finished = ?, updated = ? WHERE id = ? AND status IN (?, ?)"
        args = [CANCELLED, time.time(), time.time(), job_id, *WAITING]
        if device is not None:
            sql, args = sql + " AND device = ?", args + [device]
        return self._run(sql, args) == 1

    def delete(self, job_id: int, device: str | None = None) -> bool:
        sql, args = "DELETE FROM answer_jobs WHERE id = ?", [job_id]
        if device is not None:
            sql, args = sql + " AND device = ?", args + [device]
        return self._run(sql, args) == 1

    def delete_conversation(self, conversation: str) -> None:
        self._run("DELETE FROM answer_jobs WHERE conversation = ?", (conversation,))

    # --- the runner's side ------------------------------------------------------------------

    def recover(self) -> list[int]:
        """Jobs left `running` by a runner that stopped: queued again (or failed after MAX_ATTEMPTS)."""
        interrupted = self._rows("SELECT id, tokens, attempts FROM answer_jobs WHERE status = ?", (RUNNING,))
        for row in interrupted:
            self.requeue(
                row["id"],
                f"restarted from the beginning: the answer runner stopped while writing it"
                f" ({row['tokens']} tokens had been written)",
            )
        return [r["id"] for r in interrupted]

    def requeue(self, job_id: int, note: str, count: bool = True) -> None:
        """A running job back in the queue at its place, to start again; `count` False: this attempt is not
        held against it (it gave way to an interactive question)."""
        now = time.time()
        self._run(
            "UPDATE answer_jobs SET attempts = attempts - :back,"
            " status = CASE WHEN attempts - :back >= :max THEN :failed ELSE :queued END,"
            " error = CASE WHEN attempts - :back >= :max THEN :gave_up ELSE error END,"
            " note = :note, answer = '', tokens = 0, first_token = NULL, updated = :now"
            " WHERE id = :id AND status = :running",
            {
                "back": 0 if count else 1,
                "max": MAX_ATTEMPTS,
                "failed": FAILED,
                "queued": QUEUED,
                "gave_up": f"given up after {MAX_ATTEMPTS} attempts",
                "note": note,
                "now": now,
                "id": job_id,
                "running": RUNNING,
            },
        )

    def claim(self) -> Job | None:
        """The next queued job, now running (attempts counted), or None when the queue is empty."""
        now = time.time()
        rows = self._rows(
            "UPDATE answer_jobs SET status = ?, attempts = attempts + 1, started = ?, updated = ?,"
            " answer = '', tokens = 0, first_token = NULL"
            " WHERE id = (SELECT id FROM answer_jobs WHERE status = ? ORDER BY id LIMIT 1) AND status = ?"
            " RETURNING *",
            (RUNNING, now, now, QUEUED, QUEUED),
        )
        return _job(rows[0]) if rows else None

    def progress(self, job_id: int, answer: str, tokens: int, model: str, first_token: float | None) -> bool:
        """Save the answer so far; False when the job is no longer running (cancelled or deleted)."""
        return (
            self._run(
                "UPDATE answer_jobs SET answer = ?, tokens = ?, model = ?, first_token = ?, updated = ?"
                " WHERE id = ? AND status = ?",
                (answer, tokens, model, first_token, time.time(), job_id, RUNNING),
            )
            == 1
        )

    def finish(
        self,
        job_id: int,
        answer: str,
        tokens: int,
        model: str,
        finish_reason: str | None,
        usage: dict | None,
        first_token: float | None,
    ) -> bool:
        now = time.time()
        usage = usage or {}
        return (
            self._run(
                "UPDATE answer_jobs SET status = ?, answer = ?, tokens = ?, model = ?, finish_reason = ?,"
                " prompt_tokens = ?, completion_tokens = ?, first_token = ?, finished = ?, updated = ?"
                " WHERE id = ? AND status = ?",
                (
                    DONE,
                    answer,
                    tokens,
                    model,
                    finish_reason,
                    usage.get("prompt_tokens"),
                    usage.get("completion_tokens"),
                    first_token,
                    now,
                    now,
                    job_id,
                    RUNNING,
                ),
            )
            == 1
        )

    def fail(self, job_id: int, error: str) -> None:
        now = time.time()
        self._run(
            "UPDATE answer_jobs SET status = ?, error = ?, finished = ?, updated = ? WHERE id = ? AND status = ?",
            (FAILED, error, now, now, job_id, RUNNING),
        )
