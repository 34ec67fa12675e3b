"""Download jobs in the state database, so they outlive the process: a restarted Almanac finds them and
goes on. Every change is one SQL statement; a state change can be made conditional on the state it
expects, so two processes (the service and a CLI) never both run one job."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import db

SCHEMA = """
CREATE TABLE IF NOT EXISTS download_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    urls TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT,
    resolved INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    checkpoint INTEGER NOT NULL DEFAULT 0,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    refetched INTEGER NOT NULL DEFAULT 0,
    rate REAL NOT NULL DEFAULT 0,
    etag TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    heartbeat REAL NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '{}',
    result TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""
STATES = ("queued", "running", "verifying", "paused", "done", "failed", "cancelled")
ACTIVE = ("queued", "running", "verifying")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class Job:
    """One download as the portal and the CLI show it (``to_json()`` is its JSON form)."""

    id: int
    kind: str  # zim | map | model | file
    name: str  # what it becomes in the library (a book's stable name, a map or file name)
    source: str  # what was asked for: a URL (a .meta4 or the file itself)
    urls: list[str]  # mirrors, most preferred first
    size: int | None
    sha256: str | None
    resolved: bool  # the metalink or .sha256 sidecar has been read
    state: str
    checkpoint: int  # bytes on disk and synced: a restart resumes from here
    bytes_done: int
    refetched: int  # bytes fetched twice (a restart from the checkpoint, or a server that ignored Range)
    rate: float  # bytes/s, smoothed
    etag: str
    error: str
    owner: str
    heartbeat: float
    meta: dict = field(default_factory=dict)
    result: str = ""  # where the file was installed, once done
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def eta_s(self) -> float | None:
        if self.state != "running" or not self.size or self.rate <= 0:
            return None
        return max(0.0, (self.size - self.bytes_done) / self.rate)

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.bytes_done / self.size) if self.size else None

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(
            eta_s=None if self.eta_s is None else round(self.eta_s, 1),
            fraction=None if self.fraction is None else round(self.fraction, 4),
            rate=round(self.rate, 1),
        )
        del out["owner"], out["heartbeat"]
        return out


def _job(row) -> Job:
    values = dict(row)
    values["urls"] = json.loads(values["urls"])
    values["meta"] = json.loads(values["meta"])
    values["resolved"] = bool(values["resolved"])
    return Job(**values)


class JobError(Exception):
    """A request about a job that cannot be done (unknown id, wrong state); one line."""


class JobStore:
    def __init__(self, db_path: Path):
        self._conn = db.connect(Path(db_path))
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def add(
        self,
        *,
        kind: str,
        name: str,
        source: str,
        urls: list[str],
        size: int | None = None,
        sha256: str | None = None,
        meta: dict | None = None,
    ) -> Job:
        now = time.time()
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO download_jobs (kind, name, source, urls, size, sha256, state, meta, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                (kind, name, source, json.dumps(list(urls)), size, sha256, json.dumps(meta or {}), now, now),
            )
        return self.get(cur.lastrowid)

    def get(self, job_id: int) -> Job:
        row = self._conn.execute("SELECT * FROM download_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no download job {job_id}")
        return _job(row)

    def list(self, states: tuple[str, ...] | None = None) -> list[Job]:
        if states:
            rows = self._conn.execute(
                f"SELECT * FROM download_jobs WHERE state IN ({','.join('?' * len(states))}) ORDER BY id", states
            )
        else:
            rows = self._conn.execute("SELECT * FROM download_jobs ORDER BY id")
        return [_job(r) for r in rows]

    def state(self, job_id: int) -> str:
        row = self._conn.execute("SELECT state FROM download_jobs WHERE id = ?", (job_id,)).fetchone()
        return row["state"] if row else "cancelled"

    def update(self, job_id: int, **fields) -> None:
        if not fields:
            return
        for key in ("urls",):
            if key in fields:
                fields[key] = json.dumps(list(fields[key]))
        if "meta" in fields:
            fields["meta"] = json.dumps(fields["meta"])
        fields["updated_at"] = time.time()
        with self._lock:
            self._conn.execute(
                f"UPDATE download_jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                (*fields.values(), job_id),
            )

    def transition(self, job_id: int, to: str, *, expect: tuple[str, ...], **fields) -> bool:
        """Move a job to state ``to`` only if it is in one of ``expect``; True if it moved."""
        fields.update(state=to, updated_at=time.time())
        if "meta" in fields:
            fields["meta"] = json.dumps(fields["meta"])
        with self._lock:
            cur = self._conn.execute(
                f"UPDATE download_jobs SET {', '.join(f'{k} = ?' for k in fields)} "
                f"WHERE id = ? AND state IN ({','.join('?' * len(expect))})",
                (*fields.values(), job_id, *expect),
            )
        return cur.rowcount == 1

    def claim(self, owner: str) -> Job | None:
        """The oldest queued job, now running under ``owner``; None if none is queued."""
        while True:
            row = self._conn.execute(
                "SELECT id FROM download_jobs WHERE state = 'queued' ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            if self.transition(row["id"], "running", expect=("queued",), owner=owner, heartbeat=time.time(), error=""):
                return self.get(row["id"])

    def recover(self, stale_after_s: float) -> list[int]:
        """Requeue running jobs whose process is gone (killed, crashed, machine restarted)."""
        requeued = []
        for job in self.list(("running", "verifying")):
            if _owner_gone(job.owner) or time.time() - job.heartbeat > stale_after_s:
                if self.transition(job.id, "queued", expect=(job.state,), owner="", rate=0.0):
                    requeued.append(job.id)
        return requeued

    def forget(self, job_id: int) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM download_jobs WHERE id = ? AND state IN ('done', 'failed', 'cancelled')", (job_id,)
            )

    def close(self) -> None:
        self._conn.close()


def owner_id(token: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{token}"


def _owner_gone(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine's job (a shared disk): only its heartbeat tells
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
