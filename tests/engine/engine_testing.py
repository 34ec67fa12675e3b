"""Helpers of the engine's parity tests: resident mlx-lm as the reference (loaded once per
architecture and session), random prompts, and a greedy run that keeps every step's logits."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.utils import load as mlx_lm_load

from llm_engine.device import cast_model

from tinymoe import VOCAB

ROOT = Path(__file__).resolve().parents[2]

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


@contextlib.contextmanager
def model_serve(model_dir: Path, *args: str, env: dict | None = None, timeout: float = 120):
    """`almanac model serve DIR --port 0 ARGS` as a real process; yields (process, URL) once it listens."""
    env = env if env is not None else dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli.model", "serve", str(model_dir), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        ready, _, _ = select.select([p.stdout], [], [], timeout)
        line = p.stdout.readline() if ready else ""
        if " on http://" not in line:
            p.kill()
            pytest.fail(f"server did not start: {line!r} {p.stderr.read()}")
        # Drain stderr (one log line per request) so the pipe never fills up; its lines are kept on p.
        p.stderr_lines = []
        threading.Thread(target=lambda: p.stderr_lines.extend(p.stderr), daemon=True).start()
        yield p, line.split(" on ")[1].split()[0]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
