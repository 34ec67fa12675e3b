"""Reading routed experts from an expert-packed layer file into a bank of slots.

A bank holds, for each tensor of the switch layer, an MLX array with `slots` experts on
the leading axis. MLX arrays expose their memory to numpy as writable views, so each
expert's blob is read with one `os.preadv` straight into the bank (the read is scattered
over the tensors' rows). Tensors whose compute dtype differs from the stored one (bf16
scales kept fp32 on the CPU) land in a small staging buffer and are widened into place.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import mlx.core as mx
import numpy as np

from . import manifest as mf
from .device import compute_dtype, copy_into, keep_on_host, prefetch_slots, read_path
from .slot_policy import SlotPolicy
from .errors import CheckpointError

# preadv2 flag: fail instead of waiting for the disk (Linux); None where unavailable.
NOWAIT = getattr(os, "RWF_NOWAIT", None)


_local = threading.local()


def _staging(nbytes: int) -> np.ndarray:
    """This thread's reusable read buffer, at least `nbytes` long."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _local.buf = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes]


def _forward(src: Future, dst: Future) -> None:
    e = src.exception()
    if e is not None:
        dst.set_exception(e)
    else:
        dst.set_result(src.result())


@dataclass
class IOStats:
    bytes_read: int = 0
    expert_reads: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    io_seconds: float = 0.0  # wall time reads were in flight
    # Time before each call's first stage was in the bank, when MLX had nothing to compute.
    # (Waits for later stages overlap the computation of the earlier ones.)
    io_wait_seconds: float = 0.0
    calls: int = 0
    split_calls: int = 0  # calls whose experts did not fit one bank: computed group by group
    # Next-layer prefetch: experts read ahead of their call on a guess, and how many of them it used.
    prefetch_reads: int = 0
    prefetch_used: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict:
        looked_up = self.cache_hits + self.cache_misses
        return {
            "bytes_read": self.bytes_read,
            "expert_reads": self.expert_reads,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_rate": self.cache_hits / looked_up if looked_up else 0.0,
            "io_seconds": self.io_seconds,
            "io_wait_seconds": self.io_wait_seconds,
            "moe_calls": self.calls,
            "moe_split_calls": self.split_calls,
            "prefetch_reads": self.prefetch_reads,
            "prefetch_used": self.prefetch_used,
        }

    def reset(self) -> None:
        self.bytes_read = self.expert_reads = self.cache_hits = self.cache_misses = self.calls = self.split_calls = 0
        self.prefetch_reads = self.prefetch_used = 0
        self.io_seconds = self.io_wait_seconds = 0.0


@dataclass
class _Tensor:
    spec: mf.TensorSpec
    bank_dtype: mx.Dtype
    bank_nbytes: int  # bytes of one expert's slice in the bank

    @property
    def direct(self) -> bool:
        return self.bank_nbytes == self.spec.nbytes


@dataclass
class Bank:
    size: int
    params: dict  # tensor name -> mx.array (size, *shape), what the switch layer computes with
    rows: list  # per tensor: writable uint8 numpy view (size, bank_nbytes)
    keep: list  # the arrays that own the buffers the views point into
    # Counts the calls that wrote into the bank: experts placed ahead for one layer are still there
    # at its call only if no other layer sharing the bank ran in between.
    epoch: int = 0


def _widen(src: np.ndarray, stored: str, dst: np.ndarray) -> None:
    """Exact conversion of a stored float slice into an fp32 bank row (both raw uint8)."""
    if stored == "bfloat16" and sys.byteorder != "little":
        dst.view(np.uint32)[:] = src.view(np.uint16).astype(np.uint32) << 16
    elif stored == "bfloat16":
        # fp32 bits = bf16 bits << 16: on a little-endian host that is (0, bf16) uint16 pairs.
        pairs = dst.view(np.uint16).reshape(-1, 2)
        pairs[:, 0] = 0
        pairs[:, 1] = src.view(np.uint16)
    elif stored == "float16":
        dst.view(np.float32)[:] = src.view(np.float16).astype(np.float32)
    else:
        raise CheckpointError(f"cannot widen stored dtype {stored}")


def bank_layout(spec: mf.LayerSpec) -> list[_Tensor]:
    """How each tensor of one expert is held in a bank on this device."""
    out = []
    for t in spec.tensors:
        dt = compute_dtype(mf.mx_dtype(t.dtype))
        itemsize = 4 if dt == mx.float32 else np.dtype(mf.np_dtype(t.dtype)).itemsize
        out.append(_Tensor(t, dt, int(np.prod(t.shape, dtype=np.int64)) * itemsize))
    return out


