"""Text generation on a loaded Engine, with I/O and speed statistics."""

from __future__ import annotations

import copy
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

import mlx.core as mx

from .device import peak_memory_bytes, reset_peak_memory
from .errors import EngineError
from .loader import Engine

PREFILL_STEP = 2048  # as mlx-lm's generate_step, so results match it step for step


@dataclass
class Step:
    token: int
    text: str  # the text this token completes (may be empty mid-character)
    finish_reason: str | None = None  # "length" or "stop" on the last step
    stats: dict | None = None  # filled on the last step


@dataclass
class Result:
    prompt_tokens: list[int]
    tokens: list[int]
    text: str
    stats: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "tokens": self.tokens, "text": self.text, "stats": self.stats}


def encode(engine: Engine, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, str):
        tokens = engine.tokenizer.encode(prompt)
    else:
        tokens = [int(t) for t in prompt]
    if not tokens:
        raise EngineError("the prompt is empty")
    vocab = engine.model.args.vocab_size if hasattr(engine.model.args, "vocab_size") else None
    if vocab and (min(tokens) < 0 or max(tokens) >= vocab):
        raise EngineError(f"prompt token ids must be in [0, {vocab})")
    return tokens


def check_context(engine: Engine, prompt_tokens: int, max_tokens: int) -> None:
    """With --memory-gb, a sequence longer than the memory plan's context would outgrow it."""
    plan = engine.memory_plan
    if plan is not None and prompt_tokens + max_tokens > plan.context_tokens:
        raise EngineError(
            f"the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) is longer than the "
            f"{plan.context_tokens} tokens the memory budget was planned for (--context-tokens)"
        )


def _peak_rss_bytes() -> int:
    # Linux keeps ru_maxrss across exec (a child inherits its parent's peak); VmHWM is this
    # process's own high-water mark.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _cache_key(engine: Engine) -> str:
    return str(engine.path)


def _reused_cache(engine: Engine, prompt: list[int]) -> tuple[list, list[int]]:
    """A KV cache for `prompt` and the tokens still to compute: the nearest cached prefix when
    the engine keeps a prompt cache, else a fresh cache and the whole prompt."""
    from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

    if engine.prompt_cache is not None:
        cache, todo = engine.prompt_cache.fetch_nearest_cache(_cache_key(engine), prompt)
        if cache is not None and not todo:  # the whole prompt is cached: its last token's logits are not
            if can_trim_prompt_cache(cache):
                trim_prompt_cache(cache, 1)
                return cache, prompt[-1:]
        elif cache is not None:
            return cache, todo
    return make_prompt_cache(engine.model), prompt


def _prefill_keeping_the_prompt(engine: Engine, cache: list, prompt: list[int], todo: list[int]) -> list[int]:
    """Compute all of `todo` but its last token into `cache`, in generate_step's own chunks (so the result is
    the same), and keep a copy there when the cache cannot be cut back; returns what generate_step has left.

    A KV cache is trimmed to the part a new prompt shares with a cached prompt+answer, but a recurrent state, or
    a sliding window that has slid, cannot be: without this copy a follow-up whose template writes the earlier
    answer otherwise than its tokens (thinking dropped, other spacing) would reuse nothing."""
    from mlx_lm.generate import generation_stream
    from mlx_lm.models.cache import can_trim_prompt_cache

    if engine.prompt_cache is None or len(todo) < 2:
        return todo
    with mx.stream(generation_stream):
        for i in range(0, len(todo) - 1, PREFILL_STEP):
            engine.model(mx.array(todo[i : min(i + PREFILL_STEP, len(todo) - 1)])[None], cache=cache)
            mx.eval([c.state for c in cache])
            mx.clear_cache()
    if not can_trim_prompt_cache(cache):
        engine.prompt_cache.insert_cache(_cache_key(engine), prompt[:-1], copy.deepcopy(cache))
    return todo[-1:]


