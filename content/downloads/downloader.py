"""The one downloader of the box, for ZIMs, map archives and models.

Jobs live in SQLite (``jobs.JobStore``), so a dropped connection, a restarted server and a restarted
Almanac (even one killed with ``kill -9``) all end the same way: the job goes on from its last
checkpoint. A file is checked (size, SHA-256 from the metalink or ``.sha256`` sidecar, then its kind's
own check) before it is moved into place; a mismatch is deleted and reported with both digests.

    dl = Downloader(db_path, installers={"zim": ZimInstaller(library, provenance)})
    job = dl.add("https://mirror/wikipedia_en_top_nopic_2024-06.zim.meta4", kind="zim",
                 name="wikipedia_en_top_nopic")
    dl.run()                         # until no job is left to do (the CLI), or dl.start() (the service)
    dl.pause(job.id); dl.resume(job.id); dl.cancel(job.id)   # from any process: state is in SQLite
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

from .http_range import USER_AGENT, MirrorFailed, RangeNotSatisfiable, Retryable, StartOver, copy_body, open_range
from .jobs import ACTIVE, FINISHED, Job, JobError, JobStore, owner_id
from .metalink import MetalinkError, check_sha256, parse_metalink, parse_sidecar
from .sink import Sink

MiB = 1 << 20


class DownloadError(Exception):
    """A download that cannot go on; the message (one line) is kept on the job."""


class _Stop(Exception):
    def __init__(self, state: str, error: str = ""):
        super().__init__(state)
        self.state, self.error = state, error


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def disk_free(path: Path) -> int:
    path = Path(path)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


class Downloader:
    def __init__(
        self,
        db_path: Path,
        *,
        installers: dict,
        max_parallel: int = 2,
        chunk_bytes: int = 64 * MiB,
        retries: int = 6,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 30.0,
        reserve_bytes: int = 256 * MiB,
        stale_after_s: float = 120.0,
        free_space: Callable[[Path], int] = disk_free,
        on_progress: Callable[[Job], None] | None = None,
        progress_interval_s: float = 0.5,
    ):
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.store = JobStore(db_path)
        self.installers = installers
        self.max_parallel = max_parallel
        self.chunk_bytes = chunk_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.reserve_bytes = reserve_bytes
        self.stale_after_s = stale_after_s
        self.free_space = free_space
        self.on_progress = on_progress
        self.progress_interval_s = progress_interval_s
        self.owner = owner_id(uuid.uuid4().hex[:8])
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._service: threading.Thread | None = None

    # -- asking for downloads -----------------------------------------------------------------------
    def add(
        self,
        url: str,
        *,
        kind: str = "zim",
        name: str,
        sha256: str | None = None,
        size: int | None = None,
        mirrors: tuple[str, ...] = (),
        meta: dict | None = None,
    ) -> Job:
        """Queue a download of ``url`` (a ``.meta4`` or the file) to become ``name`` in the library."""
        installer = self.installers.get(kind)
        if installer is None:
            raise DownloadError(f"unknown kind {kind!r} (known: {', '.join(sorted(self.installers))})")
        if not url.startswith(("http://", "https://")):
            raise DownloadError(f"{url}: not an http(s) URL")
        if not name or "/" in name or name.startswith("."):
            raise DownloadError(f"{name!r} is not a usable file name")
        if sha256 is not None:
            try:
                sha256 = check_sha256(sha256)
            except MetalinkError as e:
                raise DownloadError(str(e)) from None
        problem = installer.conflict(name)
        if problem:
            raise DownloadError(problem)
        for job in self.store.list(ACTIVE + ("paused",)):
            if job.kind == kind and job.name == name:
                raise DownloadError(f"{kind} {name!r} is already being downloaded (job {job.id}, {job.state})")
        urls = [url, *[m for m in mirrors if m != url]]
        job = self.store.add(kind=kind, name=name, source=url, urls=urls, size=size, sha256=sha256, meta=meta)
        self._wake.set()
        return job

    def jobs(self, states: tuple[str, ...] | None = None) -> list[Job]:
        return self.store.list(states)

    def job(self, job_id: int) -> Job:
        return self.store.get(job_id)

    def pause(self, job_id: int) -> Job:
        job = self.store.get(job_id)
        if not self.store.transition(job_id, "paused", expect=("queued", "running")):
            raise JobError(f"job {job_id} is {job.state}: only a queued or running job can be paused")
        return self.store.get(job_id)

    def resume(self, job_id: int) -> Job:
        job = self.store.get(job_id)
        if not self.store.transition(job_id, "queued", expect=("paused", "failed"), error=""):
            raise JobError(f"job {job_id} is {job.state}: only a paused or failed job can be resumed")
        self._wake.set()
        return self.store.get(job_id)

    def cancel(self, job_id: int) -> Job:
        job = self.store.get(job_id)
        if not self.store.transition(job_id, "cancelled", expect=("queued", "running", "paused", "failed")):
            raise JobError(f"job {job_id} is {job.state}: it cannot be cancelled")
        if job.state != "running":  # a running job's worker deletes its own part file when it sees this
            self._part(self.store.get(job_id)).unlink(missing_ok=True)
        return self.store.get(job_id)

    # -- running them ---------------------------------------------------------------------------------
    def run(self, *, until_idle: bool = True, stop: threading.Event | None = None) -> list[Job]:
        """Work through the queue with up to ``max_parallel`` downloads at once (after requeueing jobs a
        dead process left running). Returns the jobs this call ran, in the order they were queued."""
        self.store.recover(self.stale_after_s)
        stop = stop or self._stopping
        ran: list[int] = []
        lock = threading.Lock()

        def worker():
            while not stop.is_set():
                job = self.store.claim(self.owner)
                if job is None:
                    if until_idle:
                        return
                    self._wake.wait(1.0)
                    self._wake.clear()
                    self.store.recover(self.stale_after_s)
                    continue
                with lock:
                    ran.append(job.id)
                self._process(job, stop)

        threads = [threading.Thread(target=worker, name=f"download-{i}", daemon=True) for i in range(self.max_parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [self.store.get(i) for i in sorted(ran)]  # threads claim them in any order

    def start(self) -> None:
        """Run the queue in the background for the life of the process (the service)."""
        if self._service and self._service.is_alive():
            return
        self._stopping.clear()
        self._service = threading.Thread(target=self.run, kwargs={"until_idle": False}, daemon=True, name="downloader")
        self._service.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the background workers; running jobs go back to the queue at their checkpoint."""
        self._stopping.set()
        self._wake.set()
        if self._service:
            self._service.join(timeout_s)

    def close(self) -> None:
        self.stop()
        self.store.close()

    # -- one job -------------------------------------------------------------------------------------
    def _part(self, job: Job) -> Path:
        return self.installers[job.kind].staging_dir / f"{job.id}-{job.name}.part"

    def _process(self, job: Job, stop: threading.Event) -> None:
        part = self._part(job)
        try:
            job = self._resolve(job, stop)
            digest = self._download(job, part, stop)
            self._finish(job, part, digest)
        except _Stop as s:
            self._stopped(job, part, s)
        except DownloadError as e:
            self._fail(job, part, str(e), keep_part=True)
        except Exception as e:  # an unexpected fault must end the job visibly, never leave it "running"
            self._fail(job, part, f"internal error: {type(e).__name__}: {e}", keep_part=True)
        finally:
            self._notify(self.store.get(job.id))

    def _stopped(self, job: Job, part: Path, s: _Stop) -> None:
        state = self.store.state(job.id)
        if s.state == "shutdown":
            self.store.transition(job.id, "queued", expect=("running", "verifying"), owner="", rate=0.0)
        elif state == "cancelled" or s.state == "cancelled":
            part.unlink(missing_ok=True)
        elif s.state == "paused":
            self.store.transition(job.id, "paused", expect=("running", "verifying", "paused"), error=s.error, rate=0.0)

    def _fail(self, job: Job, part: Path, error: str, *, keep_part: bool) -> None:
        if not keep_part:
            part.unlink(missing_ok=True)
        if self.store.state(job.id) == "cancelled":
            part.unlink(missing_ok=True)
            return
        self.store.transition(job.id, "failed", expect=("running", "verifying", "paused"), error=error, rate=0.0)

    def _notify(self, job: Job) -> None:
        if self.on_progress:
            try:
                self.on_progress(job)
            except Exception:
                pass  # a progress display must never break a download

    def _control(self, job: Job, stop: threading.Event) -> None:
        if stop.is_set():
            raise _Stop("shutdown")
        state = self.store.state(job.id)
        if state in ("paused", "cancelled"):
            raise _Stop(state)

    def _sleep(self, seconds: float, job: Job, stop: threading.Event) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._control(job, stop)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(left, 0.25))

    def _backoff(self, failures: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * (2 ** (failures - 1)))

    # -- metalink / sidecar ----------------------------------------------------------------------------
    def _resolve(self, job: Job, stop: threading.Event) -> Job:
        if job.resolved:
            return job
        failures = 0
        while True:
            try:
                fields = self._checksum_source(job)
                break
            except Retryable as e:
                failures += 1
                if failures > self.retries:
                    raise DownloadError(f"gave up after {failures} attempts: {e}") from None
                self._sleep(self._backoff(failures), job, stop)
        self.store.update(job.id, resolved=1, **fields)
        return self.store.get(job.id)

    def _checksum_source(self, job: Job) -> dict:
        url = job.urls[0]
        if url.endswith(".meta4") or url.endswith(".metalink"):
            body = self._small_get(url)
            if body is None:
                raise DownloadError(f"{url}: the metalink is not there (404)")
            try:
                meta = parse_metalink(body, url)
            except MetalinkError as e:
                raise DownloadError(f"{url}: {e}") from None
            if job.sha256 and meta.sha256 and job.sha256 != meta.sha256:
                raise DownloadError(
                    f"{url}: the metalink's sha-256 {meta.sha256} differs from the expected {job.sha256}"
                )
            rest = [u for u in job.urls[1:] if u not in meta.urls]
            return {"urls": [*meta.urls, *rest], "size": meta.size or job.size, "sha256": meta.sha256 or job.sha256}
        if job.sha256:
            return {}
        body = self._small_get(url + ".sha256")
        if body is None:
            return {}  # no sidecar: the installer decides (a ZIM has its own checksum inside; others refuse)
        try:
            return {"sha256": parse_sidecar(body.decode("utf-8", "replace"))}
        except MetalinkError as e:
            raise DownloadError(f"{url}.sha256: {e}") from None

    def _small_get(self, url: str) -> bytes | None:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read(4 * MiB)
        except urllib.error.HTTPError as e:
            if e.code in (404, 410):
                return None
            if e.code >= 500 or e.code == 429:
                raise Retryable(f"HTTP {e.code} from {url}") from None
            raise DownloadError(f"{url}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise Retryable(f"{url}: {getattr(e, 'reason', e)}") from None

    # -- the bytes -------------------------------------------------------------------------------------
    def _check_space(self, job: Job, offset: int, part: Path) -> None:
        if not job.size:
            return
        need = job.size - offset + self.reserve_bytes
        free = self.free_space(part.parent)
        if free < need:
            raise _Stop(
                "paused",
                f"not enough disk space: {human_bytes(need - free)} short "
                f"({human_bytes(job.size - offset)} to go, {human_bytes(free)} free, "
                f"{human_bytes(self.reserve_bytes)} kept free)",
            )

    def _download(self, job: Job, part: Path, stop: threading.Event) -> str:
        part.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            return self._download_into(job, part, fd, stop)
        finally:
            os.close(fd)

    def _download_into(self, job: Job, part: Path, fd: int, stop: threading.Event) -> str:
        on_disk = os.fstat(fd).st_size
        offset = min(on_disk, job.checkpoint)
        os.ftruncate(fd, offset)  # what lies past the last checkpoint may not have reached the disk
        refetched = job.refetched + max(0, job.bytes_done - offset)
        hasher = hashlib.sha256()
        _hash_prefix(fd, offset, hasher)  # the digest is taken as the bytes arrive: no second pass
        self._check_space(job, offset, part)
        state = {
            "offset": offset,
            "last_ckpt": offset,
            "ckpt_t": time.monotonic(),
            "tick_t": time.monotonic(),
            "tick_bytes": offset,
            "rate": 0.0,
        }
        self.store.update(job.id, checkpoint=offset, bytes_done=offset, refetched=refetched, heartbeat=time.time())
        job = self.store.get(job.id)
        sink = Sink(fd, offset, hasher, lambda at: self.store.update(job.id, checkpoint=at))
        state["sink"] = sink

        def write(data) -> None:
            sink.write(data)
            state["offset"] += len(data)
            now = time.monotonic()
            if state["offset"] - state["last_ckpt"] >= self.chunk_bytes or now - state["ckpt_t"] >= 2.0:
                checkpoint(now)
            elif now - state["tick_t"] >= self.progress_interval_s:
                tick(now)

        def tick(now: float) -> None:
            dt = now - state["tick_t"]
            if dt > 0:
                instant = (state["offset"] - state["tick_bytes"]) / dt
                state["rate"] = instant if state["rate"] == 0 else 0.7 * state["rate"] + 0.3 * instant
            state["tick_t"], state["tick_bytes"] = now, state["offset"]
            self.store.update(job.id, bytes_done=state["offset"], rate=state["rate"], heartbeat=time.time())
            self._control(job, stop)
            self._notify(self.store.get(job.id))

        def checkpoint(now: float) -> None:
            sink.checkpoint()  # synced and recorded by the sink, behind the blocks before it
            state["last_ckpt"], state["ckpt_t"] = state["offset"], now
            tick(now)
            self._check_space(job, state["offset"], part)

        try:
            try:
                self._fetch_all(job, fd, state, part, stop, write, checkpoint)
            finally:
                sink.drain()  # every block received is on disk and hashed before anything else happens
        except _Stop:
            os.fdatasync(fd)  # what has arrived is kept: a resume starts exactly here
            self.store.update(job.id, checkpoint=state["offset"], bytes_done=state["offset"])
            raise
        finally:
            sink.close()
        os.fdatasync(fd)
        self.store.update(job.id, checkpoint=state["offset"], bytes_done=state["offset"], error="")
        return sink.hasher.hexdigest()

    def _fetch_all(self, job: Job, fd: int, state: dict, part: Path, stop: threading.Event, write, checkpoint) -> None:
        failures = 0
        alive = list(job.urls)
        which = 0
        dead: list[str] = []
        while True:
            self._control(job, stop)
            if job.size is not None and state["offset"] == job.size:
                return
            url = alive[which % len(alive)]
            progress_before = state["offset"]
            try:
                response, answer = open_range(url, state["offset"], etag=job.etag, timeout_s=self.timeout_s)
                if answer.total is not None and job.size is not None and answer.total != job.size:
                    response.close()
                    raise MirrorFailed(f"{url} serves {answer.total} bytes, the metalink says {job.size}")
                if answer.total is not None and job.size is None:
                    self.store.update(job.id, size=answer.total)
                    job = self.store.get(job.id)
                    try:
                        self._check_space(job, state["offset"], part)
                    except _Stop:
                        response.close()
                        raise
                if answer.etag and answer.etag != job.etag:
                    self.store.update(job.id, etag=answer.etag)
                    job = self.store.get(job.id)
                copy_body(response, answer, state["offset"], write, url)
                if job.size is None:  # no length was ever said: the end of the body is the end of the file
                    self.store.update(job.id, size=state["offset"])
                    job = self.store.get(job.id)
            except RangeNotSatisfiable as e:
                if e.total is not None and e.total == state["offset"]:
                    if job.size is None:
                        self.store.update(job.id, size=e.total)
                        job = self.store.get(job.id)
                    continue  # everything is here already
                failures += 1
                if failures > self.retries:
                    raise DownloadError(f"{url}: HTTP 416 again and again at byte {state['offset']}") from None
                job = self._start_over(job, fd, state, f"{url}: HTTP 416 at byte {state['offset']}")
            except StartOver as e:
                job = self._start_over(job, fd, state, str(e))
            except MirrorFailed as e:
                dead.append(str(e))
                alive.remove(url)
                if not alive:
                    raise DownloadError(f"no mirror serves the file: {'; '.join(dead)}") from None
            except Retryable as e:
                if state["offset"] > progress_before:
                    # A connection that made progress and then dropped is not a failing server: reconnect at
                    # once, from where it stopped (a backoff here cost a second per drop of a healthy mirror).
                    failures = 0
                    self.store.update(job.id, error=f"reconnecting: {e}")
                else:
                    failures += 1
                    if failures > self.retries:
                        checkpoint(time.monotonic())
                        raise DownloadError(f"gave up after {failures} attempts without progress: {e}") from None
                    self.store.update(job.id, error=f"retrying ({failures}/{self.retries}): {e}")
                    which += 1  # the next mirror, if there is another
                    self._sleep(self._backoff(failures), job, stop)
            if job.size is not None and state["offset"] > job.size:
                job = self._start_over(job, fd, state, f"{url} sent more than {job.size} bytes")

    def _start_over(self, job: Job, fd: int, state: dict, why: str) -> Job:
        sink = state["sink"]
        sink.drain()
        os.ftruncate(fd, 0)
        lost = state["offset"]
        state.update(offset=0, last_ckpt=0, tick_bytes=0)
        sink.offset, sink.hasher = 0, hashlib.sha256()
        current = self.store.get(job.id)
        self.store.update(job.id, checkpoint=0, bytes_done=0, refetched=current.refetched + lost, etag="", error=why)
        return self.store.get(job.id)

    # -- verify and install ---------------------------------------------------------------------------
    def _finish(self, job: Job, part: Path, digest: str) -> None:
        if not self.store.transition(job.id, "verifying", expect=("running",)):
            raise _Stop(self.store.state(job.id))
        job = self.store.get(job.id)
        if job.size is not None and part.stat().st_size != job.size:
            self._fail(
                job, part, f"size mismatch: expected {job.size} bytes, got {part.stat().st_size}", keep_part=False
            )
            return
        if job.sha256 and digest != job.sha256:
            self._fail(
                job,
                part,
                f"checksum mismatch: expected sha256 {job.sha256}, got {digest}; "
                "the download was deleted and nothing installed was touched",
                keep_part=False,
            )
            return
        installer = self.installers[job.kind]
        try:
            info = installer.check(part, job)
            dest = installer.place(part, job, info, digest)
        except Exception as e:
            from .installers import Refused

            message = str(e) if isinstance(e, Refused) else f"{type(e).__name__}: {e}"
            self._fail(
                job,
                part,
                f"refused: {message}; the download was deleted and nothing installed was touched",
                keep_part=False,
            )
            return
        self.store.transition(
            job.id, "done", expect=("verifying",), result=str(dest), error="", rate=0.0, sha256=digest
        )


def _hash_prefix(fd: int, length: int, hasher) -> None:
    pos = 0
    while pos < length:
        data = os.pread(fd, min(8 * MiB, length - pos), pos)
        if not data:
            break
        hasher.update(data)
        pos += len(data)


__all__ = ["Downloader", "DownloadError", "disk_free", "human_bytes", "FINISHED"]
