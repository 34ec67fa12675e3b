"""What a lossy option costs, measured before it runs: the change in next-token distribution.

Routing each token to fewer experts than the model was trained with (`experts_per_token`) reads
fewer bytes and changes the answers. `experts_per_token_change` runs a fixed set of prompts
through the model twice, with the trained number of experts and with the one asked for, and
compares every next-token distribution of the prompts (teacher forcing: one forward pass per
prompt gives one distribution per position) by KL divergence and by top-1 agreement.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .errors import EngineError
from .loader import Engine, set_experts_per_token, top_k_of

# Varied, ordinary text: questions, facts, instructions, a list, some code and another language.
PROMPTS = (
    "Why does the sky look blue during the day and red at sunset?",
    "The river rises in the mountains, flows through three countries and reaches the sea after 2,850 km.",
    "Write a short letter to a neighbour asking them to water the plants while you are away.",
    "Ingredients: two cups of flour, one egg, a pinch of salt, and enough milk to make a smooth batter.",
    "def mean(values):\n    return sum(values) / len(values)\n",
    "La bibliothèque du village ouvre le mardi et le samedi matin.",
    "In 1928, a mould contaminating a culture plate led to the discovery of the first antibiotic.",
    "How far can a person walk in a day, and what limits it?",
)


@dataclass(frozen=True)
class QualityChange:
    """Next-token distributions with `experts_per_token` against the trained number."""

    experts_per_token: int
    trained: int
    positions: int  # next-token distributions compared
    prompts: int
    mean_kl: float  # nats, KL(trained || lossy), averaged over positions
    max_kl: float
    top1_agreement: float  # share of positions whose most likely token is unchanged

    def describe(self) -> str:
        return (
            f"{self.experts_per_token} experts per token instead of {self.trained}: next-token KL "
            f"{self.mean_kl:.4f} nats on average (max {self.max_kl:.4f}) over {self.positions} positions of "
            f"{self.prompts} fixed prompts; the most likely token is unchanged at {self.top1_agreement:.1%} of them"
        )

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _log_probs(engine: Engine, tokens: list[int]) -> np.ndarray:
    from mlx_lm.models.cache import make_prompt_cache

    logits = engine.model(mx.array(tokens)[None], cache=make_prompt_cache(engine.model))[0]
    logp = logits.astype(mx.float32) - mx.logsumexp(logits.astype(mx.float32), axis=-1, keepdims=True)
    return np.array(logp)


def experts_per_token_change(engine: Engine, k: int, prompts: tuple[str, ...] = PROMPTS) -> QualityChange:
    """Measure routing to `k` experts per token against the trained number; leaves the engine as it was."""
    paths = [layer.module for layer in engine.manifest.layers]
    if not paths:
        raise EngineError("--experts-per-token: this model has no experts (a dense model)")
    trained = engine.trained_experts_per_token
    current = top_k_of(engine.model, paths[0], trained)
    token_lists = [engine.tokenizer.encode(p) for p in prompts]
    kls, agree = [], []
    try:
        for tokens in token_lists:
            set_experts_per_token(engine.model, paths, trained)
            p = _log_probs(engine, tokens)
            set_experts_per_token(engine.model, paths, k)
            q = _log_probs(engine, tokens)
            kls.append((np.exp(p) * (p - q)).sum(axis=-1))
            agree.append(p.argmax(axis=-1) == q.argmax(axis=-1))
    finally:
        set_experts_per_token(engine.model, paths, current)
    kl = np.concatenate(kls)
    return QualityChange(
        experts_per_token=k,
        trained=trained,
        positions=int(kl.size),
        prompts=len(token_lists),
        mean_kl=float(kl.mean()),
        max_kl=float(kl.max()),
        top1_agreement=float(np.concatenate(agree).mean()),
    )
