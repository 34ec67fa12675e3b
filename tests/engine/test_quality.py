"""A lossy option prints what it costs before it runs: next-token KL on a fixed prompt set."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
from click.testing import CliRunner
from mlx_lm.models.cache import make_prompt_cache

import llm_engine
from appliance.cli.model import model
from llm_engine.quality import PROMPTS, experts_per_token_change


def _log_probs(engine, tokens):
    logits = engine.model(mx.array(tokens)[None], cache=make_prompt_cache(engine.model))[0].astype(mx.float32)
    return np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))


def test_kl_equals_two_separately_loaded_engines(checkpoints):
    path = checkpoints.streamed("qwen3_moe")
    with llm_engine.load(path) as full, llm_engine.load(path, experts_per_token=1) as lossy:
        before = llm_engine.generate(lossy, [3, 4, 5], max_tokens=8, ignore_eos=True).tokens
        change = experts_per_token_change(lossy, 1)
        # The engine is left routing to the experts it was loaded with.
        assert llm_engine.generate(lossy, [3, 4, 5], max_tokens=8, ignore_eos=True).tokens == before
        kls, agree = [], []
        for text in PROMPTS:
            tokens = full.tokenizer.encode(text)
            p, q = _log_probs(full, tokens), _log_probs(lossy, tokens)
            kls.append((np.exp(p) * (p - q)).sum(-1))
            agree.append(p.argmax(-1) == q.argmax(-1))
        trained = full.config["num_experts_per_tok"]
    want = np.concatenate(kls)
    assert change.trained == trained > 1 and change.experts_per_token == 1 and change.prompts == len(PROMPTS)
    assert change.positions == want.size > len(PROMPTS)
    assert change.mean_kl > 0 and abs(change.mean_kl - want.mean()) < 1e-5
    assert abs(change.max_kl - want.max()) < 1e-5
    assert change.top1_agreement == np.concatenate(agree).mean()


def test_the_trained_number_changes_nothing(checkpoints):
    with llm_engine.load(checkpoints.streamed("mixtral")) as engine:
        change = experts_per_token_change(engine, engine.trained_experts_per_token)
    assert change.mean_kl == 0 and change.max_kl == 0 and change.top1_agreement == 1.0


def test_cli_prints_the_change_before_running(checkpoints):
    path = str(checkpoints.streamed("qwen3_moe"))
    r = CliRunner().invoke(model, ["run", path, "--prompt", "hi", "--max-tokens", "4", "--experts-per-token", "1"])
    assert r.exit_code == 0, r.output
    assert "[lossy: 1 experts per token instead of 4: next-token KL" in r.stderr
    assert r.stderr.index("[lossy:") < r.stderr.index("prompt tokens at")
    r = CliRunner().invoke(
        model, ["run", path, "--prompt", "hi", "--max-tokens", "4", "--json", "--experts-per-token", "1"]
    )
    out = json.loads(r.stdout)
    assert out["quality_change"]["mean_kl"] > 0 and out["quality_change"]["positions"] > 0
    # Off by default: no measurement, no line.
    r = CliRunner().invoke(model, ["run", path, "--prompt", "hi", "--max-tokens", "4"])
    assert r.exit_code == 0 and "lossy" not in r.stderr
