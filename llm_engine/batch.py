"""Batched decoding: several sequences advance together, one model call per step.

    batch = llm_engine.BatchGenerator(engine)
    a = batch.insert([1, 2, 3], max_tokens=32)
    b = batch.insert("Another prompt", max_tokens=16)
    while batch:
        for step in batch.step():      # one token for every active sequence
            print(step.uid, step.token, step.text, step.finish_reason)

Each prompt is prefilled on its own when it is inserted (exactly as `stream_generate` does), and
then joins the decode batch: every step feeds each active sequence's last token in one call of
shape (batch, 1), so each MoE layer routes all of them at once and reads the union of their
experts once (see switch.py). mlx-lm's batch caches (`BatchKVCache` and friends, left-padded)
hold the sequences' keys and values; a finished sequence leaves the batch and its cache is
dropped (or kept in the engine's prompt cache). Greedy tokens equal each sequence's single run
(tested on the five architectures). With temperature > 0, sequences draw from MLX's one random
stream, so a sampled sequence does not repeat its single run's draws.

Sequences can be inserted between steps (the model server does this with requests that arrive
while others decode): a new one is prefilled at the next step and decodes with the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import mlx.core as mx

from .device import peak_memory_bytes, reset_peak_memory
from .errors import EngineError
from .generate import PREFILL_STEP, _cache_key, _peak_rss_bytes, _reused_cache, check_context, encode
from .loader import Engine


@dataclass
class BatchStep:
    uid: int
    token: int
    text: str  # the text this token completes (may be empty mid-character)
    finish_reason: str | None = None  # "length" or "stop" on the sequence's last step
    stats: dict | None = None  # the sequence's figures, on its last step
    logits: object = None  # this step's logits (numpy, fp32) when BatchGenerator(return_logits=True)


@dataclass
class _Sequence:
    uid: int
    prompt: list[int]
    todo: list[int]  # prompt tokens still to compute (the rest came from the prompt cache)
    max_tokens: int
    temp: float
    eos: set
    detok: object
    cache: list | None  # its own KV cache until it joins the batch
    t_insert: float
    tokens: list[int] = field(default_factory=list)  # generated, EOS included
    t_first: float | None = None
    computed: int = 0  # prompt tokens computed (not taken from the prompt cache)


def _merge(caches: list[list]) -> list:
    """One batch cache per layer from single-sequence caches (mlx-lm's merge, left-padded)."""
    return [type(layer[0]).merge(list(layer)) for layer in zip(*caches)]


def _sampler(temp: float):
    if temp == 0:
        return lambda logits: mx.argmax(logits, axis=-1)
    return lambda logits: mx.random.categorical(logits * (1 / temp))


class BatchGenerator:
    """Decode several sequences together on one Engine; see the module docstring.

    max_batch: the most sequences decoding at once; insert() beyond it queues the sequence
    until one finishes (None: the engine's max_batch).
    return_logits: give each BatchStep its logits (for tests).
    """

    def __init__(self, engine: Engine, max_batch: int | None = None, return_logits: bool = False):
        self.engine = engine
        self.return_logits = return_logits
        self.max_batch = engine.max_batch if max_batch is None else max_batch
        if self.max_batch < 1:
            raise EngineError("max_batch must be >= 1")
        self._next_uid = 0
        self._waiting: list[_Sequence] = []  # inserted, not yet prefilled
        self._active: list[_Sequence] = []  # in the batch, same order as the batch cache rows
        self._cache: list | None = None  # the batch cache
        self.steps = 0  # decode steps taken
        self.decode_tokens = 0  # tokens of the steps in which every sequence was past its first token
        self.decode_seconds = 0.0  # ... and those steps' time
        engine.io.reset()
        reset_peak_memory()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._active)

    def __bool__(self) -> bool:
        return len(self) > 0

    @property
    def active(self) -> int:
        return len(self._active)

    def insert(
        self,
        prompt: str | list[int],
        max_tokens: int = 256,
        temp: float = 0.0,
        ignore_eos: bool = False,
    ) -> int:
        """Queue a prompt; returns its uid. It is prefilled at the next step()."""
        if max_tokens < 1:
            raise EngineError("max_tokens must be >= 1")
        if temp < 0:
            raise EngineError("temperature must be >= 0")
        tokens = encode(self.engine, prompt)
        check_context(self.engine, len(tokens), max_tokens)
        uid = self._next_uid
        self._next_uid += 1
        eos = set() if ignore_eos else set(self.engine.tokenizer.eos_token_ids or ())
        self._waiting.append(
            _Sequence(
                uid, tokens, [], max_tokens, temp, eos, self.engine.tokenizer.detokenizer, None, time.perf_counter()
            )
        )
        return uid

    def remove(self, uid: int) -> bool:
        """Drop a sequence (a cancelled request) before its end; False if it is not here."""
        for i, seq in enumerate(self._waiting):
            if seq.uid == uid:
                del self._waiting[i]
                return True
        for i, seq in enumerate(self._active):
            if seq.uid == uid:
                self._drop([i])
                return True
        return False

    # ------------------------------------------------------------------ one step

    def _prefill(self, seq: _Sequence) -> None:
        """All but the last uncomputed prompt token, alone, as mlx-lm's generate_step does."""
        seq.cache, seq.todo = _reused_cache(self.engine, seq.prompt)
        seq.computed = len(seq.todo)
        rest = seq.todo
        while len(rest) > 1:
            n = min(PREFILL_STEP, len(rest) - 1)
            self.engine.model(mx.array(rest[:n])[None], cache=seq.cache)
            mx.eval([c.state for c in seq.cache])
            rest = rest[n:]
            mx.clear_cache()
        seq.todo = rest  # the last token: fed by the next decode step

    def _join(self) -> None:
        room = self.max_batch - len(self._active)
        joining, self._waiting = self._waiting[:room], self._waiting[room:]
        if not joining:
            return
        for seq in joining:
            self._prefill(seq)
        new = _merge([s.cache for s in joining])
        for s in joining:
            s.cache = None
        if self._cache is None:
            self._cache = new
        else:
            for mine, theirs in zip(self._cache, new):
                mine.extend(theirs)
        self._active.extend(joining)

    def _drop(self, rows: list[int]) -> None:
        keep = [i for i in range(len(self._active)) if i not in set(rows)]
        if not keep:
            self._cache = None
        else:
            for c in self._cache:
                c.filter(keep)
        self._active = [self._active[i] for i in keep]

    def _keep_prompt(self, row: int, seq: _Sequence) -> None:
        """Leave a finished sequence's KV cache in the engine's prompt cache, as stream_generate does."""
        pc = self.engine.prompt_cache
        if pc is None:
            return
        # The cache holds the prompt and every generated token but the last (never fed).
        cache = [c.extract(row) for c in self._cache]
        mx.eval([c.state for c in cache])
        pc.insert_cache(_cache_key(self.engine), seq.prompt + seq.tokens[:-1], cache)

    def step(self) -> list[BatchStep]:
        """Prefill what was inserted (room permitting), then one token for every active sequence."""
        self._join()
        if not self._active:
            return []
        t0 = time.perf_counter()
        inputs = mx.array([[s.tokens[-1] if s.tokens else s.todo[-1]] for s in self._active])
        logits = self.engine.model(inputs, cache=self._cache)[:, -1, :]
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        temps = {s.temp for s in self._active}
        if len(temps) == 1:
            sampled = _sampler(temps.pop())(logprobs)
        else:
            sampled = mx.concatenate([_sampler(s.temp)(logprobs[i : i + 1]) for i, s in enumerate(self._active)])
        mx.eval(sampled)
        now = time.perf_counter()
        if all(seq.t_first is not None for seq in self._active):
            # A pure decode step (no sequence's first token, which belongs to its prefill).
            self.decode_seconds += now - t0
            self.decode_tokens += len(self._active)
        rows = None
        if self.return_logits:
            import numpy as np

            rows = np.array(logits.astype(mx.float32))
        self.steps += 1
        out, finished = [], []
        for row, (seq, token) in enumerate(zip(self._active, sampled.tolist())):
            if seq.t_first is None:
                seq.t_first = now
            seq.tokens.append(token)
            if token in seq.eos:
                seq.detok.finalize()
                step = BatchStep(seq.uid, token, seq.detok.last_segment, "stop")
            else:
                seq.detok.add_token(token)
                step = BatchStep(seq.uid, token, seq.detok.last_segment)
                if len(seq.tokens) >= seq.max_tokens:
                    seq.detok.finalize()
                    step.text += seq.detok.last_segment
                    step.finish_reason = "length"
            if rows is not None:
                step.logits = rows[row]
            if step.finish_reason:
                step.stats = self._stats(seq, now)
                self._keep_prompt(row, seq)
                finished.append(row)
            out.append(step)
        if finished:
            self._drop(finished)
        return out

    def _stats(self, seq: _Sequence, now: float) -> dict:
        n = len(seq.tokens)
        ttft = seq.t_first - seq.t_insert
        return {
            "prompt_tokens": len(seq.prompt),
            "generated_tokens": n,
            "time_to_first_token_s": ttft,
            "prompt_tokens_reused": len(seq.prompt) - seq.computed,
            "prefill_tok_per_s": seq.computed / ttft if ttft > 0 else 0.0,
            "decode_tok_per_s": (n - 1) / (now - seq.t_first) if n > 1 and now > seq.t_first else 0.0,
            "batch_size_at_end": len(self._active),
        }

    def stats(self) -> dict:
        """Figures over every step so far: aggregate decode tok/s and the engine's I/O counters."""
        io = self.engine.io.as_dict()
        return {
            "decode_steps": self.steps,
            "decode_tokens": self.decode_tokens,
            "aggregate_decode_tok_per_s": self.decode_tokens / self.decode_seconds if self.decode_seconds else 0.0,
            **io,
            "peak_memory_bytes": peak_memory_bytes(),
            "peak_rss_bytes": _peak_rss_bytes(),
        }


def batch_generate(
    engine: Engine,
    prompts: list[str | list[int]],
    max_tokens: int = 256,
    temp: float = 0.0,
    ignore_eos: bool = False,
    max_batch: int | None = None,
) -> list:
    """Generate a completion for each prompt, decoding them together; returns one Result each."""
    from .generate import Result

    batch = BatchGenerator(engine, max_batch=max_batch or len(prompts))
    uids = [batch.insert(p, max_tokens, temp, ignore_eos) for p in prompts]
    prompts_tokens = {uid: seq.prompt for uid, seq in zip(uids, batch._waiting)}
    tokens: dict[int, list[int]] = {u: [] for u in uids}
    text: dict[int, list[str]] = {u: [] for u in uids}
    stats: dict[int, dict] = {}
    while batch:
        for step in batch.step():
            if step.finish_reason != "stop":
                tokens[step.uid].append(step.token)
            text[step.uid].append(step.text)
            if step.stats is not None:
                stats[step.uid] = step.stats
    totals = batch.stats()
    for s in stats.values():
        s["batch"] = totals
    return [Result(prompts_tokens[u], tokens[u], "".join(text[u]), stats[u]) for u in uids]
