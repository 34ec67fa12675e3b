"""The hot list: routing counts kept between runs, warming the expert cache of the next one."""

from __future__ import annotations

import json
import shutil

import numpy as np

import llm_engine
from llm_engine import hot_list

from engine_testing import random_prompt

SLOTS = 8


def _cache_gb(path) -> float:
    with llm_engine.load(path, prefetch=False) as probe:
        return SLOTS * sum(s.bank_bytes_per_expert for s in probe.stores) / 2**30


def test_a_saved_hot_list_warms_the_next_run_and_changes_no_token(checkpoints, tmp_path):
    path = checkpoints.streamed("qwen3_moe")
    gb = _cache_gb(path)
    keep = tmp_path / "hot.json"
    prompt = random_prompt(40, seed=11)
    with llm_engine.load(path, expert_cache_gb=gb, hot_list=keep) as first:
        assert first.hot_list.warm_reads == 0  # no file yet
        cold = llm_engine.generate(first, prompt, max_tokens=16, ignore_eos=True)
        uses = [s.policy.uses.copy() for s in first.stores]
    saved = json.loads(keep.read_text())
    assert [entry["module"] for entry in saved["layers"]] == [s.spec.module for s in first.stores]
    np.testing.assert_allclose([entry["uses"] for entry in saved["layers"]], uses)

    with llm_engine.load(path, expert_cache_gb=gb, hot_list=keep) as second:
        assert second.hot_list.warm_reads == len(second.stores) * SLOTS  # each cache filled, in the background
        warm = llm_engine.generate(second, prompt, max_tokens=16, ignore_eos=True)
    assert warm.tokens == cold.tokens
    # The cache held the hottest experts before the first call: fewer misses than starting empty.
    assert warm.stats["cache_misses"] < cold.stats["cache_misses"]
    assert warm.stats["prefetch_used"] > 0  # warmed experts the calls used (not counted as cache hits)
    # The second run's counts were added to half of the first's.
    again = json.loads(keep.read_text())
    total = np.array([entry["uses"] for entry in again["layers"]])
    assert total.sum() > np.array(uses).sum()


def test_a_hot_list_for_another_model_or_broken_is_ignored_and_replaced(checkpoints, tmp_path):
    path = checkpoints.streamed("qwen3_moe")
    gb = _cache_gb(path)
    other = tmp_path / "other.json"
    with llm_engine.load(checkpoints.streamed("mixtral"), expert_cache_gb=1.0, hot_list=other) as engine:
        llm_engine.generate(engine, [5, 6, 7], max_tokens=4, ignore_eos=True)
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1, "layers": [')
    for keep in (other, broken):
        with llm_engine.load(path, expert_cache_gb=gb, hot_list=keep) as engine:
            assert engine.hot_list.warm_reads == 0
            result = llm_engine.generate(engine, [5, 6, 7], max_tokens=4, ignore_eos=True)
            modules = [s.spec.module for s in engine.stores]
        assert result.tokens
        assert hot_list.read(keep, engine.stores) is not None  # rewritten for this model
        assert [entry["module"] for entry in json.loads(keep.read_text())["layers"]] == modules


def test_a_hot_list_that_cannot_be_written_does_not_stop_the_engine(checkpoints, tmp_path, capsys):
    path = checkpoints.streamed("qwen3_moe")
    keep = tmp_path / "missing-folder" / "hot.json"
    with llm_engine.load(path, expert_cache_gb=_cache_gb(path), hot_list=keep) as engine:
        result = llm_engine.generate(engine, [5, 6, 7], max_tokens=4, ignore_eos=True)
        engine.save_hot_list(force=True)
    assert result.tokens and not keep.exists()
    assert capsys.readouterr().err.count("cannot save the hot list") == 1  # said once, not at every save


def test_model_run_keeps_the_hot_list_beside_the_model_unless_told_not_to(checkpoints, tmp_path):
    from click.testing import CliRunner

    from appliance.cli.model import model as model_cli

    model = tmp_path / "model"
    shutil.copytree(checkpoints.streamed("qwen3_moe"), model)
    (model / "hot-experts.json").unlink(missing_ok=True)  # left by other tests' runs of the shared checkpoint
    args = ["run", str(model), "--prompt", "one two", "--max-tokens", "3"]
    for extra in (["--expert-cache-gb", "0.01", "--no-hot-list"], []):  # no cache: nothing to warm, no file
        r = CliRunner().invoke(model_cli, args + extra)
        assert r.exit_code == 0, r.output
        assert not (model / "hot-experts.json").exists()
    r = CliRunner().invoke(model_cli, args + ["--expert-cache-gb", "0.01"])
    assert r.exit_code == 0, r.output
    saved = json.loads((model / "hot-experts.json").read_text())
    assert len(saved["layers"]) == 2 and sum(sum(entry["uses"]) for entry in saved["layers"]) > 0
    assert llm_engine.verify(model) == []  # the extra file does not make the model unsound
