"""Load a converted checkpoint: resident weights in memory, experts left on disk."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from . import manifest as mf
from . import cpu_attention, cpu_quantized, cpu_split, dequant_matmul
from .device import cast_model, compiled_kernels, read_path
from .errors import CheckpointError, EngineError, UnsupportedModelError
from .hot_list import Keeper
from .memory import budget_bytes, parse_memory_gb, plan_memory, process_rss
from .architectures import TOP_K_ATTRIBUTES, build_model, get_module, set_module, switch_modules
from .store import Bank, IOStats, LayerStore, alloc_bank, bank_signature
from .switch import StreamingSwitch

IO_THREADS = 8


@dataclass
class Engine:
    """A loaded model ready to generate; see llm_engine.generate."""

    path: Path
    model: nn.Module
    tokenizer: object  # mlx_lm TokenizerWrapper
    config: dict
    manifest: mf.Manifest
    stores: list[LayerStore]
    io: IOStats
    cache_slots: int
    experts_per_token: int | None
    # The most sequences decoded together (BatchGenerator); the shared bank holds their top-k.
    max_batch: int = 1
    # How --memory-gb was split (memory.MemoryPlan), or None when the cache was given in GB.
    memory_plan: object | None = None
    # mlx-lm's LRUPromptCache: the KV caches of recent prompts (with their answers), so a
    # prompt that extends one (a follow-up question) computes only its new tokens.
    prompt_cache: object | None = None
    _pools: tuple = field(repr=False, default=())
    trained_experts_per_token: int = 0  # what the model routes to without an override; 0: dense
    hot_list: object | None = None  # hot_list.Keeper when load() was given a hot list file

    def save_hot_list(self, force: bool = False) -> None:
        """Write the hot list (at most once a minute unless forced); a no-op without one."""
        if self.hot_list is not None:
            self.hot_list.save(force)

    def close(self) -> None:
        self.save_hot_list(force=True)
        self.hot_list = None
        for pool in self._pools:
            pool.shutdown(wait=True)
        for s in self.stores:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def resident_bytes(self) -> int:
        return sum(v.nbytes for _, v in tree_flatten(self.model.parameters()))

    def bank_bytes(self) -> int:
        banks = {id(s.bank): s.bank_bytes_per_expert * s.bank.size for s in self.stores if s.bank}
        return sum(banks.values())


def _read_config(path: Path) -> dict:
    from mlx_lm.utils import load_config

    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path / 'config.json'}: not found")
    try:
        return load_config(path)
    except ValueError as e:
        raise CheckpointError(f"{path / 'config.json'}: not valid JSON ({e})") from None


def _check_files(path: Path, manifest: mf.Manifest) -> None:
    for i, f in enumerate(manifest.files):
        p = path / f.file
        if not p.is_file():
            raise CheckpointError(f"{p}: missing (listed in manifest.json files[{i}])")
        if p.stat().st_size != f.size:
            raise CheckpointError(f"{p}: {p.stat().st_size} bytes but manifest.json files[{i}].size says {f.size}")


def _quantize(model: nn.Module, config: dict, manifest: mf.Manifest, weights: dict) -> None:
    """Rebuild quantized modules as mlx-lm's loader does, taking switch layers from the manifest."""
    from mlx_lm.utils import infer_quant_config

    per_path = config.get("quantization", {})
    switch_quant = {}
    for layer in manifest.layers:
        for proj, q in layer.quantization.items():
            switch_quant[f"{layer.module}.{proj}"] = q

    def predicate(p, m):
        if p in switch_quant:
            return dict(switch_quant[p])
        if p in per_path:
            return per_path[p]
        if not hasattr(m, "to_quantized") or f"{p}.scales" not in weights:
            return False
        return infer_quant_config(p, m, weights)

    q = config.get("quantization") or {"group_size": 64, "bits": 4}
    nn.quantize(
        model,
        group_size=q.get("group_size", 64),
        bits=q.get("bits", 4),
        mode=q.get("mode", "affine"),
        class_predicate=predicate,
    )


