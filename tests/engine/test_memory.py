"""--memory-gb: the engine sizes its expert cache from the memory it is given and stays within it.

A 12-layer model of Qwen3-30B-A3B's shapes (32 experts a layer instead of 128, so it builds in
seconds; 1.2 GB of experts) runs a 200-token prompt, which routes every layer to every expert with
enough rows each for a prefill's own path (dequantize + matmul on OpenBLAS, dequant_matmul.py), in a
process of its own, so its peak RSS (VmHWM) is the engine's alone. The budget, 1 GB, is well
below what caching every expert would take: the control run with such a cache goes over it, so
the test fails if the engine's sizing ever stops keeping the cache within the budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import llm_engine
from llm_engine.memory import plan_memory

import real_shapes

ROOT = Path(__file__).resolve().parents[2]
BUDGET_GB = 1.0

CHILD = """
import json, sys
import numpy as np
import llm_engine
path, mode, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
if mode == "memory":
    engine = llm_engine.load(path, memory_gb=value, context_tokens=512)
else:
    engine = llm_engine.load(path, expert_cache_gb=value)
prompt = np.random.default_rng(0).integers(1, 290, size=200).tolist()
r = llm_engine.generate(engine, prompt, max_tokens=4, ignore_eos=True)
plan = engine.memory_plan.as_dict() if engine.memory_plan else None
print(json.dumps({"plan": plan, "slots": engine.cache_slots, "peak_rss": r.stats["peak_rss_bytes"],
                  "hits": r.stats["cache_hits"], "resident": engine.resident_bytes(),
                  "bank": engine.bank_bytes()}))
"""


def _child(path: Path, mode: str, value: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode, str(value)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def twelve_layers(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-shapes")
    mlx_dir = real_shapes.build(root / "mlx", layers=12, experts=32)
    llm_engine.convert(mlx_dir, root / "stream", progress=False)
    return root / "stream"


def test_peak_rss_stays_within_the_memory_budget(twelve_layers):
    budget = int(BUDGET_GB * 2**30)
    run = _child(twelve_layers, "memory", BUDGET_GB)
    plan = run["plan"]
    assert plan["budget"] == budget and plan["total"] <= budget
    # The budget leaves room for a real cache, which the prompt fills and the decode uses.
    assert run["slots"] == plan["cache_slots"] >= plan["top_k"] and run["hits"] > 0
    assert run["bank"] == plan["cache_bytes"]
    assert run["resident"] == plan["resident"]  # the forecast from the headers is exact
    assert run["peak_rss"] <= 1.1 * budget, (run["peak_rss"] / 2**30, plan)

    # Control: caching every expert, as an engine that ignored the budget might, breaks it.
    every_expert = 32 * plan["bytes_per_expert"] / 2**30
    control = _child(twelve_layers, "cache", every_expert)
    assert control["slots"] == 32
    assert control["peak_rss"] > 1.1 * budget


def test_a_budget_too_small_is_refused_with_what_it_needs(twelve_layers):
    with pytest.raises(llm_engine.EngineError, match=r"too little .* needs at least \d+\.\d\d GB"):
        plan_memory(twelve_layers, int(0.2 * 2**30), baseline=80 << 20, context_tokens=512)
    small = plan_memory(twelve_layers, int(0.7 * 2**30), baseline=80 << 20, context_tokens=512)
    large = plan_memory(twelve_layers, int(3 * 2**30), baseline=80 << 20, context_tokens=512)
    assert small.cache_slots < large.cache_slots == 32
    assert large.total <= 3 * 2**30 and small.total <= 0.7 * 2**30
    # A longer context takes memory from the cache (its prefill's attention scores, its KV cache).
    longer = plan_memory(twelve_layers, int(3 * 2**30), baseline=80 << 20, context_tokens=4096)
    assert 0 < longer.cache_slots < large.cache_slots and longer.working > large.working


def test_memory_options_are_checked(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    with pytest.raises(llm_engine.EngineError, match="not both"):
        llm_engine.load(path, memory_gb=1.0, expert_cache_gb=0.5)
    for bad in (0, -1, "lots"):
        with pytest.raises(llm_engine.EngineError, match="--memory-gb"):
            llm_engine.load(path, memory_gb=bad)
    with llm_engine.load(path, memory_gb="auto", context_tokens=64) as engine:
        assert engine.memory_plan is not None and engine.cache_slots > 0  # plenty free: a cache
        llm_engine.generate(engine, [1, 2, 3], max_tokens=8, ignore_eos=True)
        with pytest.raises(llm_engine.EngineError, match="64 tokens the memory budget"):
            llm_engine.generate(engine, list(range(1, 60)), max_tokens=8)
        with pytest.raises(llm_engine.EngineError, match="64 tokens"):
            llm_engine.BatchGenerator(engine).insert(list(range(1, 60)), max_tokens=8)
