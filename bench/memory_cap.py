"""A memory cgroup for a bench child: every engine given the same memory, the OS page cache included.

An engine that maps its model (llama.cpp) keeps whatever the page cache holds and reads nothing again,
so on a machine with room for the whole model it runs as if resident, however large the model is meant
to be against the memory. A cgroup's memory limit counts the page cache its processes bring in, and the
kernel reclaims within the group when it is reached: capped, a mapped model is read from the disk again
as it would be on a box where it does not fit, and a streaming engine must live within the same bytes.

    cap = MemoryCap(600 << 20)        # raises CapUnavailable, saying why, where it cannot be made
    subprocess.run(cmd, preexec_fn=cap.enter)
    cap.peak(), cap.ooms(); cap.close()

Linux only, as root (or with a delegated cgroup): cgroup v2 where its root offers the memory controller,
else v1's memory hierarchy. Pages already in the page cache stay charged to whoever read them first, so
evict a capped run's files before it starts (engine_peers.py does).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/memory")


class CapUnavailable(RuntimeError):
    pass


def _v2_has_memory() -> bool:
    try:
        return "memory" in (V2_ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return False


class MemoryCap:
    """A fresh cgroup limited to `limit` bytes (memory and page cache; no swap)."""

    def __init__(self, limit: int, name: str = "almanac-bench"):
        self.limit = int(limit)
        leaf = f"{name}-{uuid.uuid4().hex[:8]}"
        try:
            if _v2_has_memory():
                self.v2, self.path = True, V2_ROOT / leaf
                self.path.mkdir()
                (self.path / "memory.max").write_text(str(self.limit))
                swap = self.path / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
            elif (V1_ROOT / "memory.limit_in_bytes").exists():
                self.v2, self.path = False, V1_ROOT / leaf
                self.path.mkdir()
                (self.path / "memory.limit_in_bytes").write_text(str(self.limit))
                memsw = self.path / "memory.memsw.limit_in_bytes"  # memory + swap: no swapping out of the cap
                if memsw.exists():
                    memsw.write_text(str(self.limit))
            else:
                raise CapUnavailable("no cgroup memory controller mounted under /sys/fs/cgroup")
        except PermissionError as e:
            raise CapUnavailable(f"cannot make a memory cgroup ({e.strerror}: needs root)") from e
        except OSError as e:
            if getattr(self, "path", None) is not None and self.path.exists():
                self.close()
            raise CapUnavailable(f"cannot make a memory cgroup: {e}") from e

    def enter(self) -> None:
        """Move the calling process into the cgroup (a subprocess's preexec_fn: the child, before exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def peak(self) -> int | None:
        """The group's high-water mark in bytes, page cache included (None where the kernel keeps none)."""
        f = self.path / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")
        try:
            return int(f.read_text())
        except (OSError, ValueError):
            return None

    def ooms(self) -> int:
        """Processes of the group the kernel killed for want of memory."""
        events = self.path / ("memory.events" if self.v2 else "memory.oom_control")
        for line in events.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def close(self) -> None:
        """Remove the cgroup (its processes have exited)."""
        try:
            self.path.rmdir()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
