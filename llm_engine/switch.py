"""A drop-in replacement for mlx-lm's switch layers that streams experts from disk."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_unflatten

from .store import LayerStore


class StreamingSwitch(nn.Module):
    """Runs mlx-lm's own switch layer on a bank holding only the routed experts.

    The wrapped layer keeps its code (activation, biases, sorting of large batches); only its
    expert tensors are swapped for the bank and its expert indices remapped to bank slots.
    The wrapped layer is kept outside the parameter tree so the full expert weights are
    never loaded or materialised.
    """

    def __init__(self, inner: nn.Module, store: LayerStore):
        super().__init__()
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_bound", None)

    @property
    def store(self) -> LayerStore:
        return self._store

    def __call__(self, x: mx.array, indices: mx.array) -> mx.array:
        # Routing must be known before the read; this is the one sync point per layer.
        mx.eval(indices)
        idx = np.asarray(indices)
        experts = np.unique(idx)
        params, lut = self._store.fetch(experts, idx.shape[-1])
        if params is not self._bound:
            self._inner.update(tree_unflatten(list(params.items())))
            object.__setattr__(self, "_bound", params)
        slots = mx.array(lut[idx]).astype(indices.dtype)
        out = self._inner(x, slots)
        # Evaluate now: the bank is overwritten by this layer's next call, so nothing lazy
        # may still point into it by then.
        mx.eval(out)
        return out
