"""The waiting-answers runner as a process beside the portal: `python -m appliance.runtime.answer_runner`.

`almanac serve` starts it next to gunicorn, as it starts the model server. It is its own process because
gunicorn's workers are many and come and go while the queue needs exactly one owner, and because the model
server may be elsewhere on the network or be restarted under a job. An exclusive lock on `answers.lock` in the
data dir makes the owner unique (a second runner exits at once), and the runner exits when the process that
started it is gone (a `kill -9` of the portal), so the next portal's runner takes the queue over and restarts
the job it finds interrupted.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

from ..assistant.jobs import JobStore
from ..assistant.runner import DeepModel, Runner
from ..assistant.speeds import SpeedStore
from ..config import Config, load_config
from ..datadir import DataDir, prepare

PARENT_CHECK_S = 0.5
LOCK_WAIT_S = 0.5


def deep_model(config: Config) -> DeepModel:
    section = config.get("assistant")
    deep = section["deep"]
    return DeepModel(
        url=str(deep["url"]).strip(),
        model=str(deep["model"]),
        timeout_s=float(deep["timeout_s"]),
        shared=str(deep["url"]).strip().rstrip("/") == str(section["url"]).strip().rstrip("/"),
    )


def start_runner(config: Config, data: DataDir) -> subprocess.Popen | None:
    """Start the runner beside the portal when a deep model is configured; it logs to logs/answers.log."""
    if not deep_model(config).url:
        return None
    log = open(data.logs / "answers.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.runtime.answer_runner", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=os.environ.copy(),
    )


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def _watch_parent(parent: int, stop: threading.Event) -> None:
    while not stop.wait(PARENT_CHECK_S):
        if os.getppid() != parent:
            _log("the portal that started this runner is gone; stopping")
            os._exit(0)  # the stream closes with the process, so the model stops too


def main(argv: list[str]) -> int:
    config = load_config()
    data = prepare(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if argv:
        threading.Thread(target=_watch_parent, args=(int(argv[0]), stop), daemon=True).start()
    lock = open(data.root / "answers.lock", "a")
    waited = False
    while True:  # one owner: a runner still finishing (its portal just killed) hands over when it exits
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if not waited:
                _log("another answer runner owns the queue; waiting for it to stop")
                waited = True
            if stop.wait(LOCK_WAIT_S):
                return 0
    deep = deep_model(config)
    _log(f"answer runner up (pid {os.getpid()}), deep model at {deep.url or 'nowhere'}")
    jobs, speeds = JobStore(data.db), SpeedStore(data.db)
    try:
        Runner(jobs, speeds, deep, log=_log).run(stop)
    finally:
        jobs.close()
        speeds.close()
    _log("answer runner stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