def bank_signature(spec: mf.LayerSpec) -> tuple:
    """Layers with equal signatures can share one bank (same tensors, shapes, dtypes)."""
    return tuple((t.spec.name, tuple(t.spec.shape), t.spec.dtype, str(t.bank_dtype)) for t in bank_layout(spec))


def alloc_bank(spec: mf.LayerSpec, size: int) -> Bank:
    params, raws = {}, []
    for t in bank_layout(spec):
        shape = (size, *t.spec.shape)
        if t.bank_dtype == mx.bfloat16:
            raw = mx.zeros(shape, dtype=mx.uint16)
            params[t.spec.name] = raw.view(mx.bfloat16)
        else:
            raw = params[t.spec.name] = mx.zeros(shape, dtype=t.bank_dtype)
        raws.append(raw)
    # Evaluate once so every array owns its buffer; the bf16 views share the raw one.
    mx.eval(raws, list(params.values()))
    rows = [np.asarray(r).reshape(size, -1).view(np.uint8) for r in raws]
    for r in rows:
        if not r.flags.writeable:  # a numpy/MLX change would break zero-copy reads
            raise RuntimeError("MLX arrays are not writable through numpy on this install")
    if read_path().host_banks:
        keep_on_host(rows)
    return Bank(size, params, rows, raws)


