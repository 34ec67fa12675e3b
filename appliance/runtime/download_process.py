"""The downloader beside the portal: one small child process of `almanac serve` runs the download queue.

Jobs live in SQLite, so whoever runs them must be one process for the life of the service: not the gunicorn
workers (there are several, and gunicorn restarts them at will) and not the arbiter (it forks the workers, and
a thread holding SQLite connections and sockets across a fork is a hazard). The child requeues what a dead
process left running, resumes every queued job from its checkpoint, stops on SIGTERM (running jobs go back to
the queue at their checkpoint) and exits by itself if its parent dies, even by ``kill -9``.

    python -m appliance.runtime.download_process PARENT_PID
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from ..config import Config
from ..datadir import DataDir


def start_download_process(config: Config, data: DataDir) -> subprocess.Popen:
    log = open(data.logs / "downloads.log", "ab")
    env = os.environ.copy()
    if config.path:
        env["ALMANAC_CONFIG"] = str(config.path)
    env["ALMANAC_DATA"] = str(data.root)
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.runtime.download_process", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
    )


def main(argv: list[str]) -> int:
    from ..config import load_config
    from ..datadir import prepare
    from ..fill import open_box

    parent = int(argv[0]) if argv else os.getppid()
    config = load_config()
    box = open_box(config, prepare(config))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    box.downloader.start()
    print(f"downloader: running the queue of {box.data.db} (pid {os.getpid()})", flush=True)
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the portal is gone (killed): stop with it
            break
    box.downloader.stop()
    box.close()
    print("downloader: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
