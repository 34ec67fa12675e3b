"""The console's long tasks: an `almanac` command (import or export a drive, pull, import or convert a model,
cut a map region, run the model server) run in its own process, so the console calls exactly what the CLI
does and a gunicorn worker restarted meanwhile loses nothing. Each task is a row of the state database and
a log file (logs/tasks/ID.log, the command's own output and progress bars); the runner
(appliance.runtime.task_process) writes its end, and stops the command if the portal stops.

    tasks = TaskStore(data.db, data)
    task = tasks.start("import /media/usb", ["content", "import", "/media/usb", "--json"])
    tasks.get(task.id).state   # running, done, failed, stopped
    tasks.stop(task.id)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .assistant.sqlite_store import SqliteStore
from .datadir import DataDir

STATES = ("running", "done", "failed", "stopped")
TAIL_BYTES = 64 * 1024


class TaskError(Exception):
    """A task that does not exist, or cannot be stopped; one line."""


@dataclass
class Task:
    id: int
    label: str
    kind: str  # import, export, model-pull, model-import, model-convert, map-region, model-serve
    argv: list[str]
    state: str
    pid: int
    rc: int | None
    message: str
    started: float
    ended: float | None
    log: str

    def tail(self, lines: int = 12) -> list[str]:
        """The last lines of its output; a progress bar's redraws (carriage returns) count as lines."""
        try:
            with open(self.log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - TAIL_BYTES))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        parts = [p.strip() for p in text.replace("\r", "\n").split("\n")]
        return [p for p in parts if p][-lines:]

    def result(self):
        """The command's JSON answer (its last JSON document on stdout), once done; None otherwise."""
        if self.state not in ("done", "failed"):
            return None
        try:
            text = Path(self.log).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        start = text.find("\n{")
        start = 0 if text.startswith("{") else start + 1 if start >= 0 else -1
        if start < 0:
            return None
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0]
        except ValueError:
            return None

    def to_json(self, lines: int = 12) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "kind": self.kind,
            "argv": self.argv,
            "state": self.state,
            "rc": self.rc,
            "message": self.message,
            "started": self.started,
            "ended": self.ended,
            "elapsed_s": round((self.ended or time.time()) - self.started, 1),
            "tail": self.tail(lines),
        }


class TaskStore(SqliteStore):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS console_tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        label TEXT NOT NULL,
        kind TEXT NOT NULL,
        argv TEXT NOT NULL,
        state TEXT NOT NULL,
        pid INTEGER NOT NULL DEFAULT 0,
        rc INTEGER,
        message TEXT NOT NULL DEFAULT '',
        started REAL NOT NULL,
        ended REAL
    );
    """

    def __init__(self, db_path: Path, data: DataDir):
        super().__init__(db_path)
        self.data = data

    @property
    def folder(self) -> Path:
        return self.data.logs / "tasks"

    def _task(self, row) -> Task:
        return Task(
            row["id"],
            row["label"],
            row["kind"],
            json.loads(row["argv"]),
            row["state"],
            row["pid"],
            row["rc"],
            row["message"],
            row["started"],
            row["ended"],
            str(self.folder / f"{row['id']}.log"),
        )

    def start(self, kind: str, label: str, argv: list[str], *, config_path: Path | None = None) -> Task:
        """Run ``almanac ARGV`` in the background now; the task as started."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO console_tasks (label, kind, argv, state, started) VALUES (?, ?, ?, 'running', ?)",
                (label, kind, json.dumps(list(argv)), time.time()),
            )
        task_id = cur.lastrowid
        env = dict(os.environ, ALMANAC_DATA=str(self.data.root))
        if config_path:
            env["ALMANAC_CONFIG"] = str(config_path)
        with open(self.folder / f"{task_id}.runner.log", "ab") as runner_log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "appliance.runtime.task_process", str(task_id), str(os.getppid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=runner_log,
                env=env,
                start_new_session=True,  # a Ctrl-C or a signal to the portal's group is the runner's to pass on
            )
        self._run("UPDATE console_tasks SET pid = ? WHERE id = ?", (proc.pid, task_id))
        threading.Thread(target=proc.wait, daemon=True, name=f"task-{task_id}-reaper").start()
        return self.get(task_id)

    def get(self, task_id: int) -> Task:
        rows = self._rows("SELECT * FROM console_tasks WHERE id = ?", (task_id,))
        if not rows:
            raise TaskError(f"no task {task_id}")
        return self._checked(self._task(rows[0]))

    def list(self, limit: int = 50) -> list[Task]:
        rows = self._rows("SELECT * FROM console_tasks ORDER BY id DESC LIMIT ?", (limit,))
        return [self._checked(self._task(r)) for r in rows]

    def running(self, kind: str | None = None) -> list[Task]:
        return [t for t in self.list(200) if t.state == "running" and (kind is None or t.kind == kind)]

    def _checked(self, task: Task) -> Task:
        """A task whose runner died without a word (kill -9, a power cut) is failed, not running forever."""
        if task.state == "running" and task.pid and not _alive(task.pid):
            self.finish(
                task.id, "failed", None, "its process is gone (killed, or the box restarted)", only_running=True
            )
            rows = self._rows("SELECT * FROM console_tasks WHERE id = ?", (task.id,))
            return self._task(rows[0])
        return task

    def finish(self, task_id: int, state: str, rc: int | None, message: str, *, only_running: bool = False) -> None:
        self._run(
            "UPDATE console_tasks SET state = ?, rc = ?, message = ?, ended = ? WHERE id = ?"
            + (" AND state = 'running'" if only_running else ""),
            (state, rc, message, time.time(), task_id),
        )

    def stop(self, task_id: int) -> Task:
        task = self.get(task_id)
        if task.state != "running":
            raise TaskError(f"task {task_id} is {task.state}: only a running task can be stopped")
        try:
            os.kill(task.pid, signal.SIGTERM)  # the runner stops its command and writes "stopped"
        except ProcessLookupError:
            pass
        return task


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (ended, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
