"""Next-layer prefetch: each MoE layer applies the next layer's router to its own input and reads the
experts it picks while it computes. The next layer still routes for itself, so a guess, right or wrong,
never changes a token or a logit."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import llm_engine
from llm_engine.architectures import get_module

from engine_testing import greedy_with_logits, random_prompt, resident_reference
from tinymoe import ARCHS

NEW_TOKENS = 24
SMALL_CACHE_SLOTS = 6


def _small_cache_gb(path) -> float:
    with llm_engine.load(path, prefetch=False) as probe:
        return SMALL_CACHE_SLOTS * sum(s.bank_bytes_per_expert for s in probe.stores) / 2**30


def _linked(engine) -> list:
    """The streaming switches that guess a next layer: all but the last."""
    return [get_module(engine.model, s.spec.module) for s in engine.stores[:-1]]


def _perturb_guesses(engine, how: str) -> None:
    """Make every layer's guess of the next one worse, in the guess only: the router applied to its input
    with noise as large as the input ("noisy"), or experts drawn at random ("random")."""
    rng = np.random.default_rng(0)
    for switch in _linked(engine):
        assert switch.guess_next is not None, switch.store.spec.module
        right, n = switch.guess_next, switch.next_store.spec.num_experts
        if how == "noisy":

            def guess(x, right=right):
                scale = float(mx.sqrt(mx.mean(x.astype(mx.float32) ** 2)))
                return right(x + mx.array(rng.normal(size=x.shape) * scale, dtype=x.dtype))
        else:

            def guess(x, right=right, n=n):
                k = right(x).shape[-1]
                return mx.array(np.argsort(rng.random((*x.shape[:-1], n)), axis=-1)[..., :k].astype(np.uint32))

        object.__setattr__(switch, "guess_next", guess)


@pytest.mark.parametrize("arch", ARCHS)
def test_prefetch_on_and_off_give_resident_tokens_and_logits(checkpoints, arch):
    reference = resident_reference(checkpoints, arch)
    path = checkpoints.streamed(arch)
    small = _small_cache_gb(path)
    for gb in (0.0, small):
        with llm_engine.load(path, expert_cache_gb=gb, prefetch=True) as on:
            assert all(s.guess_next is not None for s in _linked(on)), arch
            for length in (1, 17, 300):
                prompt = random_prompt(length, seed=100 + length)
                want_tokens, want_logits = greedy_with_logits(reference, prompt, NEW_TOKENS)
                on.io.reset()
                got_tokens, got_logits = greedy_with_logits(on.model, prompt, NEW_TOKENS)
                assert got_tokens == want_tokens, (arch, gb, length)
                np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=1e-4, err_msg=f"{arch} {gb} {length}")
                # The guesses were made and read, and some were right.
                assert on.io.prefetch_reads > 0 and on.io.prefetch_used > 0, (arch, gb, length)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("how", ["noisy", "random"])
def test_mispredicted_prefetch_changes_nothing(checkpoints, arch, how):
    reference = resident_reference(checkpoints, arch)
    path = checkpoints.streamed(arch)
    prompt = random_prompt(17, seed=7)
    want_tokens, want_logits = greedy_with_logits(reference, prompt, NEW_TOKENS)
    for gb in (0.0, _small_cache_gb(path)):
        with llm_engine.load(path, expert_cache_gb=gb, prefetch=True) as engine:
            _perturb_guesses(engine, how)
            got_tokens, got_logits = greedy_with_logits(engine.model, prompt, NEW_TOKENS)
            stats = engine.io.as_dict()
        assert got_tokens == want_tokens, (arch, how, gb)
        np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=1e-4, err_msg=f"{arch} {how} {gb}")
        # Guesses were read ahead, and some of them were wrong: the calls read what they missed.
        assert 0 < stats["prefetch_reads"] and stats["prefetch_used"] < stats["prefetch_reads"], stats


def test_experts_read_ahead_into_a_bank_another_layer_then_used_are_read_again(checkpoints):
    """Layers without a cache share banks: what was read ahead for one layer is gone once another layer
    sharing its bank has run, and the layer must read it again, not compute from someone else's bytes."""
    path = checkpoints.streamed("qwen3_moe")
    prompt = random_prompt(9, seed=3)
    with llm_engine.load(path, prefetch=False) as engine:
        assert len({id(s.bank) for s in engine.stores}) == 1  # one bank for both layers
        want, _ = greedy_with_logits(engine.model, prompt, 8)
        # Read experts ahead for layer 1 now: layer 0 runs first and writes the same bank.
        engine.stores[1].prefetch(np.arange(engine.stores[1].prefetch_capacity))
        engine.io.reset()
        got, _ = greedy_with_logits(engine.model, prompt, 8)
        assert engine.io.prefetch_used == 0
    assert got == want


def test_prefetch_costs_a_second_bank_only_without_a_cache(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    with llm_engine.load(path, prefetch=True) as on, llm_engine.load(path, prefetch=False) as off:
        assert len({id(s.bank) for s in on.stores}) == 2  # the two layers take turns
        assert on.bank_bytes() == 2 * off.bank_bytes()
        with llm_engine.load(path, expert_cache_gb=_small_cache_gb(path), prefetch=True) as cached:
            assert cached.bank_bytes() == sum(s.bank_bytes_per_expert * SMALL_CACHE_SLOTS for s in cached.stores)
    # The memory plan counts the second bank.
    from llm_engine.memory import plan_memory

    plans = [plan_memory(path, 1 << 30, 0, prefetch=p) for p in (False, True)]
    assert plans[1].bank == 2 * plans[0].bank == on.bank_bytes()
