"""Download progress in a terminal: one tqdm bar per job, fed by ``Downloader(on_progress=...)``."""

from __future__ import annotations

import threading

from .jobs import FINISHED, Job


class TqdmProgress:
    """``Downloader(..., on_progress=TqdmProgress())``; call ``close()`` when the run ends."""

    def __init__(self, file=None):
        self._bars: dict[int, object] = {}
        self._lock = threading.Lock()
        self._file = file

    def __call__(self, job: Job) -> None:
        from tqdm import tqdm

        with self._lock:
            bar = self._bars.get(job.id)
            if bar is None:
                bar = tqdm(
                    total=job.size,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=job.name,
                    file=self._file,
                    leave=True,
                    dynamic_ncols=True,
                )
                self._bars[job.id] = bar
            if job.size and bar.total != job.size:
                bar.total = job.size
            bar.n = job.bytes_done
            bar.set_postfix_str(job.state if job.state != "running" else "", refresh=False)
            bar.refresh()
            if job.state in FINISHED:
                bar.close()
                self._bars.pop(job.id, None)

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
