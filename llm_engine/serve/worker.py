"""One thread that owns the engine and serves generation requests one at a time.

MLX state (the model, its streams, the random seed) and the tokenizer's stateful detokenizer
belong to the thread that uses them, so a single worker thread loads the engine, tokenizes,
generates and closes it; HTTP threads only put Jobs on its queue and read events back. The
queue is FIFO, so requests are served in arrival order. A cancelled ticket (its client went
away) stops at the next token, or is skipped if it has not started.

With max_batch > 1 (load_kwargs, `almanac model serve --max-batch N`), the same thread decodes up
to N requests together with llm_engine.BatchGenerator: requests that arrive while others decode
are prefilled between two steps and join them, so each step reads the union of their experts
once. Greedy answers are the same as one at a time; sampled ones (temperature > 0) draw from one
shared random stream, so a seed does not repeat an answer while others decode beside it.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..batch import BatchGenerator
from ..checks import info
from ..errors import EngineError
from ..generate import encode, stream_generate
from ..loader import load
from .prompts import chat_tokens
from .stops import StopFilter


@dataclass
class Job:
    """What to generate. Exactly one of prompt (text or token ids) and messages (chat)."""

    prompt: str | list[int] | None = None
    messages: list[dict] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Started:
    """The prompt is accepted (tokenized, within the limit); text events follow."""

    prompt_tokens: int


@dataclass
class Delta:
    text: str


@dataclass
class Done:
    finish_reason: str  # "stop" (EOS or a stop string), "length" or "cancelled"
    prompt_tokens: int
    completion_tokens: int  # EOS not counted, as in llm_engine.generate's Result.tokens
    tokens: list[int]
    queue_s: float  # waiting for earlier requests
    prompt_eval_s: float  # prefill, up to the first generated token
    eval_s: float  # the rest of the generation
    total_s: float  # from submit to the end
    stats: dict | None = None  # the engine's stats when generation ran to its natural end


@dataclass
class Failed:
    status: int  # 400: the request was bad; 500: the engine failed
    message: str


Event = Started | Delta | Done | Failed


@dataclass
class ModelInfo:
    name: str
    path: Path
    model_type: str
    has_chat_template: bool
    size_bytes: int
    quantization: str  # e.g. "Q4" from the expert bits, "" when unquantized
    modified: float  # manifest.json's mtime (epoch seconds)


class Ticket:
    """A submitted job: read its events with next(); cancel() if nobody wants them anymore."""

    def __init__(self, job: Job):
        self.job = job
        self.submitted = time.perf_counter()
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()

    def put(self, event: Event) -> None:
        self._events.put(event)

    def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or None if none came within timeout seconds."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


@dataclass
class Counters:
    served: int = 0
    cancelled: int = 0
    failed: int = 0
    largest_batch: int = 0  # the most requests decoded in one step so far


class Worker:
    """Start with Worker.start(path, ...): returns once the model is loaded (or raises)."""

    def __init__(self, path: Path, max_prompt_tokens: int, load_kwargs: dict):
        self.path = path
        self.max_prompt_tokens = max_prompt_tokens
        self.load_kwargs = load_kwargs
        self.info: ModelInfo | None = None
        self.counters = Counters()
        self.busy = False
        self._queue: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._stopping = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-worker", daemon=True)

    @classmethod
    def start(cls, path: str | os.PathLike, max_prompt_tokens: int = 8192, **load_kwargs) -> Worker:
        if max_prompt_tokens < 1:
            raise EngineError("max_prompt_tokens must be >= 1")
        w = cls(Path(path), max_prompt_tokens, load_kwargs)
        w._thread.start()
        w._ready.wait()
        if w._load_error is not None:
            raise w._load_error
        return w

    def submit(self, job: Job) -> Ticket:
        ticket = Ticket(job)
        if self._stopping:
            ticket.put(Failed(503, "the server is shutting down"))
        else:
            self._queue.put(ticket)
        return ticket

    def queued(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 60.0) -> None:
        """Stop after the current token, refuse what is queued, close the engine."""
        self._stopping = True
        self._queue.put(None)
        self._closed.wait(timeout)

    # --- the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._load_and_serve()
        finally:
            self._closed.set()
            # Never return: if a thread that ran MLX ends before the process does, MLX can
            # abort the process at exit ("terminate called without an active exception",
            # seen with MLX 0.32). Parked, this daemon thread simply dies with the process.
            threading.Event().wait()

    def _load_and_serve(self) -> None:
        try:
            engine = load(self.path, **self.load_kwargs)
            self.info = _model_info(self.path, engine)
        except BaseException as e:  # handed to start(), which raises it in the caller
            self._load_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            if engine.max_batch > 1:
                self._serve_batched(engine)
                return
            while not self._stopping:
                ticket = self._queue.get()
                if ticket is None:
                    break
                self.busy = True
                try:
                    self._serve(engine, ticket)
                finally:
                    self.busy = False
                engine.save_hot_list()  # at most once a minute; and at close
        finally:
            engine.close()
            self._refuse_queued()

    def _refuse_queued(self) -> None:
        # Nobody will serve these anymore: tell their clients instead of leaving them waiting.
        while True:
            try:
                ticket = self._queue.get_nowait()
            except queue.Empty:
                return
            if ticket is not None:
                ticket.put(Failed(503, "the server is shutting down"))

    def _take(self, engine, ticket: Ticket, queue_s: float) -> list[int] | None:
        """A queued request's prompt tokens; None once it is answered already (cancelled while it waited, or a
        prompt that cannot run)."""
        if ticket.cancelled:
            self.counters.cancelled += 1
            ticket.put(Done("cancelled", 0, 0, [], queue_s, 0.0, 0.0, queue_s))
            return None
        try:
            return self._prompt_tokens(engine, ticket.job)
        except (EngineError, ValueError) as e:
            self.counters.failed += 1
            ticket.put(Failed(400, str(e)))
            return None

    def _serve(self, engine, ticket: Ticket) -> None:
        queue_s = time.perf_counter() - ticket.submitted
        tokens = self._take(engine, ticket, queue_s)
        if tokens is None:
            return
        ticket.put(Started(len(tokens)))
        try:
            done = self._generate(engine, ticket, tokens)
        except Exception as e:  # an engine failure must not take the worker down
            traceback.print_exc(file=sys.stderr)
            self.counters.failed += 1
            ticket.put(Failed(500, f"generation failed: {e}"))
            return
        done.queue_s = queue_s
        done.total_s = time.perf_counter() - ticket.submitted
        if done.finish_reason == "cancelled":
            self.counters.cancelled += 1
        else:
            self.counters.served += 1
        ticket.put(done)

    def _prompt_tokens(self, engine, job: Job) -> list[int]:
        if job.messages is not None:
            tokens = encode(engine, chat_tokens(engine.tokenizer, job.messages))
        else:
            tokens = encode(engine, job.prompt if job.prompt is not None else "")
        if len(tokens) > self.max_prompt_tokens:
            raise EngineError(
                f"the prompt is {len(tokens)} tokens long; this server accepts at most {self.max_prompt_tokens}"
            )
        return tokens

    def _generate(self, engine, ticket: Ticket, prompt: list[int]) -> Done:
        job = ticket.job
        eos = set(engine.tokenizer.eos_token_ids or ())
        stops = StopFilter(job.stop)
        out: list[int] = []
        finish, stats, hit = "length", None, False
        t0 = time.perf_counter()
        t_first = None
        steps = stream_generate(engine, prompt, max_tokens=job.max_tokens, temp=job.temperature, seed=job.seed)
        try:
            for step in steps:
                if t_first is None:
                    t_first = time.perf_counter()
                if not (step.finish_reason == "stop" and step.token in eos):
                    out.append(step.token)
                text, hit = stops.feed(step.text)
                if text:
                    ticket.put(Delta(text))
                if hit:
                    finish = "stop"
                    break
                if step.finish_reason is not None:
                    finish, stats = step.finish_reason, step.stats
                elif ticket.cancelled or self._stopping:
                    finish = "cancelled"
                    break
        finally:
            steps.close()  # ends mlx-lm's generator: no token is computed past this point
        if not hit:
            rest = stops.flush()
            if rest and finish != "cancelled":
                ticket.put(Delta(rest))
        t_end = time.perf_counter()
        t_first = t_first or t_end
        return Done(finish, len(prompt), len(out), out, 0.0, t_first - t0, t_end - t_first, 0.0, stats)

    # --- batched serving (max_batch > 1) ------------------------------------------------

    def _admit(self, engine, batch: BatchGenerator, ticket: Ticket, live: dict) -> None:
        """Tokenize a queued request and insert it into the batch (or answer it at once)."""
        queue_s = time.perf_counter() - ticket.submitted
        tokens = self._take(engine, ticket, queue_s)
        if tokens is None:
            return
        job = ticket.job
        try:
            if job.seed is not None:
                import mlx.core as mx

                mx.random.seed(job.seed)
            uid = batch.insert(tokens, max_tokens=job.max_tokens, temp=job.temperature)
        except (EngineError, ValueError) as e:
            self.counters.failed += 1
            ticket.put(Failed(400, str(e)))
            return
        ticket.put(Started(len(tokens)))
        live[uid] = _Live(ticket, StopFilter(job.stop), len(tokens), queue_s, time.perf_counter())

    def _finish(self, live: dict, uid: int, finish: str, stats: dict | None) -> None:
        lv = live.pop(uid)
        if finish != "cancelled":
            rest = lv.stops.flush()
            if rest:
                lv.ticket.put(Delta(rest))
            self.counters.served += 1
        else:
            self.counters.cancelled += 1
        t_end = time.perf_counter()
        t_first = lv.t_first or t_end
        lv.ticket.put(
            Done(
                finish,
                lv.prompt_tokens,
                len(lv.out),
                lv.out,
                lv.queue_s,
                t_first - lv.t_start,
                t_end - t_first,
                t_end - lv.ticket.submitted,
                stats,
            )
        )

    def _serve_batched(self, engine) -> None:
        batch = BatchGenerator(engine)
        live: dict[int, _Live] = {}
        eos = set(engine.tokenizer.eos_token_ids or ())
        while not self._stopping:
            # Wait for work when idle; otherwise take what has queued, up to the batch's room.
            while len(live) < batch.max_batch:
                try:
                    ticket = self._queue.get(block=not live)
                except queue.Empty:
                    break
                if ticket is None:
                    self._stopping = True
                    break
                self._admit(engine, batch, ticket, live)
            if self._stopping:
                break
            for uid in [u for u, lv in live.items() if lv.ticket.cancelled]:
                batch.remove(uid)
                self._finish(live, uid, "cancelled", None)
            self.busy = bool(live)
            if not live:
                engine.save_hot_list()  # idle: at most once a minute; and at close
                continue
            try:
                steps = batch.step()
            except Exception as e:  # an engine failure fails the batch's requests, not the worker
                traceback.print_exc(file=sys.stderr)
                for uid, lv in list(live.items()):
                    batch.remove(uid)
                    self.counters.failed += 1
                    lv.ticket.put(Failed(500, f"generation failed: {e}"))
                live.clear()
                continue
            finally:
                self.busy = bool(live)
            self.counters.largest_batch = max(self.counters.largest_batch, len(steps))
            for step in steps:
                lv = live[step.uid]
                lv.t_first = lv.t_first or time.perf_counter()
                if not (step.finish_reason == "stop" and step.token in eos):
                    lv.out.append(step.token)
                text, hit = lv.stops.feed(step.text)
                if text:
                    lv.ticket.put(Delta(text))
                if hit:
                    if step.finish_reason is None:
                        batch.remove(step.uid)
                    lv.stops.held = ""
                    self._finish(live, step.uid, "stop", None)
                elif step.finish_reason is not None:
                    self._finish(live, step.uid, step.finish_reason, step.stats)
        for uid in list(live):
            batch.remove(uid)
            self._finish(live, uid, "cancelled", None)


@dataclass
class _Live:
    """A request decoding in the batch."""

    ticket: Ticket
    stops: StopFilter
    prompt_tokens: int
    queue_s: float
    t_start: float
    out: list[int] = field(default_factory=list)
    t_first: float | None = None


def _model_info(path: Path, engine) -> ModelInfo:
    summary = info(path)
    bits = sorted({q["bits"] for q in summary["expert_quantization"]})
    manifest = path / "manifest.json"
    return ModelInfo(
        name=path.name,
        path=path,
        model_type=summary["model_type"],
        has_chat_template=bool(engine.tokenizer.has_chat_template),
        size_bytes=summary["expert_bytes"] + summary["resident_bytes"],
        quantization="/".join(f"Q{b}" for b in bits),
        modified=manifest.stat().st_mtime,
    )
