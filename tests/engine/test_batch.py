"""Batched decoding must be exact: every sequence of a batch gets the greedy tokens of its single
run, and logits within 1e-4 of resident mlx-lm's (fp32 on the CPU), on the five architectures and
at every expert cache size; each step reads the union of the batch's experts once."""

from __future__ import annotations

import numpy as np
import pytest

import llm_engine

from engine_testing import greedy_with_logits, random_prompt, resident_reference
from tinymoe import ARCHS

# Different lengths (left padding in the batch cache), the longest past gpt-oss's sliding
# window, and different max_tokens so sequences leave the batch at different steps.
PROMPT_LENGTHS = (1, 9, 40, 300)
MAX_TOKENS = (24, 12, 20, 16)
SMALL_CACHE_SLOTS = 6


def _run_batch(engine, prompts, max_tokens, insert_late: int | None = None):
    """Decode every prompt in one BatchGenerator; the prompt at insert_late joins after 3 steps."""
    batch = llm_engine.BatchGenerator(engine, max_batch=len(prompts), return_logits=True)
    uids = {}
    for i, (p, n) in enumerate(zip(prompts, max_tokens)):
        if i != insert_late:
            uids[batch.insert(p, max_tokens=n, ignore_eos=True)] = i
    tokens = {i: [] for i in range(len(prompts))}
    logits = {i: [] for i in range(len(prompts))}
    widths = []
    while batch:
        if insert_late is not None and batch.steps == 3:
            uids[batch.insert(prompts[insert_late], max_tokens=max_tokens[insert_late], ignore_eos=True)] = insert_late
            insert_late = None
        steps = batch.step()
        widths.append(len(steps))
        for s in steps:
            tokens[uids[s.uid]].append(s.token)
            logits[uids[s.uid]].append(s.logits)
    return tokens, {i: np.stack(v) for i, v in logits.items()}, widths, batch


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_decode_matches_single_runs(checkpoints, arch):
    reference = resident_reference(checkpoints, arch)
    path = checkpoints.streamed(arch)
    prompts = [random_prompt(n, seed=10 + n) for n in PROMPT_LENGTHS]
    want = [greedy_with_logits(reference, p, n) for p, n in zip(prompts, MAX_TOKENS)]
    with llm_engine.load(path) as probe:
        per_expert = sum(s.bank_bytes_per_expert for s in probe.stores)
    sizes = {"off": 0.0, "small": SMALL_CACHE_SLOTS * per_expert / 2**30, "large": 1.0}
    for name, gb in sizes.items():
        with llm_engine.load(path, expert_cache_gb=gb, max_batch=len(prompts)) as engine:
            late = 2 if name == "off" else None  # one sequence joins a batch already decoding
            tokens, logits, widths, _ = _run_batch(engine, prompts, MAX_TOKENS, insert_late=late)
            single = llm_engine.generate(engine, prompts[1], max_tokens=MAX_TOKENS[1], ignore_eos=True)
        assert max(widths) == len(prompts), (arch, name, widths)  # they really decoded together
        assert single.tokens == want[1][0], (arch, name)
        for i, (want_tokens, want_logits) in enumerate(want):
            assert tokens[i] == want_tokens, (arch, name, i)
            np.testing.assert_allclose(
                logits[i], want_logits, rtol=0, atol=1e-4, err_msg=f"{arch} cache={name} sequence {i}"
            )


def test_a_step_reads_the_union_of_the_batch_experts_once(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    prompts = [random_prompt(5, seed=s) for s in range(4)]
    # Without prefetch, whose wrong guesses would be reads too.
    with llm_engine.load(path, max_batch=4, prefetch=False) as engine:
        batch = llm_engine.BatchGenerator(engine)
        for p in prompts:
            batch.insert(p, max_tokens=8, ignore_eos=True)
        batch.step()  # prefill and the first token of each
        routed = []
        layers = [s for s in engine.stores]
        for store in layers:
            original = store.plan_call

            def spy(experts, counts=None, original=original):
                routed.append(len(experts))
                return original(experts, counts)

            store.plan_call = spy
        before = engine.io.expert_reads
        steps = batch.step()
        reads = engine.io.expert_reads - before
    assert len(steps) == 4
    assert len(routed) == len(layers)  # one switch call per layer for the four sequences
    assert reads == sum(routed)  # each expert of the union read once (no cache: every one is a read)
    assert max(routed) > engine.config["num_experts_per_tok"]  # the union is wider than one sequence's


def test_remove_and_eos_and_results(checkpoints):
    path = checkpoints.streamed("mixtral")
    with llm_engine.load(path, max_batch=3) as engine:
        prompts = [random_prompt(7, seed=s) for s in range(3)]
        singles = [llm_engine.generate(engine, p, max_tokens=10, ignore_eos=True).tokens for p in prompts]
        results = llm_engine.batch_generate(engine, prompts, max_tokens=10, ignore_eos=True)
        assert [r.tokens for r in results] == singles
        assert all(r.stats["generated_tokens"] == 10 for r in results)
        assert results[0].stats["batch"]["aggregate_decode_tok_per_s"] > 0
        assert results[0].text == engine.tokenizer.decode(results[0].tokens)

        batch = llm_engine.BatchGenerator(engine)
        a = batch.insert(prompts[0], max_tokens=10, ignore_eos=True)
        b = batch.insert(prompts[1], max_tokens=10, ignore_eos=True)
        batch.step()
        assert batch.remove(a) and not batch.remove(a)
        got = []
        while batch:
            got += [s.token for s in batch.step() if s.uid == b]
        assert len(got) == 9 and got == singles[1][1:]

        # A sequence whose first token is EOS ends there with "stop".
        eos_engine_tokens = singles[2][0]
        engine.tokenizer.eos_token_ids = {eos_engine_tokens}
        batch = llm_engine.BatchGenerator(engine)
        batch.insert(prompts[2], max_tokens=10)
        steps = batch.step()
        assert steps[0].finish_reason == "stop" and not batch

        with pytest.raises(llm_engine.EngineError):
            batch.insert(prompts[0], max_tokens=0)
        with pytest.raises(llm_engine.EngineError):
            llm_engine.BatchGenerator(engine, max_batch=0)
        with pytest.raises(llm_engine.EngineError):
            llm_engine.load(path, max_batch=0)
