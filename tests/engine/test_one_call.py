"""On GPUs a switch call must run as one call shaped as mlx-lm's: MLX picks its kernels by
shape there, so a call split into groups gives other numbers (seen on an H200: a 17-token
prefill with no expert cache left resident mlx-lm's tokens at the first one). This runs the
GPU read rule on the CPU, where the numbers agree either way, and checks the structure: no
call is ever split, whatever the prompt and the cache, and the tokens stay resident's."""

from __future__ import annotations

import numpy as np
import pytest

import llm_engine
from llm_engine import device, loader, store
from llm_engine.device import ReadPath

from tinymoe import ARCHS, VOCAB

GPU_LIKE = ReadPath("gpu-like", staged=False, inline_cached=False)


def _run(path, prompt, gb):
    with llm_engine.load(path, expert_cache_gb=gb) as engine:
        result = llm_engine.generate(engine, prompt, max_tokens=12, ignore_eos=True)
        banks = {s.capacity for s in engine.stores}
        experts = {s.spec.num_experts for s in engine.stores}
        slots = {s.cache_slots for s in engine.stores}
        per_expert = sum(s.bank_bytes_per_expert for s in engine.stores)  # one slot in every layer
    return result, banks, experts, slots, per_expert


@pytest.mark.parametrize("arch", ARCHS)
def test_gpu_read_rule_never_splits_a_call(checkpoints, monkeypatch, arch):
    path = checkpoints.streamed(arch)
    prompt = np.random.default_rng(7).integers(1, VOCAB, size=300).tolist()  # routes to every expert
    cpu, _, experts, _, per_expert = _run(path, prompt, 0.0)
    small_gb = 3 * per_expert / 2**30  # three slots a layer: far fewer than a prefill chunk needs
    cpu_small, *_ = _run(path, prompt, small_gb)
    # The control: the CPU's rule does split these calls (so the assertions below can fail).
    assert cpu.stats["moe_split_calls"] > 0 and cpu_small.stats["moe_split_calls"] > 0

    for module in (device, loader, store):
        monkeypatch.setattr(module, "read_path", lambda: GPU_LIKE)
    off, banks_off, *_ = _run(path, prompt, 0.0)
    small, _, _, slots_small, _ = _run(path, prompt, small_gb)
    assert off.stats["moe_split_calls"] == 0 and small.stats["moe_split_calls"] == 0
    assert banks_off == experts  # the shared bank holds a whole layer
    assert slots_small == {3}  # the cached layers keep their own small banks
    assert 0 < small.stats["cache_hits"]  # and still hit in them during decode
    assert off.tokens == cpu.tokens == small.tokens == cpu_small.tokens
