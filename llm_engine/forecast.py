"""Forecast decode and prefill speed and memory of a converted model before anything runs.

From the layout (manifest.json, config.json, the safetensors headers), the memory plan
(memory.plan_memory) and two short measurements on this machine:

* reads: random expert blobs of the model's own files, with the engine's thread count, once
  bypassing the page cache (O_DIRECT, else evicted with posix_fadvise) and once from it;
* compute: the engine's product on one expert's shapes, at one row (a decode token) and at the
  rows per expert a prefill chunk gives, timed on this device, on as many CPU streams at once as
  the engine cuts its work into (cpu_split.py): MLX's quantized matmul, or dequantize + matmul
  for as many rows as the engine computes that way (dequant_matmul.py), or the compiled kernel on
  as many threads (cpu_quantized.py) for the rest where it has one; and one layer's attention
  over each prompt, as the engine computes it (cpu_attention.py), with the model's heads.

The model assumed: routing is uniform (a token's top-k experts are any k of the layer's), so a
cache of S slots out of E experts hits S/E of the time and a prompt of P tokens touches
E * (1 - (1 - k/E)^P) experts per layer; a decode token costs the compute of every quantized
weight it touches (resident and its experts, the weights cycled through more memory than the
CPU's caches hold) plus its reads (on the CPU, whose cores also copy what is read; on a GPU only
what compute does not hide), plus one expert's read per layer (nothing can run before the first
one), plus the fixed cost of each of its product calls (timed on a tiny product). Real routing is
skewed (a cache hits more): compare with a measured run (the bench prints both).
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import manifest as mf
from .memory import IO_THREADS, MemoryPlan, plan_memory, text_config

# Bytes of quantized weights the compute test cycles through (more than a CPU's caches hold).
WEIGHTS_BEYOND_CACHES = 64 << 20


@dataclass
class ReadTest:
    cold_gbps: float  # experts read bypassing the page cache, `threads` in flight
    warm_gbps: float  # the same blobs again from the page cache
    how: str  # "O_DIRECT" or "fadvise"
    seconds: float


def measure_reads(path: Path, manifest: mf.Manifest, seconds: float = 1.0, threads: int = IO_THREADS) -> ReadTest:
    """Read random expert blobs for about `seconds`, cold then warm."""
    layers = [layer for layer in manifest.layers if layer.num_experts]
    if not layers:
        return ReadTest(0.0, 0.0, "none", 0.0)
    rng = random.Random(0)
    picks = [(layer, rng.randrange(layer.num_experts)) for layer in layers for _ in range(64)]
    rng.shuffle(picks)
    fds, direct = {}, hasattr(os, "O_DIRECT")
    for layer in layers:
        p = str(path / layer.file)
        try:
            fds[layer.file] = os.open(p, os.O_RDONLY | (os.O_DIRECT if direct else 0))
        except OSError:
            direct = False
            fds[layer.file] = os.open(p, os.O_RDONLY)
    how = "O_DIRECT" if direct else "fadvise"

    def one(item, buf):
        layer, e = item
        n = mf.round_up(layer.blob_size, 4096) if direct else layer.blob_size
        if not direct and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fds[layer.file], e * layer.stride, layer.stride, os.POSIX_FADV_DONTNEED)
        return os.preadv(fds[layer.file], [memoryview(buf)[:n]], e * layer.stride)

    size = mf.round_up(max(layer.blob_size for layer in layers), 4096)
    bufs = [mmap.mmap(-1, size) for _ in range(threads)]  # page aligned, as O_DIRECT wants

    def run(items, warm: bool) -> tuple[int, float]:
        total, t0, i = 0, time.perf_counter(), 0
        with ThreadPoolExecutor(threads) as pool:
            while i < len(items) and time.perf_counter() - t0 < seconds:
                batch = items[i : i + threads]
                if warm:
                    total += sum(pool.map(lambda a: os.preadv(plain[a[0].file], [bufs[0]], a[1] * a[0].stride), batch))
                else:
                    total += sum(pool.map(one, batch, bufs[: len(batch)]))
                i += len(batch)
        return total, time.perf_counter() - t0, i

    plain = {layer.file: os.open(str(path / layer.file), os.O_RDONLY) for layer in layers}
    try:
        if not direct:
            for fd in plain.values():
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        cold_bytes, cold_s, done = run(picks, warm=False)
        for layer, e in picks[:done]:  # bring the same blobs into the page cache, then time them
            os.preadv(plain[layer.file], [bufs[0]], e * layer.stride)
        warm_bytes, warm_s, _ = run(picks[:done], warm=True)
    finally:
        for fd in list(fds.values()) + list(plain.values()):
            os.close(fd)
        for b in bufs:
            b.close()
    return ReadTest(cold_bytes / cold_s / 1e9, warm_bytes / warm_s / 1e9, how, cold_s + warm_s)


@dataclass
class ComputeTest:
    """Quantized weight bytes per second that the engine's product goes through, by row count; seconds of one
    layer's attention over a prompt, by its length."""

    rates: dict  # rows -> (rows x weight bytes) / s
    attention_s: dict = field(default_factory=dict)  # prompt tokens -> s, one attention layer
    call_s: float = 0.0  # the fixed cost of one product call (a tiny one's time): dispatch, syncs


