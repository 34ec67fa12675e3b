"""Sizing the engine from the memory it is given: what stays resident, what is left for experts.

    plan = plan_memory(path, memory_bytes, baseline=process_rss())

The budget is the whole process's memory (its peak RSS): the interpreter and libraries already
loaded (`baseline`, measured), the resident (non-expert) weights in the device's compute dtype
(from the safetensors headers: on the CPU every bf16/fp16 tensor is widened to fp32), the
streaming bank (top-k experts times the batch, one shared by same-shaped layers, two with
prefetch), a working
allowance (the KV cache of `context_tokens` per sequence, one prefill chunk's attention scores
and activations, the read buffers) and the prompt cache. What remains becomes expert-cache slots,
the same number in every MoE layer; fewer than top-k slots per layer are not worth keeping, so
then the cache is off. A budget below the fixed part is refused with the figure it needs.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from . import manifest as mf
from .errors import EngineError

GiB = 1 << 30
MiB = 1 << 20
PREFILL_CHUNK = 2048  # generate.PREFILL_STEP (not imported: this module loads no model)
FIXED_WORKING = 48 * MiB  # tokenizer state, MLX's small buffers, per-call temporaries
# The largest linear layer a prefill dequantizes at once (dequant_matmul.py takes it from here; a
# 4096x2048 attention projection is 32 MiB): the working memory plans for one.
MAX_DEQUANTIZED_BYTES = 64 * MiB
IO_THREADS = 8


def process_rss() -> int:
    """This process's resident set now (bytes); 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def available_bytes() -> int:
    """Memory the machine can give without swapping (MemAvailable; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def text_config(config: dict) -> dict:
    return {**config, **config.get("text_config", {})}


def _top_k(config: dict) -> int:
    c = text_config(config)
    for key in ("num_experts_per_tok", "experts_per_token", "moe_top_k"):
        if isinstance(c.get(key), int):
            return c[key]
    return 8


def _widened(dtype: str) -> int:
    """Bytes per element once loaded on this device (floats widen to fp32 on the CPU)."""
    from .device import on_cpu

    size = {"F32": 4, "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "U8": 1, "I8": 1, "U16": 2, "I64": 8, "BOOL": 1}
    n = size.get(dtype, 4)
    if dtype in ("F16", "BF16") and on_cpu():
        return 4
    return n


def resident_bytes(path: Path, manifest: mf.Manifest) -> int:
    """The non-expert weights' size in memory, from the safetensors headers (nothing loaded)."""
    total = 0
    for f in manifest.files:
        if not f.file.endswith(".safetensors"):
            continue
        with open(path / f.file, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, t in header.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            stored = {"F32": 4, "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "U8": 1, "I8": 1, "U16": 2}.get(t["dtype"], 4)
            total += (b - a) // stored * _widened(t["dtype"])
    return total


def dequantized_expert_bytes(manifest: mf.Manifest) -> int:
    """One expert's quantized projections dequantized to fp32 (the largest layer's), as a prefill on
    OpenBLAS holds them (dequant_matmul.py)."""
    largest = 0
    for layer in manifest.layers:
        total = 0
        for t in layer.tensors:
            projection, _, leaf = t.name.rpartition(".")
            q = layer.quantization.get(projection)
            if leaf == "weight" and q and len(t.shape) == 2:
                total += t.shape[0] * t.shape[1] * 32 // q["bits"] * 4
        largest = max(largest, total)
    return largest


def working_bytes(
    config: dict,
    context_tokens: int,
    max_batch: int,
    top_k: int,
    moe_width: int,
    parts: int = 1,
    dequantized_expert: int = 0,
) -> int:
    """Activations and caches that do not depend on the expert cache (upper estimate); parts: the CPU
    parts the engine cuts its work into (cpu_split.parts_for); dequantized_expert: see
    dequantized_expert_bytes."""
    c = text_config(config)
    layers = int(c.get("num_hidden_layers", 1))
    hidden = int(c.get("hidden_size", 1024))
    heads = int(c.get("num_attention_heads", 8))
    kv_heads = int(c.get("num_key_value_heads", heads) or heads)
    head_dim = int(c.get("head_dim") or hidden // heads)
    f = 4  # fp32 activations on the CPU; an upper bound elsewhere
    kv = layers * 2 * kv_heads * head_dim * f * context_tokens * max_batch
    chunk = min(PREFILL_CHUNK, context_tokens)
    scores = heads * chunk * context_tokens * f  # one layer's attention scores for a prefill chunk
    rows = chunk * hidden * f * 12  # residual stream, norms, q/k/v/o and MLP outputs of one layer
    experts = chunk * top_k * moe_width * f * 3  # the switch layer's gate/up/down intermediates
    # A prefill on OpenBLAS (dequant_matmul.py): each part holds one expert's projections dequantized,
    # and one linear layer is dequantized at a time.
    dequantized = parts * dequantized_expert + MAX_DEQUANTIZED_BYTES
    return kv + scores + rows + experts + dequantized + FIXED_WORKING


@dataclass
class MemoryPlan:
    budget: int  # the whole process, bytes
    baseline: int  # RSS before loading (interpreter, libraries, tokenizer)
    resident: int  # non-expert weights in the compute dtype
    bank: int  # the streaming bank (when there is no expert cache)
    read_buffers: int  # one staging buffer per I/O thread
    working: int  # KV cache, prefill activations, fixed allowance
    prompt_cache: int
    bytes_per_expert: int  # one expert of every MoE layer, summed (what one slot per layer costs)
    cache_slots: int  # expert-cache slots per MoE layer (0: page cache only)
    cache_bytes: int
    top_k: int
    context_tokens: int
    max_batch: int
    # GPUs: every MoE call runs as one call, so the shared bank holds a whole layer and stays beside a
    # cache smaller than a layer (loader._attach_banks).
    one_call: bool = False

    @property
    def fixed(self) -> int:
        return self.baseline + self.resident + self.read_buffers + self.working + self.prompt_cache

    @property
    def total(self) -> int:
        if not self.cache_slots:
            return self.fixed + self.bank
        return self.fixed + self.cache_bytes + (self.bank if self.one_call else 0)

    def as_dict(self) -> dict:
        return {**asdict(self), "fixed": self.fixed, "total": self.total}


def plan_memory(
    path: str | os.PathLike,
    memory_bytes: int,
    baseline: int,
    max_batch: int = 1,
    context_tokens: int = 4096,
    prompt_cache_bytes: int = 0,
    prefetch: bool = False,
    parts: int = 1,
) -> MemoryPlan:
    """How a budget of memory_bytes splits; raises EngineError if the fixed part does not fit."""
    from .device import read_path
    from .store import bank_layout

    one_call = not read_path().staged
    path = Path(path)
    manifest = mf.read_manifest(path)
    config = json.loads((path / "config.json").read_text())
    top_k = _top_k(config)
    per_layer = [sum(t.bank_nbytes for t in bank_layout(layer)) for layer in manifest.layers]
    per_expert = sum(per_layer)
    shared, sharing = {}, {}
    for layer, nbytes in zip(manifest.layers, per_layer):
        wanted = layer.num_experts if one_call else min(layer.num_experts, top_k * max_batch)
        shared[nbytes] = max(shared.get(nbytes, 0), wanted * nbytes)  # one bank per expert shape
        sharing[nbytes] = sharing.get(nbytes, 0) + 1
    # With prefetch, layers without a cache take turns between two shared banks (loader._attach_banks).
    bank = sum(size * (2 if prefetch and sharing[n] > 1 else 1) for n, size in shared.items())
    widest = max((layer.blob_size for layer in manifest.layers), default=0)
    moe_width = max((t.shape[0] for layer in manifest.layers for t in layer.tensors), default=0)
    working = working_bytes(
        config, context_tokens, max_batch, top_k, moe_width, parts, dequantized_expert_bytes(manifest)
    )
    plan = MemoryPlan(
        budget=memory_bytes,
        baseline=baseline,
        resident=resident_bytes(path, manifest),
        bank=bank,
        read_buffers=(IO_THREADS + 2) * widest,
        working=working,
        prompt_cache=prompt_cache_bytes,
        bytes_per_expert=per_expert,
        cache_slots=0,
        cache_bytes=0,
        top_k=top_k,
        context_tokens=context_tokens,
        max_batch=max_batch,
        one_call=one_call,
    )
    if plan.fixed + bank > memory_bytes:
        raise EngineError(
            f"--memory-gb {memory_bytes / GiB:.2f} is too little for {path.name}: it needs at least "
            f"{(plan.fixed + bank) / GiB:.2f} GB ({plan.baseline / GiB:.2f} already in use, "
            f"{plan.resident / GiB:.2f} resident weights, {bank / GiB:.2f} streaming bank, "
            f"{(plan.working + plan.read_buffers) / GiB:.2f} working memory for {context_tokens} tokens"
            + (f", {plan.prompt_cache / GiB:.2f} prompt cache" if plan.prompt_cache else "")
            + ")"
        )
    if per_expert:
        room = memory_bytes - plan.fixed - (bank if one_call else 0)
        slots = min(room // per_expert, max(layer.num_experts for layer in manifest.layers))
        if slots >= top_k and slots * per_expert > bank:
            plan.cache_slots = int(slots)
            plan.cache_bytes = int(slots * per_expert)
    return plan


def parse_memory_gb(value: str | float | None) -> float | str | None:
    """`--memory-gb` values: a positive number of GB, or "auto" (what the machine has free)."""
    if value is None or value == "auto":
        return value
    try:
        gb = float(value)
    except (TypeError, ValueError):
        raise EngineError(f"--memory-gb must be a number of GB or 'auto', not {value!r}") from None
    if not gb > 0:
        raise EngineError("--memory-gb must be > 0")
    return gb


def budget_bytes(memory_gb: float | str, baseline: int) -> int:
    """The budget in bytes; "auto" is this process's RSS now plus 80 % of the memory free."""
    if memory_gb == "auto":
        return baseline + int(0.8 * available_bytes())
    return int(float(memory_gb) * GiB)