def _check_switch(module: nn.Module, layer: mf.LayerSpec, index: int) -> None:
    expected = {t.name: t for t in layer.tensors}
    actual = dict(tree_flatten(module.parameters()))
    where = f"manifest.json layers[{index}]"
    if set(expected) != set(actual):
        raise CheckpointError(f"{where}.tensors: names {sorted(expected)} do not match the model's {sorted(actual)}")
    for j, t in enumerate(layer.tensors):
        a = actual[t.name]
        if list(a.shape[1:]) != t.shape or a.shape[0] != layer.num_experts:
            raise CheckpointError(
                f"{where}.tensors[{j}].shape: {t.shape} x {layer.num_experts} experts does not "
                f"match the model's {list(a.shape)}"
            )
        if mf.dtype_name(a.dtype) != t.dtype and mx.issubdtype(a.dtype, mx.integer):
            raise CheckpointError(f"{where}.tensors[{j}].dtype: {t.dtype} does not match the model's {a.dtype}")


def _top_k_owners(model: nn.Module, path: str) -> list[tuple[nn.Module, str]]:
    """(module, attribute) pairs holding the experts-per-token count of one switch layer."""
    parent = get_module(model, path.rpartition(".")[0])
    owners = [parent] + [c for c in parent.children().values() if isinstance(c, nn.Module)]
    found = []
    for owner in owners:
        for attr in TOP_K_ATTRIBUTES:
            current = getattr(owner, attr, None)
            if isinstance(current, int) and not isinstance(current, bool):
                found.append((owner, attr))
    return found


def top_k_of(model: nn.Module, path: str, default: int) -> int:
    owners = _top_k_owners(model, path)
    return max(getattr(o, a) for o, a in owners) if owners else default


def set_experts_per_token(model: nn.Module, switch_paths: list[str], k: int) -> None:
    """Route every token to k experts instead of the trained number (a quality trade-off)."""
    for path in switch_paths:
        owners = _top_k_owners(model, path)
        if not owners:
            raise UnsupportedModelError(f"{path}: cannot find where this model keeps its experts per token")
        if not 1 <= k <= get_module(model, path).store.spec.num_experts:
            raise EngineError(f"--experts-per-token {k} is out of range")
        for owner, attr in owners:
            setattr(owner, attr, k)


def _materialize(model: nn.Module) -> None:
    """Evaluate the resident weights one tensor at a time, then hand MLX's buffer cache back.

    Evaluated all at once, every stored bf16 tensor would coexist with its fp32 cast (on the
    CPU) and the freed copies would stay in MLX's cache: ~10 % above the resident weights at
    the process's high-water mark. One at a time, a source is freed as soon as it is cast.
    """
    for _, v in tree_flatten(model.parameters()):
        mx.eval(v)
    mx.clear_cache()


