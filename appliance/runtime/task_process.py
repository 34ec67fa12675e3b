"""The runner of one console task (appliance.tasks): runs `almanac ARGV` with its output in the task's log,
writes how it ended (done, failed with the exit code, stopped), and stops the command on SIGTERM or when
the portal's process is gone.

    python -m appliance.runtime.task_process TASK_ID PORTAL_PID
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading


def main(argv: list[str]) -> int:
    from ..config import load_config
    from ..datadir import prepare
    from ..tasks import TaskStore

    task_id, portal = int(argv[0]), int(argv[1])
    data = prepare(load_config())
    store = TaskStore(data.db, data)
    task = store.get(task_id)
    stop = threading.Event()
    why = {"message": "stopped from the console"}
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(task.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", *task.argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        while proc.poll() is None:
            if stop.wait(0.5):
                break
            if portal > 1 and not _alive(portal):
                why["message"] = "stopped with the portal"
                stop.set()
                break
        if stop.is_set() and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            store.finish(task_id, "stopped", proc.returncode, why["message"])
            return 0
    rc = proc.returncode
    if rc == 0:
        store.finish(task_id, "done", 0, "")
    else:
        last = task.tail(1)
        store.finish(task_id, "failed", rc, last[0] if last else f"exit code {rc}")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
