"""The writing side of a download, on its own thread: each block is written at its offset and added to
the SHA-256 in arrival order, and a checkpoint (fdatasync, then the offset recorded) is taken without
holding up the socket. hashlib and os.pwrite release the GIL, so on two cores receiving and
writing+hashing overlap; the queue is bounded, so memory stays flat whatever the file's size."""

from __future__ import annotations

import os
import queue
import threading
from typing import Callable

_CHECKPOINT = object()
_DRAIN = object()


class Sink:
    def __init__(self, fd: int, offset: int, hasher, on_checkpoint: Callable[[int], None], depth: int = 16):
        self.fd = fd
        self.offset = offset  # where the next block goes
        self.hasher = hasher
        self.on_checkpoint = on_checkpoint
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="download-sink", daemon=True)
        self._thread.start()

    def write(self, data) -> None:
        self._raise()
        self._queue.put(data)

    def checkpoint(self) -> None:
        """Sync what has been written so far and record it, behind the blocks already queued."""
        self._raise()
        self._queue.put(_CHECKPOINT)

    def drain(self) -> None:
        """Wait until every queued block is written and hashed."""
        done = threading.Event()
        self._queue.put((_DRAIN, done))
        done.wait()
        self._raise()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, tuple) and item[0] is _DRAIN:
                item[1].set()
                continue
            if self.error is not None:
                continue  # after a failure, only drain and close are answered
            try:
                if item is _CHECKPOINT:
                    os.fdatasync(self.fd)
                    self.on_checkpoint(self.offset)
                    continue
                view = memoryview(item)
                written = 0
                while written < len(view):
                    written += os.pwrite(self.fd, view[written:], self.offset + written)
                self.hasher.update(view)
                self.offset += len(view)
            except BaseException as e:  # a full disk, an I/O error: raised in the receiving thread
                self.error = e