def _attach_banks(
    model: nn.Module,
    paths: list[str],
    stores: list[LayerStore],
    default_top_k: int,
    max_batch: int = 1,
    prefetch: bool = False,
) -> None:
    """Give every layer a bank: its own cache slots, or one bank shared by same-shaped layers.

    A shared bank holds max_batch sequences' top-k experts, so a batched decode step reads and
    computes each layer's union in one group. With prefetch, layers without a cache take turns
    between two shared banks, so the next layer's experts can be read into one while this layer
    computes from the other. Where a call must run as one switch call (GPUs, see device.py),
    the shared bank holds a whole layer's experts, so a prefill chunk routed to all of them
    still runs in one call, and layers with cache slots use it for the calls their own bank
    cannot hold.
    """
    one_call = not read_path().staged
    sizes = [
        min(
            s.spec.num_experts,
            max(top_k_of(model, p, default_top_k) * (1 if s.cache_slots else max_batch), s.cache_slots),
        )
        for p, s in zip(paths, stores)
    ]
    shared_size: dict[tuple, int] = {}
    for store, size in zip(stores, sizes):
        if not store.cache_slots or (one_call and size < store.spec.num_experts):
            key = bank_signature(store.spec)
            wanted = store.spec.num_experts if one_call else size
            shared_size[key] = max(wanted, shared_size.get(key, 0))
    shared: dict[tuple, list[Bank]] = {}
    turns: dict[tuple, int] = {}

    def shared_bank(store: LayerStore, turn: int = 0) -> Bank:
        key = bank_signature(store.spec)
        banks = shared.setdefault(key, [])
        while len(banks) <= turn:
            banks.append(alloc_bank(store.spec, shared_size[key]))
        return banks[turn]

    for store, size in zip(stores, sizes):
        if not store.cache_slots:
            key = bank_signature(store.spec)
            turn = turns[key] = (turns.get(key, -1) + 1) % (2 if prefetch else 1)
            store.attach(shared_bank(store, turn), retain=False)
        elif one_call and size < store.spec.num_experts:
            store.attach(alloc_bank(store.spec, size), retain=True, scratch=shared_bank(store))
        else:
            store.attach(alloc_bank(store.spec, size), retain=True)


def router_guess(model: nn.Module, path: str, k: int):
    """A function guessing the experts of the switch layer at `path` from another layer's input:
    the layer's own router applied to it (mlx-lm keeps it beside the switch layer as `gate`, or
    `router`), or None when there is none to find."""
    parent = get_module(model, path.rpartition(".")[0])
    gate = getattr(parent, "gate", None) or getattr(parent, "router", None)
    if not callable(gate):
        return None

    def guess(x: mx.array) -> mx.array:
        out = gate(x)
        if isinstance(out, tuple):  # a router that picks its experts itself (DeepSeek's MoEGate)
            return out[0]
        return mx.argpartition(out, kth=-k, axis=-1)[..., -k:]

    return guess


def _link_prefetch(model: nn.Module, paths: list[str], default_top_k: int) -> None:
    """Each MoE layer guesses the next one's experts and reads them ahead (never into a bank the
    guessing layer computes from)."""
    switches = [get_module(model, p) for p in paths]
    for here, path, there in zip(switches, paths[1:], switches[1:]):
        if any(bank is there.store.banks()[0] for bank in here.store.banks()):
            continue
        guess = router_guess(model, path, top_k_of(model, path, default_top_k))
        if guess is not None:
            object.__setattr__(here, "next_store", there.store)
            object.__setattr__(here, "guess_next", guess)


