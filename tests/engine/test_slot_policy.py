"""The expert slot cache: policy, and what it does to reads during generation."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

import llm_engine
from llm_engine.slot_policy import SlotPolicy


def test_without_retention_every_call_reads_everything():
    p = SlotPolicy(num_experts=8, capacity=4, retain=False)
    for _ in range(3):
        plan = p.plan(np.array([1, 2, 5]))
        assert plan.misses.tolist() == [0, 1, 2]
        assert sorted(plan.slots.tolist()) == [0, 1, 2]


def test_retained_experts_hit_and_keep_their_slot():
    p = SlotPolicy(num_experts=8, capacity=4, retain=True)
    first = p.plan(np.array([1, 2, 5]))
    again = p.plan(np.array([2, 5]))
    assert again.misses.size == 0
    assert again.slots.tolist() == [first.slots[1], first.slots[2]]


def test_frequent_experts_survive_a_one_off_expert():
    p = SlotPolicy(num_experts=16, capacity=3, retain=True)
    for _ in range(10):
        p.plan(np.array([0, 1]))  # experts 0 and 1 are popular
    p.plan(np.array([7]))  # a one-off takes the free slot
    p.plan(np.array([8]))  # evicts the one-off, not a popular expert
    assert p.slot_of[0] >= 0 and p.slot_of[1] >= 0
    assert p.slot_of[7] == -1 and p.slot_of[8] >= 0
    # Slots in use by the current call are never evicted.
    plan = p.plan(np.array([3, 4, 5]))
    assert sorted(plan.slots.tolist()) == [0, 1, 2]


def test_more_experts_than_slots_is_refused():
    p = SlotPolicy(num_experts=8, capacity=2, retain=True)
    try:
        p.plan(np.array([1, 2, 3]))
    except ValueError as e:
        assert "3 experts requested" in str(e)
    else:
        raise AssertionError("no error")


def test_cache_reduces_reads_and_reports_hit_rate(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    results = {}
    for gb in (0.0, 1.0):
        # Without prefetch, whose wrong guesses are reads too (tests/engine/test_prefetch.py).
        with llm_engine.load(path, expert_cache_gb=gb, prefetch=False) as engine:
            results[gb] = llm_engine.generate(engine, "The quick brown fox", max_tokens=24, ignore_eos=True)
    off, on = results[0.0], results[1.0]
    assert on.tokens == off.tokens
    assert off.stats["cache_hit_rate"] == 0.0 and on.stats["cache_hit_rate"] > 0.5
    assert on.stats["bytes_read"] < off.stats["bytes_read"]
    # Without a cache each layer reads exactly its routed experts: one prefill chunk (the
    # prompt but its last token; between top-k and all 16 experts), then top-k for each of
    # the 25 single-token steps mlx-lm's generate_step runs (last prompt token + 24).
    layers, top_k = 2, 4
    assert off.stats["moe_calls"] == layers * 26
    prefill_reads = off.stats["expert_reads"] - layers * top_k * 25
    assert layers * top_k <= prefill_reads <= layers * 16
    assert off.stats["bytes_read"] == off.stats["expert_reads"] * 6912


def test_experts_per_token_override_reads_fewer_experts(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    with llm_engine.load(path) as full, llm_engine.load(path, experts_per_token=1) as one:
        a = llm_engine.generate(full, [7, 8, 9], max_tokens=16, ignore_eos=True)
        b = llm_engine.generate(one, [7, 8, 9], max_tokens=16, ignore_eos=True)
    assert len(b.tokens) == 16
    assert b.stats["expert_reads"] < a.stats["expert_reads"] / 2


def test_without_cache_layers_share_one_bank_of_top_k_experts(checkpoints):
    """Streaming memory is one layer's top-k experts, whatever the layer count or prompt (two with prefetch,
    tests/engine/test_prefetch.py)."""
    layers, top_k, num_experts = 2, 4, 16
    with llm_engine.load(checkpoints.streamed("qwen3_moe"), prefetch=False) as engine:
        per_expert = engine.stores[0].bank_bytes_per_expert
        result = llm_engine.generate(engine, list(range(1, 301)), max_tokens=3, ignore_eos=True)
        assert len({id(s.bank) for s in engine.stores}) == 1
        assert engine.bank_bytes() == top_k * per_expert
    # The 299-token prefill chunk routed to every expert of each layer, four times the bank:
    # it ran in bank-sized groups, reading each expert once; then top-k for each of the four
    # single-token steps (the last prompt token + 3).
    assert result.stats["expert_reads"] == layers * (num_experts + top_k * 4)


def test_with_cache_each_layer_keeps_its_own_slots(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    with llm_engine.load(path) as probe:
        per_layer = sum(s.bank_bytes_per_expert for s in probe.stores)
    with llm_engine.load(path, expert_cache_gb=10 * per_layer / 2**30) as engine:
        assert [s.bank.size for s in engine.stores] == [10, 10]
        assert len({id(s.bank) for s in engine.stores}) == 2
        result = llm_engine.generate(engine, list(range(1, 301)), max_tokens=3, ignore_eos=True)
    # More experts than slots in the prefill chunk: still each read once, and hits later.
    assert result.tokens and result.stats["cache_hits"] > 0


def test_disk_reads_and_page_cache_copies_give_the_same_tokens(checkpoints):
    """Experts found in the page cache are copied on the ordering thread; the others are read
    in parallel by the I/O pool (always, with drop_page_cache). Both fill the bank alike."""
    path = checkpoints.streamed("mixtral")
    prompt = list(range(3, 40))
    with llm_engine.load(path) as cached, llm_engine.load(path, drop_page_cache=True) as disk:
        a = llm_engine.generate(cached, prompt, max_tokens=12, ignore_eos=True)
        b = llm_engine.generate(disk, prompt, max_tokens=12, ignore_eos=True)
    assert a.tokens == b.tokens
    assert a.stats["bytes_read"] == b.stats["bytes_read"] > 0


def test_a_prefill_leaves_the_prompts_hottest_experts_in_the_cache(checkpoints):
    """A prefill call routed to more experts than a layer caches runs its coldest experts first, so the
    cache ends up holding the experts most of the prompt's tokens went to, for the decode after it."""
    path = checkpoints.streamed("qwen3_moe")
    with llm_engine.load(path, prefetch=False) as probe:
        per_layer = sum(s.bank_bytes_per_expert for s in probe.stores)
    with llm_engine.load(path, expert_cache_gb=6 * per_layer / 2**30, prefetch=False) as engine:
        routed = {}
        for store in engine.stores:
            original = store.plan_call

            def spy(experts, counts, original=original, store=store):
                routed[store.spec.module] = dict(zip(experts.tolist(), counts.tolist()))
                return original(experts, counts)

            store.plan_call = spy
        engine.model(mx.array([list(range(1, 201))]))  # one prefill call a layer, over 16 experts
        for store in engine.stores:
            counts = routed[store.spec.module]
            assert len(counts) > store.capacity == 6
            held = {int(e) for e in store.policy.expert_in if e >= 0}
            hottest = sorted(counts, key=counts.get, reverse=True)
            # Ties aside, the six experts with the most tokens.
            assert min(counts[e] for e in held) >= counts[hottest[5]], (counts, held)