class LayerStore:
    """The expert file of one MoE layer, the bank its experts are read into, and its slot policy.

    The bank is attached by the loader: with an expert cache each layer has its own bank whose
    slots keep experts between calls; without one, layers of the same shape share one bank
    (the layers run one after another and each call's output is evaluated before the next
    call reads), so streaming costs one layer's top-k experts of memory, not one per layer.
    """

    def __init__(
        self,
        root: Path,
        spec: mf.LayerSpec,
        pool: ThreadPoolExecutor,
        sequencer: ThreadPoolExecutor,
        stats: IOStats,
        verify_reads: bool = True,
    ):
        self.path = Path(root) / spec.file
        self.spec = spec
        self.cache_slots = 0
        self.pool = pool  # blocking (disk) reads, many in flight
        self.sequencer = sequencer  # one thread: orders each call's reads
        self.stats = stats
        self.verify_reads = verify_reads
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: expert file is missing")
        size = self.path.stat().st_size
        if size != spec.size:
            raise CheckpointError(
                f"{self.path}: {size} bytes but the manifest says {spec.size} "
                f"({'truncated' if size < spec.size else 'too long'})"
            )
        self.tensors = bank_layout(spec)
        self.bank_bytes_per_expert = sum(t.bank_nbytes for t in self.tensors)
        self.fd = os.open(self.path, os.O_RDONLY)
        self.verified = np.zeros(spec.num_experts, dtype=bool)
        # Benchmarks only: forget each expert from the OS page cache once read, so every read
        # goes to the disk as it would for a model much larger than RAM.
        self.drop_page_cache = False
        self.bank: Bank | None = None
        self.policy: SlotPolicy | None = None
        self.read_path = read_path()

    def attach(self, bank: Bank, retain: bool, scratch: Bank | None = None) -> None:
        """Read into `bank`; `scratch` (non-retaining, larger) takes the calls `bank` cannot hold."""
        self.bank = bank
        self.policy = SlotPolicy(self.spec.num_experts, bank.size, retain=retain)
        self._own = (self.bank, self.policy)
        self._ahead = None  # (bank epoch, experts, Futures) of reads started ahead of the next call
        self._scratch = None
        if scratch is not None and scratch.size > bank.size:
            self._scratch = (scratch, SlotPolicy(self.spec.num_experts, scratch.size, retain=False))

    @property
    def capacity(self) -> int:
        return self.bank.size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _read(self, expert: int, slot: int, bank: Bank, only_cached: bool = False) -> int | None:
        """Read one expert into a bank slot; returns the bytes read.

        only_cached: read only if the whole blob is in the OS page cache (RWF_NOWAIT), else
        return None without blocking on the disk. Such reads go through a small buffer that
        stays hot in the CPU's caches and are then copied into the bank: the kernel copies
        into a large, cold destination several times slower than into a hot one (measured
        1.8 ms vs 0.3 ms per 2.6 MB expert on the development VM), and a user-space copy
        does not suffer from it.
        """
        offset = expert * self.spec.stride
        if only_cached:
            staging = _staging(self.spec.blob_size)
            iov, staged = [staging], []
            try:
                n = os.preadv(self.fd, iov, offset, NOWAIT)
            except BlockingIOError:
                return None
            if n != self.spec.blob_size:  # partly cached: read it again, blocking
                return None
        elif self.read_path.copy_in:
            staging = _staging(self.spec.blob_size)
            iov, staged = [staging], []
            n = os.preadv(self.fd, iov, offset)
        else:
            staging = None
            iov, staged = [], []
            for t, rows in zip(self.tensors, bank.rows):
                if t.direct:
                    iov.append(rows[slot])
                else:
                    buf = np.empty(t.spec.nbytes, dtype=np.uint8)
                    iov.append(buf)
                    staged.append((buf, t.spec.dtype, rows[slot]))
            n = os.preadv(self.fd, iov, offset)
        if n != self.spec.blob_size:
            raise CheckpointError(f"{self.path}: short read of expert {expert} ({n} of {self.spec.blob_size} bytes)")
        # Each expert is checked the first time it is read; later reads return the same bytes.
        if self.verify_reads and not self.verified[expert]:
            crc = 0
            for b in iov:
                crc = zlib.crc32(b, crc)
            if crc != self.spec.crc32[expert]:
                raise CheckpointError(f"{self.path}: expert {expert} is corrupt (checksum mismatch at byte {offset})")
            self.verified[expert] = True
        if staging is not None:
            for t, rows in zip(self.tensors, bank.rows):
                src = staging[t.spec.offset : t.spec.offset + t.spec.nbytes]
                if self.read_path.copy_in:
                    copy_into(rows[slot], src)
                elif t.direct:
                    np.copyto(rows[slot], src)
                else:
                    _widen(src, t.spec.dtype, rows[slot])
        for buf, stored, dst in staged:
            _widen(buf, stored, dst)
        if self.drop_page_cache:
            os.posix_fadvise(self.fd, offset, self.spec.stride, os.POSIX_FADV_DONTNEED)
        return n

    def _sequence(self, jobs: list[tuple[int, int]], done: list[Future], bank: Bank) -> None:
        """Read `jobs` in order (on the ordering thread), each completing its Future.

        Experts already in the page cache are copied right here, one after another, so the
        first ones are ready as early as possible and copies do not fight over the CPU that
        MLX computes on. Experts that need the disk go to the I/O pool at once, so the disk
        sees many requests in flight. Without RWF_NOWAIT (macOS) every read goes to the pool.
        """
        for (expert, slot), fut in zip(jobs, done):
            n = None
            if NOWAIT is not None and not self.drop_page_cache and self.read_path.inline_cached:
                try:
                    n = self._read(expert, slot, bank, only_cached=True)
                except BaseException as e:  # a corrupt blob: report it on this expert
                    fut.set_exception(e)
                    continue
            if n is not None:
                fut.set_result((n, time.perf_counter()))
            else:
                self.pool.submit(self._read_timed, expert, slot, bank).add_done_callback(
                    lambda src, dst=fut: _forward(src, dst)
                )

    def _read_timed(self, expert: int, slot: int, bank: Bank) -> tuple[int, float]:
        return self._read(expert, slot, bank), time.perf_counter()

    def plan_call(self, experts: np.ndarray, counts: np.ndarray | None = None) -> list[np.ndarray]:
        """Split one switch call's experts (sorted unique ids) into groups that fit the bank.

        Experts already in the bank come first, so they are used before anything evicts them. The
        others follow from the fewest tokens (`counts`, pairs per expert) to the most, so a prefill
        leaves a cached layer holding the prompt's hottest experts for the decode after it.
        """
        with self.stats.lock:
            self.stats.calls += 1
        self.bank, self.policy = self._own
        if len(experts) <= self.capacity:
            return [experts]
        if self._scratch is not None and len(experts) <= self._scratch[0].size:
            # One call over all its experts (GPUs: split calls would change the numbers); the
            # experts this layer caches are read again into the scratch bank.
            self.bank, self.policy = self._scratch
            return [experts]
        with self.stats.lock:
            self.stats.split_calls += 1
        self._settle_ahead()
        kept = self.policy.slot_of[experts] >= 0  # cached, or read ahead of this call
        rest = np.flatnonzero(~kept)
        if counts is not None:
            rest = rest[np.argsort(counts[rest], kind="stable")]
        ordered = np.concatenate([experts[kept], experts[rest]])
        # The last group is a full one, the hottest experts: what the bank holds when the call ends.
        head, last = ordered[: -self.capacity], ordered[-self.capacity :]
        return [np.sort(head[i : i + self.capacity]) for i in range(0, len(head), self.capacity)] + [np.sort(last)]

    def banks(self) -> list[Bank]:
        """The banks this layer's calls compute from: its own, and the scratch bank of the calls its own
        cannot hold (GPUs)."""
        return [self._own[0]] + ([self._scratch[0]] if self._scratch is not None else [])

    @property
    def prefetch_capacity(self) -> int:
        """How many experts a guess may read ahead: this layer's own bank."""
        return self._own[0].size

    def prefetch(self, experts: np.ndarray) -> int:
        """Start reading a guess of this layer's next call (unique ids, at most prefetch_capacity)
        into its own bank; returns the reads started. The call still routes for itself: it uses
        what was read ahead where the guess was right and reads the rest (tokens never change)."""
        if self._ahead is not None:
            return 0
        bank, policy = self._own
        plan = policy.place(experts)
        bank.epoch += 1  # what other layers placed in a shared bank is overwritten now
        jobs = [(int(experts[i]), int(plan.slots[i])) for i in plan.misses]
        done = [Future() for _ in jobs]
        if jobs:
            self.sequencer.submit(self._sequence, jobs, done, bank)
        self._ahead = (bank.epoch, experts[plan.misses], done)  # the experts read, not those already in
        with self.stats.lock:
            self.stats.prefetch_reads += len(jobs)
        return len(jobs)

    def _settle_ahead(self) -> None:
        """Wait for the reads started ahead of this call; forget them if another layer has used the
        bank since (a shared bank), so only bytes still in their slots count as present."""
        if self._ahead is None:
            return
        epoch, experts, done = self._ahead
        if done:
            read = sum(f.result()[0] for f in done)  # a corrupt expert raises here, as in the call
            with self.stats.lock:
                self.stats.bytes_read += read
                self.stats.expert_reads += len(done)
            self._ahead = (epoch, experts, [])
        bank, policy = self._own
        if bank.epoch != epoch:
            policy.forget()
            self._ahead = None

    def stream(self, experts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Bring `experts` (unique ids, at most `capacity`) into the bank, stage by stage.

        Yields (experts now in the bank, id->slot table) once per stage, as soon as that
        stage's reads are done, while later reads go on: the caller computes with one stage
        while the next is read (MLX computes on its own thread; `preadv` releases the GIL).
        The first stage is the experts already in the bank plus one read; later stages
        double in size, so compute starts early and the stage count stays logarithmic. Where
        the device's read path is not staged (GPUs), there is one stage: the whole call.
        """
        self._settle_ahead()
        ahead_used = 0
        if self._ahead is not None:
            if self.bank is self._own[0]:
                ahead_used = int(np.isin(experts, self._ahead[1]).sum())
            self._ahead = None
        plan = self.policy.plan(experts)
        self.bank.epoch += 1
        lut = np.zeros(self.spec.num_experts, dtype=np.uint32)
        lut[experts] = plan.slots
        hits = np.setdiff1d(np.arange(len(experts)), plan.misses)
        bounds, start, size = [], 0, 1
        if not self.read_path.staged:  # one stage: every expert of the call, then compute
            start = size = len(plan.misses)
            bounds = [(0, size)] if size else []
        while start < len(plan.misses):
            bounds.append((start, min(start + size, len(plan.misses))))
            start, size = start + size, size * 2
        jobs = [(int(experts[i]), int(plan.slots[i])) for i in plan.misses]
        done = [Future() for _ in jobs]
        t0 = time.perf_counter()
        if jobs:
            # The first read on this thread, before the ordering thread starts: no thread
            # hand-off (nor contention for the GIL) while MLX has nothing to compute.
            self._sequence(jobs[:1], done[:1], self.bank)
        if len(jobs) > 1:
            self.sequencer.submit(self._sequence, jobs[1:], done[1:], self.bank)
        with self.stats.lock:
            # Experts read ahead on a guess are not cache hits (prefetch_used counts them), whether
            # or not the bank would also have kept them.
            self.stats.cache_hits += len(hits) - min(ahead_used, len(hits))
            self.stats.prefetch_used += min(ahead_used, len(hits))
            self.stats.cache_misses += len(jobs)
        try:
            if not bounds:
                yield experts, lut
            for i, (lo, hi) in enumerate(bounds):
                results = [f.result() for f in done[lo:hi]]
                if self.read_path.prefetch:
                    prefetch_slots(
                        self.bank.rows, plan.slots[plan.misses[lo:hi]], [t.bank_nbytes for t in self.tensors]
                    )
                t1 = time.perf_counter()
                with self.stats.lock:
                    self.stats.bytes_read += sum(n for n, _ in results)
                    self.stats.expert_reads += hi - lo
                    if i == 0:  # includes the first read, done on this thread
                        self.stats.io_wait_seconds += t1 - t0
                    if hi == len(jobs):
                        self.stats.io_seconds += max(t for _, t in results) - t0
                ready = plan.misses[lo:hi] if i else np.concatenate([hits, plan.misses[lo:hi]])
                yield experts[ready], lut
        finally:
            # Never leave a read running into the bank after the caller has moved on.
            for f in done:
                f.exception()