def load(
    path: str | os.PathLike,
    expert_cache_gb: float = 0.0,
    experts_per_token: int | None = None,
    verify_reads: bool = True,
    io_threads: int = IO_THREADS,
    drop_page_cache: bool = False,
    prompt_cache_entries: int = 0,
    prompt_cache_gb: float = 2.0,
    max_batch: int = 1,
    memory_gb: float | str | None = None,
    context_tokens: int = 4096,
    prefetch: bool = False,
    hot_list: str | os.PathLike | None = None,
    cpu_threads: int | None = None,
) -> Engine:
    """Load a directory made by `convert`.

    expert_cache_gb: memory for experts kept between tokens (frequency-weighted LRU slots,
      split evenly over the MoE layers); 0 keeps none and relies on the OS page cache.
    experts_per_token: override of the number of routed experts per token. Off (None) by
      default: any other value changes the model's output (a quality trade-off).
    verify_reads: check each expert read against its CRC-32 from the manifest, so a
      corrupt file raises CheckpointError instead of producing garbage.
    drop_page_cache: for benchmarks (Linux): evict every expert from the OS page cache after
      reading it, as if the model were far larger than RAM.
    prompt_cache_entries: keep the KV caches of this many recent prompts (and their answers),
      at most prompt_cache_gb of them; a prompt that starts like one of them computes only
      the rest. 0: none.
    max_batch: the most sequences BatchGenerator decodes together; without an expert cache the
      shared bank is sized for their top-k experts (max_batch times one sequence's bank).
    memory_gb: the memory the whole process may use (GB, or "auto": 80 % of what the machine
      has free, plus what the process already uses). The expert cache gets what is left after
      the resident weights, the bank and the working memory for context_tokens tokens per
      sequence (memory.plan_memory); generation then refuses a prompt plus max_tokens longer
      than context_tokens. Not combined with expert_cache_gb.
    prefetch: each MoE layer applies the next layer's router to its own input and reads the
      experts it picks while it computes; the next layer still routes for itself and reads what
      the guess missed, so the output never changes. Costs a second streaming bank without an
      expert cache. Off by default: on the CPU bench its wrong guesses cost more reads than the
      overlap saves (llm_engine/README.md, "Benchmark"); not yet measured on a GPU.
    hot_list: a file (hot_list.py) counting how often each expert was routed to. With an expert
      cache, its hottest experts are read into the cache in the background as loading ends, and
      this run's counts are added to it at close (and by save_hot_list); without one, or with
      None, no file is read or written.
    cpu_threads: on the CPU, how many cores a call's work is spread over, each part on its own
      MLX stream (cpu_split.py: the same bits as one call). None: every core this process may
      use; 1: MLX's one thread. Nothing is split on a GPU.
    """
    if drop_page_cache and not hasattr(os, "posix_fadvise"):
        raise EngineError("drop_page_cache needs posix_fadvise (Linux)")
    from mlx_lm.utils import load_tokenizer

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory")
    if expert_cache_gb < 0:
        raise EngineError("--expert-cache-gb must be >= 0")
    if max_batch < 1:
        raise EngineError("max_batch must be >= 1")
    memory_gb = parse_memory_gb(memory_gb)
    if memory_gb is not None and expert_cache_gb:
        raise EngineError("give --memory-gb or --expert-cache-gb, not both")
    if context_tokens < 1:
        raise EngineError("context_tokens must be >= 1")
    if cpu_threads is not None and cpu_threads < 1:
        raise EngineError("--cpu-threads must be >= 1")
    parts = cpu_split.parts_for(cpu_threads)
    if prompt_cache_entries < 0 or prompt_cache_gb < 0:
        raise EngineError("the prompt cache's size must be >= 0")
    manifest = mf.read_manifest(path)
    config = _read_config(path)
    if config.get("model_type") != manifest.model_type:
        raise CheckpointError(
            f"manifest.json: field 'model_type' = {manifest.model_type!r} but config.json says "
            f"{config.get('model_type')!r}"
        )
    _check_files(path, manifest)
    try:
        tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id", None))
    except Exception as e:  # transformers raises many kinds for a missing/broken tokenizer
        raise CheckpointError(f"{path}: the tokenizer cannot be loaded ({e})") from None
    plan = None
    if memory_gb is not None:
        # Measured after the tokenizer: the interpreter, the libraries and the tokenizer are
        # what the process holds before any weight is loaded.
        baseline = process_rss()
        plan = plan_memory(
            path,
            budget_bytes(memory_gb, baseline),
            baseline,
            max_batch=max_batch,
            context_tokens=context_tokens,
            prompt_cache_bytes=int(prompt_cache_gb * (1 << 30)) if prompt_cache_entries else 0,
            prefetch=prefetch,
            parts=parts,
        )
    model = build_model(config)
    switches = switch_modules(model)  # none for a dense model: every weight resident
    paths = [p for p, _ in switches]
    if paths != [layer.module for layer in manifest.layers]:
        raise CheckpointError(
            f"manifest.json: field 'layers' lists {[l.module for l in manifest.layers]} but the "
            f"model's switch layers are {paths}"
        )

    weights = {}
    for f in manifest.files:
        if f.file.endswith(".safetensors"):
            try:
                weights.update(mx.load(str(path / f.file)))
            except Exception as e:  # MLX raises a bare RuntimeError/ValueError on bad files
                raise CheckpointError(f"{path / f.file}: cannot be read ({e})") from None
    if hasattr(model, "sanitize"):
        # As mlx-lm's loader does; idempotent on converted weights, and some models decide
        # their shape here (Gemma 3 drops lm_head when the embedding is tied).
        weights = model.sanitize(weights)
    _quantize(model, config, manifest, weights)

    io = IOStats()
    pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="expert-io")
    sequencer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expert-order")
    switches = switch_modules(model)  # the quantized modules
    per_expert = []
    stores: list[LayerStore] = []
    try:
        for i, ((p, module), layer) in enumerate(zip(switches, manifest.layers)):
            _check_switch(module, layer, i)
        budget = int(expert_cache_gb * (1 << 30))
        for (p, module), layer in zip(switches, manifest.layers):
            store = LayerStore(path, layer, pool, sequencer, io, verify_reads)
            store.drop_page_cache = drop_page_cache
            per_expert.append(store.bank_bytes_per_expert)
            stores.append(store)
        slots = min(
            budget // sum(per_expert) if budget and per_expert else 0,
            max((l.num_experts for l in manifest.layers), default=0),
        )
        if plan is not None:
            slots = plan.cache_slots
        for store, (p, module) in zip(stores, switches):
            store.cache_slots = min(slots, store.spec.num_experts)
            set_module(model, p, StreamingSwitch(module, store, parts))

        model.eval()
        try:
            model.load_weights(list(weights.items()), strict=True)
        except ValueError as e:
            raise CheckpointError(f"{path}: resident weights do not match the model ({e})") from None
        cast_model(model)
        cpu_split.split_linears(model, parts)
        cpu_attention.cut_attention(model, parts)
        if compiled_kernels():  # the switch layers' own projections sit outside the model's tree
            modules = [m for _, m in model.named_modules()]
            modules += [m for _, inner in switches for _, m in inner.named_modules()]
            cpu_quantized.prepare(modules, unpacking=dequant_matmul.enabled())
        del weights  # the stored (bf16) arrays: freed as each cast is evaluated, not at the end
        _materialize(model)
        trained_k = top_k_of(model, paths[0], int(config.get("num_experts_per_tok", 8))) if paths else 0
        if experts_per_token is not None:
            if not paths:
                raise EngineError("--experts-per-token: this model has no experts (a dense model)")
            set_experts_per_token(model, paths, experts_per_token)
        default_k = int(config.get("num_experts_per_tok", 8))
        _attach_banks(model, paths, stores, default_k, max_batch, prefetch)
        if prefetch:
            _link_prefetch(model, paths, default_k)
        if plan is not None:
            # Freed MLX buffers are kept for reuse up to this much, not up to the device's memory.
            mx.set_cache_limit(plan.working)
        # Without an expert cache nothing is kept between calls: no hot list to warm or to keep.
        keeper = Keeper(hot_list, stores) if hot_list is not None and slots else None
    except BaseException:
        for s in stores:
            s.close()
        pool.shutdown(wait=False)
        sequencer.shutdown(wait=False)
        raise
    prompt_cache = None
    if prompt_cache_entries:
        from mlx_lm.models.cache import LRUPromptCache

        prompt_cache = LRUPromptCache(max_size=prompt_cache_entries, max_bytes=int(prompt_cache_gb * (1 << 30)))
    return Engine(
        path,
        model,
        tokenizer,
        config,
        manifest,
        stores,
        io,
        slots,
        experts_per_token,
        max_batch,
        plan,
        prompt_cache,
        (sequencer, pool),
        trained_experts_per_token=trained_k,
        hot_list=keeper,
    )
