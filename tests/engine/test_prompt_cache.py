"""Prompt reuse: a prompt that starts like an earlier one (a follow-up question) computes only its new
tokens, and gives the tokens a fresh run gives, on every architecture."""

from __future__ import annotations

import numpy as np
import pytest
from tinymoe import ARCHS, VOCAB

import llm_engine


def _ids(n: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(1, VOCAB, size=n).tolist()


def _same_as_fresh(reusing, fresh, prompt: list[int], max_tokens: int):
    """The reusing engine's result for `prompt`, whose tokens must be a fresh engine's."""
    got = llm_engine.generate(reusing, prompt, max_tokens=max_tokens, ignore_eos=True)
    assert got.tokens == llm_engine.generate(fresh, prompt, max_tokens=max_tokens, ignore_eos=True).tokens
    return got


@pytest.mark.parametrize("arch", ARCHS)
def test_follow_up_reuses_the_conversation_and_keeps_its_tokens(checkpoints, arch):
    path = checkpoints.streamed(arch)
    first = _ids(24, seed=1)
    with llm_engine.load(path, prompt_cache_entries=4) as reusing, llm_engine.load(path) as fresh:
        turn1 = _same_as_fresh(reusing, fresh, first, 12)
        assert turn1.stats["prompt_tokens_reused"] == 0

        # The follow-up: the first prompt, its answer, then a new question.
        follow_up = first + turn1.tokens + _ids(9, seed=2)
        turn2 = _same_as_fresh(reusing, fresh, follow_up, 16)
        assert turn2.stats["prompt_tokens_reused"] == len(first) + len(turn1.tokens)

        # The same prompt again: all but its last token come from the cache where the cache can be
        # cut back by one token (attention caches); recurrent state cannot, and is recomputed.
        again = llm_engine.generate(reusing, follow_up, max_tokens=16, ignore_eos=True)
        assert again.tokens == turn2.tokens
        assert again.stats["prompt_tokens_reused"] in (len(follow_up) - 1, len(first) + len(turn1.tokens))

        # A prompt that parts from the cached one midway still gives a fresh run's tokens.
        other = first[:10] + _ids(14, seed=3)
        turn3 = _same_as_fresh(reusing, fresh, other, 12)
        assert turn3.stats["prompt_tokens_reused"] in (0, 10)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_follow_up_that_parts_from_the_cached_answer_reuses_what_it_shares(checkpoints, arch):
    # A chat template may write an earlier answer otherwise than the tokens generated for it (thinking left out,
    # other spacing): the follow-up shares the prompt and only the start of the answer with the cached entry.
    path = checkpoints.streamed(arch)
    first = _ids(40, seed=6)
    with llm_engine.load(path, prompt_cache_entries=4) as reusing, llm_engine.load(path) as fresh:
        turn1 = _same_as_fresh(reusing, fresh, first, 12)
        for kept, seed in ((5, 7), (0, 8)):
            follow_up = first + turn1.tokens[:kept] + _ids(15, seed=seed)
            assert follow_up[len(first) + kept] != turn1.tokens[kept]  # parts from the answer right there
            got = _same_as_fresh(reusing, fresh, follow_up, 10)
            # A KV cache is cut back to what they share; a recurrent state or a slid window, which cannot be,
            # restarts from the copy kept at the end of the prompt (all of it but its last token).
            assert got.stats["prompt_tokens_reused"] in (len(first) + kept, len(first) - 1)
            if arch in ("qwen3_moe", "mixtral", "deepseek_v3"):
                assert got.stats["prompt_tokens_reused"] == len(first) + kept


def test_a_consumer_that_stops_early_leaves_a_usable_cache(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    prompt = _ids(20, seed=4)
    with llm_engine.load(path, prompt_cache_entries=2) as engine, llm_engine.load(path) as fresh:
        taken = []
        for step in llm_engine.stream_generate(engine, prompt, max_tokens=30, ignore_eos=True):
            taken.append(step.token)
            if len(taken) == 5:
                break  # as a client that disconnects, or a stop string
        follow_up = prompt + taken + _ids(6, seed=5)
        got = llm_engine.generate(engine, follow_up, max_tokens=10, ignore_eos=True)
        assert got.stats["prompt_tokens_reused"] >= len(prompt) + len(taken)
        assert got.tokens == llm_engine.generate(fresh, follow_up, max_tokens=10, ignore_eos=True).tokens


def test_prompt_cache_size_is_checked(checkpoints):
    with pytest.raises(llm_engine.EngineError, match="prompt cache"):
        llm_engine.load(checkpoints.streamed("qwen3_moe"), prompt_cache_entries=-1)