def measure_compute(
    manifest: mf.Manifest, rows: tuple[int, ...] = (1,), seconds: float = 0.3, parts: int = 1
) -> ComputeTest:
    """Time the engine's product on one expert's first projection (this device, its compute dtype),
    `parts` products at once on as many streams (the engine's cut of its work over the CPU's cores), or
    one on `parts` threads where the engine takes the compiled kernel (cpu_quantized.py)."""
    import mlx.core as mx

    from . import cpu_quantized, cpu_split, dequant_matmul
    from .device import compiled_kernels, compute_dtype

    layer = next((layer for layer in manifest.layers if layer.quantization), None)
    if layer is None:
        return ComputeTest({r: 0.0 for r in rows})
    proj = next(iter(layer.quantization))
    q = layer.quantization[proj]
    shape = next(t.shape for t in layer.tensors if t.name == f"{proj}.weight")
    out_dim, packed = shape
    in_dim = packed * 32 // q["bits"]
    dt = compute_dtype(mx.bfloat16)
    # Several copies, used in turn, so the weights come from memory as a decode's do, not from the CPU's
    # caches (at least WEIGHTS_BEYOND_CACHES of them).
    copies = max(1, -(-WEIGHTS_BEYOND_CACHES // (out_dim * packed * 4)))
    mats = [
        mx.quantize(mx.random.normal((out_dim, in_dim)).astype(dt), q["group_size"], q["bits"]) for _ in range(copies)
    ]
    mx.eval(mats)
    w, scales, biases = mats[0]
    # Count the bytes as stored (bf16 scales), as the forecast's byte counts are.
    weight_bytes = w.nbytes + (scales.size + biases.size) * 2
    turns = itertools.cycle(mats)

    streams = cpu_split.streams(parts)
    compiled = compiled_kernels() and cpu_quantized.supports(
        dt, w, scales, biases, q["group_size"], q["bits"], "affine"
    )

    def products(x, tiny=None) -> int:
        """The engine's products on x at once (on the next copy of the weights, or on `tiny`); returns how many."""
        w, scales, biases = tiny or next(turns)
        if dequant_matmul.enabled() and dequant_matmul.many_rows(x):
            outs = []
            for stream in streams:
                with cpu_split.on(stream):
                    outs.append(dequant_matmul.matmul(x, w, scales, biases, q["group_size"], q["bits"], "affine"))
            mx.eval(outs)
            return len(outs)
        if compiled:  # one product on every part's thread
            mx.eval(cpu_quantized.matmul(x, w, scales, biases, q["group_size"], q["bits"], parts))
            return 1
        outs = []
        for stream in streams:
            with cpu_split.on(stream):
                outs.append(mx.quantized_matmul(x, w, scales, biases, True, q["group_size"], q["bits"]))
        mx.eval(outs)
        return len(outs)

    def rate(n: int) -> float:
        x = mx.random.normal((n, in_dim)).astype(dt)
        products(x)  # warm up
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or done < 3:
            done += products(x)
        return done * n * weight_bytes / (time.perf_counter() - t0)

    tiny = mx.quantize(mx.random.normal((q["group_size"], q["group_size"])).astype(dt), q["group_size"], q["bits"])
    x1 = mx.random.normal((1, q["group_size"])).astype(dt)
    mx.eval(tiny, x1)
    products(x1, tiny)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 3 or done < 3:
        done += products(x1, tiny)
    call_s = (time.perf_counter() - t0) / done
    return ComputeTest({int(r): rate(int(r)) for r in sorted(set(rows))}, call_s=call_s)


def attention_layers(config: dict) -> int:
    """How many of the model's layers attend over the whole context (a hybrid's linear layers do not)."""
    c = text_config(config)
    layers = int(c.get("num_hidden_layers", 1))
    if c.get("full_attention_interval"):
        return max(1, layers // int(c["full_attention_interval"]))
    return layers


def measure_attention(config: dict, prompts: tuple[int, ...], parts: int = 1, longest: int = 2048) -> dict:
    """Seconds one layer's attention takes over a prompt of each length, as the engine computes it
    (cpu_attention.py), timed at up to `longest` tokens and scaled by the square of the length beyond."""
    import mlx.core as mx

    from .cpu_attention import prefill_attention
    from .device import compute_dtype

    c = text_config(config)
    heads = int(c.get("num_attention_heads", 8))
    kv_heads = int(c.get("num_key_value_heads", heads) or heads)
    head_dim = int(c.get("head_dim") or int(c.get("hidden_size", 1024)) // heads)
    dt = compute_dtype(mx.bfloat16)

    def seconds(n: int) -> float:
        q = mx.random.normal((1, heads, n, head_dim)).astype(dt)
        k, v = (mx.random.normal((1, kv_heads, n, head_dim)).astype(dt) for _ in range(2))
        mx.eval(q, k, v)
        t0 = time.perf_counter()
        mx.eval(prefill_attention(q, k, v, head_dim**-0.5, parts))
        return time.perf_counter() - t0

    seconds(min(128, longest))  # warm up
    out = {}
    for p in sorted(set(prompts)):
        n = min(p, longest)
        out[p] = seconds(n) * (p / n) ** 2
    return out


def _quantized_resident_bytes(path: Path, manifest: mf.Manifest) -> tuple[int, int, int]:
    """Bytes of the resident quantized weights a token goes through (the embedding is a lookup),
    of those the output head's (a prefill computes it for the last token only), and how many
    quantized layers they are (a decode token's products on them)."""
    import struct

    total = head = 0
    layers = set()
    for f in manifest.files:
        if not f.file.endswith(".safetensors"):
            continue
        with open(path / f.file, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        quantized = {k.rsplit(".", 1)[0] for k in header if k.endswith(".scales")}
        for name, t in header.items():
            module, _, leaf = name.rpartition(".")
            if module in quantized and "embed" not in module and leaf in ("weight", "scales", "biases"):
                a, b = t["data_offsets"]
                total += b - a
                head += b - a if "lm_head" in module else 0
                layers.add(module)
    return total, head, len(layers)


@dataclass
class Forecast:
    memory: MemoryPlan
    reads: ReadTest
    compute: ComputeTest
    layers: int
    experts: int
    top_k: int
    blob_bytes: int
    decode: dict  # "warm"/"cold" -> {"tok_per_s", "bytes_per_token", "hit_rate"}
    prefill: dict  # str(prompt tokens) -> {"warm"/"cold" -> {"tok_per_s", "ttft_s", "bytes"}}

    def as_dict(self) -> dict:
        d = asdict(self)
        d["memory"] = self.memory.as_dict()
        return d


def forecast(
    path: str | os.PathLike,
    memory_bytes: int,
    baseline: int,
    prompts: tuple[int, ...] = (32, 1500),
    context_tokens: int = 4096,
    max_batch: int = 1,
    read_seconds: float = 1.0,
    expert_cache_gb: float | None = None,
    cpu_threads: int | None = None,
) -> Forecast:
    """expert_cache_gb: forecast that cache (as load(expert_cache_gb=...) sizes it) instead of the
    one memory_bytes leaves room for. cpu_threads: as load's (None: every core, on the CPU)."""
    from .cpu_split import parts_for

    path = Path(path)
    manifest = mf.read_manifest(path)
    parts = parts_for(cpu_threads)
    plan = plan_memory(path, memory_bytes, baseline, max_batch=max_batch, context_tokens=context_tokens, parts=parts)
    if expert_cache_gb is not None:
        most = max((layer.num_experts for layer in manifest.layers), default=0)
        slots = min(int(expert_cache_gb * (1 << 30)) // plan.bytes_per_expert, most) if plan.bytes_per_expert else 0
        plan.cache_slots, plan.cache_bytes = int(slots), int(slots * plan.bytes_per_expert)
    reads = measure_reads(path, manifest, read_seconds)
    layers = len(manifest.layers)
    experts = max((layer.num_experts for layer in manifest.layers), default=0)
    k = plan.top_k

    def touched(p: int) -> float:
        return experts * (1 - (1 - k / experts) ** p) if experts else 0.0

    expert_rows = {p: max(1, round(p * k / touched(p))) if experts else 1 for p in prompts}
    dense_rows = {p: min(p, 256) for p in prompts}
    compute = measure_compute(manifest, (1, *expert_rows.values(), *dense_rows.values()), parts=parts)
    config = json.loads((path / "config.json").read_text())
    compute.attention_s = measure_attention(config, prompts, parts)
    attending = attention_layers(config)
    blob = max((layer.blob_size for layer in manifest.layers), default=0)
    hit = min(1.0, plan.cache_slots / experts) if experts else 0.0
    dense, head, dense_layers = _quantized_resident_bytes(path, manifest)
    per_token_weights = dense + layers * k * blob  # stored bytes a decode token computes with
    rate1 = compute.rates.get(1) or 1.0
    compute_s = per_token_weights / rate1
    # A token's product calls, each with its fixed cost: the resident layers', and each MoE layer's
    # projections in about two stages (the experts in memory, then the ones read).
    projections = max((len(layer.quantization) for layer in manifest.layers if layer.num_experts), default=0)
    calls_s = (
        dense_layers + 2 * projections * sum(1 for layer in manifest.layers if layer.num_experts)
    ) * compute.call_s
    # On the CPU the reads' copies into the bank take the cores the compute uses: they add up. A GPU
    # computes while the CPU reads.
    from .device import on_cpu

    overlap = not on_cpu()
    decode, prefill = {}, {}
    for name, gbps in (("warm", reads.warm_gbps), ("cold", reads.cold_gbps)):
        read_bytes = layers * k * blob * (1 - hit)
        read_s = read_bytes / (gbps * 1e9) if gbps else 0.0
        first = layers * (blob / (gbps * 1e9)) * (1 - hit) if gbps else 0.0
        t = compute_s + (max(0.0, read_s - compute_s) if overlap else read_s) + first + calls_s
        decode[name] = {"tok_per_s": 1 / t if t else 0.0, "bytes_per_token": read_bytes, "hit_rate": hit}
    for p in prompts:
        # Each touched expert multiplies its share of the prompt's rows; the dense weights all rows.
        rate_e = compute.rates.get(expert_rows[p]) or 1.0
        rate_d = compute.rates.get(dense_rows[p]) or 1.0
        prefill_compute = (p * (dense - head) + head) / rate_d + layers * p * k * blob / rate_e
        prefill_compute += attending * compute.attention_s[p]  # a third of a 1,500-token prefill on the CPU
        row = {}
        for name, gbps in (("warm", reads.warm_gbps), ("cold", reads.cold_gbps)):
            read_bytes = layers * touched(p) * blob
            read_s = read_bytes / (gbps * 1e9) if gbps else 0.0
            t = prefill_compute + read_s  # a prefill's groups wait for their reads
            row[name] = {"tok_per_s": p / t if t else 0.0, "ttft_s": t, "bytes": read_bytes}
        prefill[str(p)] = row
    return Forecast(plan, reads, compute, layers, experts, k, blob, decode, prefill)