def stream_generate(
    engine: Engine,
    prompt: str | list[int],
    max_tokens: int = 256,
    temp: float = 0.0,
    seed: int | None = None,
    ignore_eos: bool = False,
) -> Iterator[Step]:
    """Yield generated tokens one by one. Greedy when temp == 0.

    The last Step carries finish_reason and stats (tok/s of prefill and decode, time to
    first token, bytes read, cache hit rate, peak memory).
    """
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    if max_tokens < 1:
        raise EngineError("max_tokens must be >= 1")
    if temp < 0:
        raise EngineError("temperature must be >= 0")
    prompt_tokens = encode(engine, prompt)
    check_context(engine, len(prompt_tokens), max_tokens)
    if seed is not None:
        mx.random.seed(seed)
    eos = set() if ignore_eos else set(engine.tokenizer.eos_token_ids or ())
    detok = engine.tokenizer.detokenizer
    detok.reset()
    engine.io.reset()
    reset_peak_memory()

    t0 = time.perf_counter()
    t_first = None
    n = 0
    cache, todo = _reused_cache(engine, prompt_tokens)
    steps = generate_step(
        mx.array(_prefill_keeping_the_prompt(engine, cache, prompt_tokens, todo)),
        engine.model,
        max_tokens=max_tokens,
        sampler=make_sampler(temp=temp),
        prefill_step_size=PREFILL_STEP,
        prompt_cache=cache,
    )
    # Every token generate_step yields has been fed to the model (it computes one step
    # ahead), so the KV cache holds the prompt and these; kept for the next prompt.
    fed, keep = list(prompt_tokens), False
    pending = None
    try:
        for token, _ in steps:
            fed.append(token)
            if t_first is None:
                t_first = time.perf_counter()
            if pending is not None:
                keep = True  # a consumer that stops here leaves a consistent cache
                yield pending
                keep = False
            n += 1
            if token in eos:
                detok.finalize()
                pending = Step(token, detok.last_segment, "stop")
                break
            detok.add_token(token)
            pending = Step(token, detok.last_segment)
        keep = True
    finally:
        if keep and engine.prompt_cache is not None:
            steps.close()
            mx.eval([c.state for c in cache])
            engine.prompt_cache.insert_cache(_cache_key(engine), fed, cache)
    t_end = time.perf_counter()
    if pending is None:
        return
    if pending.finish_reason is None:
        detok.finalize()
        pending.text += detok.last_segment
        pending.finish_reason = "length"
    ttft = (t_first or t_end) - t0
    stats = {
        "prompt_tokens": len(prompt_tokens),
        "generated_tokens": n,
        "time_to_first_token_s": ttft,
        "prompt_tokens_reused": len(prompt_tokens) - len(todo),
        "prefill_tok_per_s": len(todo) / ttft if ttft > 0 else 0.0,
        "decode_tok_per_s": (n - 1) / (t_end - t_first) if n > 1 and t_end > t_first else 0.0,
        **engine.io.as_dict(),
        "bytes_read_per_token": engine.io.bytes_read / max(n, 1),
        "expert_cache_slots_per_layer": engine.cache_slots,
        "peak_memory_bytes": peak_memory_bytes(),
        "peak_rss_bytes": _peak_rss_bytes(),
    }
    pending.stats = stats
    yield pending


def generate(
    engine: Engine,
    prompt: str | list[int],
    max_tokens: int = 256,
    temp: float = 0.0,
    seed: int | None = None,
    ignore_eos: bool = False,
) -> Result:
    """Generate a whole completion; see stream_generate."""
    prompt_tokens = encode(engine, prompt)
    tokens, text, stats = [], [], {}
    for step in stream_generate(engine, prompt_tokens, max_tokens, temp, seed, ignore_eos):
        if step.finish_reason != "stop":
            tokens.append(step.token)
        text.append(step.text)
        if step.stats is not None:
            stats = step.stats
    return Result(prompt_tokens, tokens, "".join(text), stats)
