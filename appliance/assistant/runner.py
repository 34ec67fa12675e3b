"""The loop that writes waiting answers: one job at a time, with the deep model, behind interactive questions.

One process runs it (appliance/runtime/answer_runner.py makes sure of that). It takes the oldest queued job
only when the deep model's server is up and idle, streams its answer into the job as it comes (so the inbox
shows tokens so far), and stores the measured speeds for the next estimates. What can go wrong is written in
the job, never lost:

- cancelled or deleted from the portal: its next progress write changes no row; the stream is closed, which
  stops the model at once;
- the model server stops midway (killed, restarted): the job is queued again at its place, restarted from
  the beginning, and its note says so; the loop waits until the server answers again;
- an interactive question queues behind it on the same server: the job gives way the same way (its attempts
  not counted), and starts again once the server is idle;
- the model refuses the request (4xx: the prompt too long, say): the job fails with the server's reason.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from . import model_client
from .jobs import Job, JobStore
from .speeds import SpeedStore, prompt_chars

PROGRESS_S = 0.25  # the answer so far is saved at most this often
YIELD_CHECK_S = 1.0  # how often the shared server is asked whether an interactive question waits


@dataclass(frozen=True)
class DeepModel:
    url: str
    model: str = ""
    timeout_s: float = 3600
    shared: bool = False  # True: the quick model's server too, so interactive questions go first


class Runner:
    def __init__(
        self,
        jobs: JobStore,
        speeds: SpeedStore,
        deep: DeepModel,
        log: Callable[[str], None] = print,
        poll_s: float = 1.0,
    ):
        self.jobs, self.speeds, self.deep, self.log, self.poll_s = jobs, speeds, deep, log, poll_s

    def run(self, stop: threading.Event) -> None:
        for job_id in self.jobs.recover():
            self.log(f"job {job_id} was interrupted: queued again, to restart from the beginning")
        while not stop.is_set():
            model = self._free_model()
            job = self.jobs.claim() if model else None
            if job is None:
                stop.wait(self.poll_s)
                continue
            self.log(f"job {job.id}: answering with {model} (attempt {job.attempts})")
            self.answer(job, model, stop)

    def _free_model(self) -> str | None:
        """The deep model's name when its server answers and nothing else waits on it; else None."""
        if not self.deep.url:
            return None
        state = model_client.probe(self.deep.url, self.deep.model)
        if not state.available:
            return None
        health = model_client.health(self.deep.url) if self.deep.shared else None
        if health and (health.get("busy") or health.get("queued")):
            return None  # an interactive question is being answered: let it finish first
        return state.model

    def answer(self, job: Job, model: str, stop: threading.Event) -> None:
        text: list[str] = []
        finish: model_client.Finished | None = None
        t0 = time.monotonic()
        t_first = first_token = None
        last_save = last_check = 0.0
        stream = model_client.chat_stream(
            self.deep.url,
            model,
            job.messages,
            max_tokens=job.max_tokens,
            temperature=job.temperature,
            timeout=self.deep.timeout_s,
        )
        try:
            for event in stream:
                if isinstance(event, model_client.Finished):
                    finish = event
                    continue
                text.append(event.text)
                now = time.monotonic()
                if t_first is None:
                    t_first, first_token = now, time.time()
                if now - last_save >= PROGRESS_S:
                    last_save = now
                    if not self.jobs.progress(job.id, "".join(text), len(text), model, first_token):
                        self.log(f"job {job.id}: cancelled or deleted; the model is stopped")
                        return
                if stop.is_set():
                    self.jobs.requeue(job.id, self._note("the answer runner was stopped", len(text)))
                    return
                if self.deep.shared and now - last_check >= YIELD_CHECK_S:
                    last_check = now
                    health = model_client.health(self.deep.url, timeout=1.0)
                    if health and health.get("queued"):
                        self.jobs.requeue(
                            job.id, self._note("it gave way to an interactive question", len(text)), count=False
                        )
                        self.log(f"job {job.id}: gave way to an interactive question")
                        return
        except model_client.ModelUnavailable as e:
            if e.refused:
                self.jobs.fail(job.id, str(e))
                self.log(f"job {job.id}: refused by the model server: {e}")
            else:
                self.jobs.requeue(job.id, self._note(f"the model server stopped answering ({e})", len(text)))
                self.log(f"job {job.id}: {e}; queued again")
                stop.wait(self.poll_s)
            return
        finally:
            stream.close()  # closes the connection: the model stops at its next token
        t_end = time.monotonic()
        answer = "".join(text)
        usage = finish.usage if finish else None
        if not self.jobs.finish(
            job.id, answer, len(text), model, finish.finish_reason if finish else None, usage, first_token
        ):
            return  # cancelled in the last moment
        self.log(f"job {job.id}: answered ({len(text)} pieces)")
        if usage and t_first is not None:
            self.speeds.record(
                self.deep.url,
                prompt_chars(job.messages),
                int(usage.get("prompt_tokens") or 0),
                t_first - t0,
                int(usage.get("completion_tokens") or 0),
                t_end - t_first,
            )

    @staticmethod
    def _note(why: str, tokens: int) -> str:
        return f"restarted from the beginning: {why} after {tokens} tokens"
