"""A drop-in replacement for mlx-lm's switch layers that streams experts from disk."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_unflatten

from . import cpu_quantized, cpu_split, dequant_matmul
from .device import compiled_kernels
from .store import LayerStore


class StreamingSwitch(nn.Module):
    """Runs mlx-lm's own switch layer on a bank holding only the routed experts.

    The wrapped layer keeps its code (activation, biases, sorting of large batches); only its
    expert tensors are swapped for the bank and its expert indices remapped to bank slots.
    The wrapped layer is kept outside the parameter tree so the full expert weights are
    never loaded or materialised.

    A call's experts arrive in stages (see LayerStore.stream): the (token, expert) pairs of
    each stage run through the wrapped layer while the next stage is read, and the results
    are put back in place. When a call routes to more experts than the bank holds (a
    prefill chunk), its experts are also split into bank-sized groups, each evaluated
    before the next overwrites the bank. Each pair's output depends only on its token and
    expert (one row times one expert's matrices, M = 1 in the quantized kernel either way),
    so this gives the same numbers as one call over all experts. For the same reason, on the
    CPU each stage's pairs are cut into `parts` computed at once on separate CPU streams, one
    core each (cpu_split.py).

    A prefill call on OpenBLAS (16+ pairs per routed expert, dequant_matmul.py) runs each
    stage expert by expert instead, the wrapped layer's projections as dequantize + matmul on
    each expert's rows and its own activation between them; its parts are cut between experts.
    Where the CPU has compiled kernels (cpu_quantized.py), the wrapped layer's projections run on
    them, every core at once: then the other calls are not cut into parts.
    """

    def __init__(self, inner: nn.Module, store: LayerStore, parts: int = 1):
        super().__init__()
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_bound", None)
        object.__setattr__(self, "_streams", cpu_split.streams(parts))
        # A prefill computed expert by expert as dequantize + matmul on OpenBLAS (dequant_matmul.py).
        object.__setattr__(self, "_dequantizing", dequant_matmul.enabled() and dequant_matmul.computes(inner))
        # A prefill's experts unpacked on the compiled kernel (dequant_matmul.expert_rows_by_parts), and a
        # decode step's projections on the compiled kernels, one thread per part (cpu_quantized.py).
        object.__setattr__(self, "_unpacking", self._dequantizing and dequant_matmul.unpacks(inner))
        object.__setattr__(self, "_compiled", compiled_kernels() and cpu_quantized.install(inner, parts))
        # Next-layer prefetch (loader._link_prefetch): the next MoE layer's store and a function
        # guessing its experts from this layer's input (its router applied early).
        object.__setattr__(self, "next_store", None)
        object.__setattr__(self, "guess_next", None)

    @property
    def store(self) -> LayerStore:
        return self._store

    def _bind(self) -> None:
        params = self._store.bank.params
        if params is not self._bound:
            self._inner.update(tree_unflatten(list(params.items())))
            object.__setattr__(self, "_bound", params)

    def _bind_device_copy(self) -> None:
        """Compute this call from a copy of the bank in device memory (same shapes, same bytes); the
        next call binds the bank again, which frees the copy."""
        params = self._store.bank.params
        copied = {k: mx.take(v, mx.arange(v.shape[0]), axis=0) for k, v in params.items()}
        self._inner.update(tree_unflatten(list(copied.items())))
        object.__setattr__(self, "_bound", copied)

    def __call__(self, x: mx.array, indices: mx.array) -> mx.array:
        # Routing must be known before the read; this is the one sync point per layer. The guess
        # of the next layer's experts is evaluated with it.
        guess = self.guess_next(x) if self.guess_next is not None else None
        mx.eval(indices) if guess is None else mx.eval(indices, guess)
        idx = np.asarray(indices)
        flat = idx.reshape(-1)
        k = idx.shape[-1]
        rows = x.reshape(-1, x.shape[-1])  # one row per token; pair p belongs to row p // k
        experts, counts = np.unique(flat, return_counts=True)
        groups = self._store.plan_call(experts, counts)  # picks the bank this call reads into
        self._bind()
        # Decided for the whole call, never per part, so an engine cut in parts computes as one part.
        dequantize = self._dequantizing and flat.size >= dequant_matmul.MIN_ROWS * len(experts)
        # The compiled kernels use every core in one call: their pairs are not cut.
        parts = 1 if self._compiled and not dequantize else len(self._streams)
        outs, order = [], []
        for g, group in enumerate(groups):
            pending = []
            for ready, lut in self._store.stream(group):
                if guess is not None:  # this call's reads are queued: the next layer's come after them
                    self._prefetch_next(np.asarray(guess))
                    guess = None
                if len(ready) == len(experts) and parts == 1 and not dequantize:
                    # Every expert of the call at once (all were cached) and one stream: run it in one
                    # go. (With CPU parts the pairs are cut below, even then.)
                    if 0 < self._store.read_path.device_copy_tokens <= rows.shape[0]:
                        self._bind_device_copy()
                    out = self._inner(x, mx.array(lut[idx], dtype=indices.dtype))
                    mx.eval(out)  # before the bank is overwritten by the next call using it
                    return out
                pos = np.flatnonzero(np.isin(flat, ready))
                cut = cpu_split.cut_pairs(pos, flat[pos], parts, whole_experts=dequantize)
                if dequantize and self._unpacking:  # the experts unpacked on the compiled kernel, part by part
                    jobs = []
                    for stream, part in zip(self._streams, cut):
                        with cpu_split.on(stream):
                            jobs.append((stream, rows[mx.array(part // k)], lut[flat[part]]))
                    for y, part in zip(dequant_matmul.expert_rows_by_parts(self._inner, jobs), cut):
                        pending.append(y)
                        outs.append(y)
                        order.append(part)
                    continue
                for stream, part in zip(self._streams, cut):
                    with cpu_split.on(stream):
                        if dequantize:
                            y = dequant_matmul.expert_rows(self._inner, rows[mx.array(part // k)], lut[flat[part]])
                        else:
                            y = self._inner(
                                rows[mx.array(part // k)], mx.array(lut[flat[part]][:, None], dtype=indices.dtype)
                            )
                    # Start computing while the next stage is read.
                    mx.async_eval(y)
                    pending.append(y)
                    outs.append(y)
                    order.append(part)
            if g + 1 < len(groups):
                mx.eval(pending)  # before the next group overwrites the bank
        inverse = np.empty(flat.size, dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(flat.size)
        out = mx.concatenate([y[:, 0] for y in outs])[mx.array(inverse)]
        out = out.reshape(*idx.shape, out.shape[-1])
        mx.eval(out)  # before the bank is overwritten by the next call using it
        if len(groups) > 1:
            # A prefill call leaves a group's worth of intermediates in MLX's buffer cache at
            # every layer; decode steps never reuse them, so give them back now (no measurable
            # cost in prefill time; ~10 MB off the high-water mark on the bench model).
            mx.clear_cache()
        return out

    def _prefetch_next(self, guess: np.ndarray) -> None:
        """Read the next layer's guessed experts while this one computes: the most often guessed
        first, as many as its bank holds (a prefill call computes those first)."""
        experts, counts = np.unique(guess.reshape(-1), return_counts=True)
        room = self.next_store.prefetch_capacity
        if len(experts) > room:
            experts = np.sort(experts[np.argsort(-counts, kind="stable")[:room]])
        self.next_store.prefetch(experts)
