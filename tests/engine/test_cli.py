"""`almanac model convert|run|info|verify` through click, and once as a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from appliance.cli.model import model

ROOT = Path(__file__).resolve().parents[2]


def test_convert_then_run_json(checkpoints, tmp_path):
    runner = CliRunner()
    dst = tmp_path / "converted"
    r = runner.invoke(
        model, ["convert", str(checkpoints.hf("qwen3_moe")), str(dst), "--bits", "4", "--group-size", "64"]
    )
    assert r.exit_code == 0, r.output
    assert "converted qwen3_moe: 2 MoE layers" in r.output
    r = runner.invoke(model, ["run", str(dst), "--prompt", "The quick brown fox", "--max-tokens", "8", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out) == {"prompt_tokens", "tokens", "text", "stats"}
    assert out["prompt_tokens"] and 1 <= len(out["tokens"]) <= 8
    for key in (
        "prefill_tok_per_s",
        "decode_tok_per_s",
        "bytes_read",
        "cache_hit_rate",
        "peak_memory_bytes",
        "peak_rss_bytes",
        "time_to_first_token_s",
    ):
        assert key in out["stats"]
    assert out["stats"]["bytes_read"] > 0


def test_run_text_with_cache_and_sampling(checkpoints):
    r = CliRunner().invoke(
        model,
        [
            "run",
            str(checkpoints.streamed("qwen3_moe")),
            "--prompt",
            "Water boils",
            "--max-tokens",
            "6",
            "--temp",
            "0.7",
            "--seed",
            "1",
            "--expert-cache-gb",
            "0.5",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "generated at" in r.stderr and "cache hit rate" in r.stderr


def test_info_and_verify(checkpoints):
    path = str(checkpoints.streamed("mixtral"))
    r = CliRunner().invoke(model, ["info", path])
    assert r.exit_code == 0 and "mixtral" in r.output and "4-bit affine group 64" in r.output
    r = CliRunner().invoke(model, ["info", path, "--json"])
    assert json.loads(r.output)["experts_per_layer"] == [8]
    r = CliRunner().invoke(model, ["verify", path])
    assert r.exit_code == 0 and r.output.startswith("OK")


def test_user_errors_are_one_line_without_traceback(checkpoints, tmp_path):
    runner = CliRunner()
    broken = shutil.copytree(checkpoints.streamed("qwen3_moe"), tmp_path / "broken")
    f = broken / "experts" / "layer-000.bin"
    f.write_bytes(f.read_bytes()[:-1])
    cases = [
        (["run", str(broken), "--prompt", "hi"], "layer-000.bin"),
        (["verify", str(broken)], "problem(s) found"),
        (["info", str(checkpoints.mlx("qwen3_moe"))], "manifest.json: not found"),
        (["convert", str(checkpoints.hf("qwen3_moe")), str(broken)], "already exists"),
        (
            ["run", str(checkpoints.streamed("qwen3_moe")), "--prompt", "hi", "--experts-per-token", "99"],
            "out of range",
        ),
    ]
    for args, message in cases:
        r = runner.invoke(model, args)
        assert r.exit_code == 1, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
    r = runner.invoke(model, ["convert", str(checkpoints.hf("qwen3_moe")), str(tmp_path / "x"), "--bits", "7"])
    assert r.exit_code == 2 and "'7' is not one of" in r.output


def test_real_process(checkpoints):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli.model",
            "run",
            str(checkpoints.streamed("gpt_oss")),
            "--prompt",
            "An offline library",
            "--max-tokens",
            "5",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out["tokens"]) <= 5 and out["stats"]["expert_reads"] > 0


def test_plan_forecasts_before_anything_runs(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    runner = CliRunner()
    r = runner.invoke(model, ["plan", str(path), "--memory-gb", "8", "--context-tokens", "256", "--json"])
    assert r.exit_code == 0, r.output
    f = json.loads(r.stdout)
    m = f["memory"]
    assert m["budget"] == 8 * 2**30 and m["total"] <= m["budget"]
    assert m["cache_slots"] == 16  # the tiny model's every expert fits
    assert f["reads"]["cold_gbps"] > 0 and f["reads"]["warm_gbps"] > 0
    attention = f["compute"]["attention_s"]  # one layer's, timed with the model's heads
    assert attention["1500"] > attention["32"] > 0
    for name in ("warm", "cold"):
        assert f["decode"][name]["tok_per_s"] > 0 and f["decode"][name]["hit_rate"] == 1.0
        assert f["prefill"]["1500"][name]["ttft_s"] > f["prefill"]["32"][name]["ttft_s"] > 0
    text = runner.invoke(model, ["plan", str(path), "--memory-gb", "8", "--read-seconds", "0.2"])
    assert text.exit_code == 0 and "expert cache" in text.output and "decode, cold" in text.output
    # The engine loaded with that budget gets the cache the plan forecast.
    import llm_engine

    with llm_engine.load(path, memory_gb=8, context_tokens=256) as engine:
        assert engine.cache_slots == m["cache_slots"]
    small = runner.invoke(model, ["plan", str(path), "--memory-gb", "0.01"])
    assert small.exit_code != 0 and "too little" in small.output
    bad = runner.invoke(model, ["plan", str(path), "--memory-gb", "lots"])
    assert bad.exit_code != 0 and "--memory-gb" in bad.output
