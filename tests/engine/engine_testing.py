"""Helpers of the engine's parity tests: resident mlx-lm as the reference (loaded once per
architecture and session), random prompts, and a greedy run that keeps every step's logits."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import load as mlx_lm_load

from llm_engine.device import cast_model

from tinymoe import VOCAB

_references: dict = {}


def random_prompt(length: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(1, VOCAB, size=length).tolist()


def greedy_with_logits(model, prompt: list[int], n: int):
    """Whole prompt in one forward pass, then n greedy steps; returns tokens and logits (fp32)."""
    cache = make_prompt_cache(model)
    logits = model(mx.array(prompt)[None], cache=cache)[:, -1, :]
    tokens, all_logits = [], []
    for _ in range(n):
        mx.eval(logits)
        all_logits.append(np.array(logits[0].astype(mx.float32)))  # bf16 on a GPU
        tokens.append(int(mx.argmax(logits[0]).item()))
        logits = model(mx.array([[tokens[-1]]]), cache=cache)[:, -1, :]
    return tokens, np.stack(all_logits)


def resident_reference(checkpoints, arch: str):
    """mlx-lm's own model of the quantized checkpoint, fully resident, in this device's compute dtype."""
    if arch not in _references:
        model, _ = mlx_lm_load(str(checkpoints.mlx(arch)))
        cast_model(model)
        mx.eval(model.parameters())
        _references[arch] = model
    return _references[arch]
