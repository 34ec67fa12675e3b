"""The hot list: how often each expert of each MoE layer was routed to, kept between runs, so a new
process warms its expert cache with the experts this model's users route to most, in the background,
before its first token needs them.

    {"version": 1, "model": <manifest checksum of the first expert file>, "layers": [
        {"module": "model.layers.0.mlp.switch_mlp", "uses": [12.0, 0.0, ...]}, ...]}

`uses` are the slot policies' counts (one per call that routed to the expert); a save adds them to half
of what the file held, so old habits fade. A file for another model or layout is ignored.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .files import write_text_atomic

VERSION = 1


def _model_id(stores) -> str:
    return stores[0].spec.sha256 if stores else ""


def read(path: Path, stores) -> list[np.ndarray] | None:
    """Each layer's saved counts, or None when there is no usable file for these layers."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    try:
        if data.get("version") != VERSION or data.get("model") != _model_id(stores):
            return None
        layers = data["layers"]
        if [entry["module"] for entry in layers] != [s.spec.module for s in stores]:
            return None
        out = [np.asarray(entry["uses"], dtype=np.float64) for entry in layers]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if any(u.shape != (s.spec.num_experts,) or not np.isfinite(u).all() or (u < 0).any() for u, s in zip(out, stores)):
        return None
    return out


def write(path: Path, stores, counts: list[np.ndarray], fade: float = 0.5) -> None:
    """Add `counts` (this process's, since the last write) to the faded saved ones; atomic (a reader sees
    the old file or the new one)."""
    path = Path(path)
    saved = read(path, stores)
    layers = []
    for i, (store, uses) in enumerate(zip(stores, counts)):
        if saved is not None:
            uses = uses + fade * saved[i]
        layers.append({"module": store.spec.module, "uses": [round(float(u), 3) for u in uses]})
    write_text_atomic(path, json.dumps({"version": VERSION, "model": _model_id(stores), "layers": layers}))


def warm(stores, saved: list[np.ndarray]) -> int:
    """Start reading each cached layer's hottest saved experts into its slots (in the background, on the
    I/O threads); a layer's first call waits for what it still needs. Returns the reads started."""
    started = 0
    for store, uses in zip(stores, saved):
        if not store.policy.retain:
            continue  # nothing is kept between calls: nothing to warm
        hot = np.flatnonzero(uses > 0)
        hot = hot[np.argsort(-uses[hot], kind="stable")][: store.capacity]
        if len(hot):
            store.policy.uses[hot] = np.maximum(store.policy.uses[hot], 1.0)  # not the first to be evicted
            started += store.prefetch(np.sort(hot))
    return started


class Keeper:
    """Reads the hot list at load, warms the cache, and writes it back now and then and at close."""

    def __init__(self, path: str | os.PathLike, stores, min_interval_s: float = 60.0):
        self.path = Path(path)
        self.stores = stores
        self.min_interval_s = min_interval_s
        self.last_write = time.monotonic()
        self.warned = False
        saved = read(self.path, stores)
        self.warm_reads = warm(stores, saved) if saved is not None else 0
        self.counted = [s.policy.uses.copy() for s in stores]  # what the last write took

    def save(self, force: bool = False) -> bool:
        """Write the list if min_interval_s has passed (or force); False when it could not be written."""
        if not force and time.monotonic() - self.last_write < self.min_interval_s:
            return True
        self.last_write = time.monotonic()
        now = [s.policy.uses.copy() for s in self.stores]
        try:
            write(self.path, self.stores, [a - b for a, b in zip(now, self.counted)])
        except OSError as e:
            if not self.warned:  # a read-only model folder: keep serving, say it once
                print(f"llm_engine: cannot save the hot list {self.path}: {e}", file=sys.stderr)
                self.warned = True
            return False
        self.counted = now
        return True
