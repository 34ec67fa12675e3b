"""bench/memory_cap.py: the cgroup that gives every engine of bench/engine_peers.py the same memory, the
page cache included. Real cgroups, real files, real child processes; skipped (saying why) where this
machine cannot make a memory cgroup (not root, no memory controller)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from memory_cap import CapUnavailable, MemoryCap  # noqa: E402

MiB = 2**20

# Maps the file, evicts it, touches every page twice and prints the bytes the second pass read from the disk.
TOUCH_TWICE = r"""
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
def touch():
    return sum(m[i] for i in range(0, len(m), 4096))
def disk_reads():
    return int(next(l for l in open("/proc/self/io") if l.startswith("read_bytes")).split()[1])
touch()
before = disk_reads()
touch()
print(disk_reads() - before)
"""


def make_cap(limit: int) -> MemoryCap:
    try:
        return MemoryCap(limit)
    except CapUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cap") / "weights.bin"
    with open(path, "wb") as f:
        for _ in range(96):
            f.write(os.urandom(MiB))
    os.sync()
    return path


def second_pass_reads(path: Path, cap: MemoryCap | None) -> int:
    out = subprocess.run(
        [sys.executable, "-c", TOUCH_TWICE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=cap.enter if cap else None,
    )
    return int(out.stdout)


def test_a_capped_child_reads_a_mapped_file_again_and_stays_under_the_cap(big_file):
    """96 MiB mapped under a 32 MiB cap: the page cache cannot keep it, so the second pass reads it from the
    disk again; uncapped, the second pass reads nothing. The group's peak counts that page cache and stays
    at the cap."""
    cap = make_cap(32 * MiB)
    try:
        capped = second_pass_reads(big_file, cap)
        peak = cap.peak()
        assert cap.ooms() == 0
    finally:
        cap.close()
    assert not cap.path.exists()
    assert capped >= 48 * MiB, capped
    assert peak is not None and 8 * MiB < peak <= 32 * MiB, peak
    assert second_pass_reads(big_file, None) < 8 * MiB


def test_a_child_over_its_cap_is_killed_and_counted():
    """Anonymous memory cannot be reclaimed: 128 MiB in a 48 MiB cap is killed by the kernel, and ooms() says so."""
    with make_cap(48 * MiB) as cap:
        out = subprocess.run(
            [sys.executable, "-c", "b = bytearray(128 * 2**20); print(len(b))"],
            capture_output=True,
            preexec_fn=cap.enter,
        )
        assert out.returncode == -9, (out.returncode, out.stderr[-300:])
        assert cap.ooms() >= 1


def test_no_memory_controller_says_why(monkeypatch, tmp_path):
    """Where no cgroup memory controller is mounted, the cap is refused with the reason, not silently skipped."""
    import memory_cap

    monkeypatch.setattr(memory_cap, "V2_ROOT", tmp_path / "none")
    monkeypatch.setattr(memory_cap, "V1_ROOT", tmp_path / "none" / "memory")
    with pytest.raises(CapUnavailable, match="no cgroup memory controller"):
        MemoryCap(32 * MiB)
