"""Every device-specific choice lives here, detected from the MLX backend, never configured.

- cpu: floating weights, scales and activations in fp32 (MLX's CPU quantized kernels are many
  times slower in bf16/fp16); bf16 scales and biases are widened exactly as they are read;
  experts are read with preadv straight into the bank, and a call is computed stage by stage
  while the rest of its experts are read. Where OpenBLAS is bound (cpu_blas.py, Linux), a
  prefill's quantized products are dequantize + matmul (dequant_matmul.py) and its attention is
  computed in blocks of rows (cpu_attention.py): prefill_dequantizes(). The other quantized
  products (a decode step's few rows) run on kernels compiled by Numba where it is installed
  (cpu_quantized.py): compiled_kernels().
- metal: the stored dtype (bf16), as mlx-lm; preadv into the bank (unified memory).
- cuda: the stored dtype (bf16), as mlx-lm; the bank is CUDA managed memory advised to stay
  in host RAM, read straight into by preadv and read by the GPU over the bus ("host", the
  fastest of the four paths measured on an H200; ALMANAC_CUDA_READ picks another).

On both GPUs every read goes to the I/O pool and a call runs as one switch-layer call once
its experts are in (the kernels are picked by shape, so split calls would change the numbers):
the bank that calls without a cache share holds a whole layer's experts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import mlx.core as mx
from mlx.utils import tree_map_with_path


def backend() -> str:
    """'cpu', 'metal' or 'cuda': where MLX computes by default in this process."""
    if mx.default_device().type == mx.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    return "cuda"


def on_cpu() -> bool:
    return backend() == "cpu"


def prefill_dequantizes() -> bool:
    """True on the CPU with MLX's matmuls on OpenBLAS: a prefill's many-row quantized products are
    computed as dequantize + matmul there (dequant_matmul.py), within 1e-4 of resident mlx-lm."""
    from . import cpu_blas

    return on_cpu() and cpu_blas.bound()


def compiled_kernels() -> bool:
    """True on the CPU with Numba installed (ALMANAC_CPU_KERNELS=off says no): few-row quantized
    products (a decode step's) run on kernels compiled by Numba (cpu_quantized.py), within 1e-4 of
    resident mlx-lm, instead of MLX's single-threaded CPU kernel."""
    import importlib.util

    if not on_cpu() or os.environ.get("ALMANAC_CPU_KERNELS", "").lower() == "off":
        return False
    return importlib.util.find_spec("numba") is not None


def compute_dtype(stored: mx.Dtype) -> mx.Dtype:
    """The dtype a floating tensor stored as `stored` is held in while computing."""
    if not mx.issubdtype(stored, mx.floating):
        return stored
    return mx.float32 if on_cpu() else stored


def cast_model(model) -> None:
    """Move a model's floating parameters to the compute dtype of this device."""
    if not on_cpu():
        return

    def cast(_path, v):
        if mx.issubdtype(v.dtype, mx.floating) and v.dtype != mx.float32:
            return v.astype(mx.float32)
        return v

    model.update(tree_map_with_path(cast, model.parameters()))


@dataclass(frozen=True)
class ReadPath:
    """How experts read on the host reach the memory the device computes from."""

    name: str
    # Compute each stage of a call's experts while the next is read (CPU: bit-identical to one
    # call over all pairs). Off on GPUs, whose kernels are chosen by shape: a call then runs as
    # one switch-layer call shaped exactly as mlx-lm's, so the numbers are the same.
    staged: bool = True
    # Copy experts found in the page cache on the ordering thread, one after another, so the
    # first is ready soonest and copies leave the other cores to MLX's CPU kernels. Off on
    # GPUs, which compute on no CPU core: every read goes to the I/O pool, in parallel.
    inline_cached: bool = True
    # CUDA managed banks: after a stage of reads, move the written slots to the GPU in bulk.
    prefetch: bool = False
    # CUDA managed banks kept in host RAM, read by the GPU in place.
    host_banks: bool = False
    # CUDA: each expert lands in a host buffer and is copied into the bank by the driver.
    copy_in: bool = False
    # CUDA banks in host RAM: a call of at least this many tokens (a prefill) computes from a copy
    # of the bank in GPU memory, made in one pass, instead of reading the weights over the bus
    # once per tile of rows. 0: never.
    device_copy_tokens: int = 0


CUDA_READ_PATHS = {
    "fault": ReadPath("cuda-fault", staged=False, inline_cached=False),
    "prefetch": ReadPath("cuda-prefetch", staged=False, inline_cached=False, prefetch=True),
    "host": ReadPath("cuda-host", staged=False, inline_cached=False, host_banks=True, device_copy_tokens=32),
    "copy": ReadPath("cuda-copy", staged=False, inline_cached=False, copy_in=True),
}


def read_path() -> ReadPath:
    kind = backend()
    if kind == "cpu":
        return ReadPath("cpu")
    if kind == "metal":
        return ReadPath("metal", staged=False, inline_cached=False)
    # ALMANAC_CUDA_READ picks another path (benchmarks compare them).
    return CUDA_READ_PATHS[os.environ.get("ALMANAC_CUDA_READ", "host")]


def prefetch_slots(rows: list, slots, nbytes: list[int]) -> None:
    """Migrate `slots` of every bank tensor (numpy views of managed memory) to the GPU."""
    from .cuda_memory import runtime

    if len(slots) == 0:
        return
    cuda = runtime()
    lo, hi = int(min(slots)), int(max(slots)) + 1
    for view, n in zip(rows, nbytes):
        cuda.prefetch_to_device(view.ctypes.data + lo * n, (hi - lo) * n)
    cuda.synchronize()


def keep_on_host(rows: list) -> None:
    from .cuda_memory import runtime

    for view in rows:
        runtime().keep_on_host(view.ctypes.data, view.nbytes)


def copy_into(dst, src) -> None:
    """Copy the host bytes `src` into `dst` (a numpy view of CUDA managed memory)."""
    from .cuda_memory import runtime

    runtime().copy(dst.ctypes.data, src.ctypes.data, src.nbytes)


def peak_memory_bytes() -> int:
    """Peak memory MLX allocated since the last reset (0 if unknown)."""
    try:
        return int(mx.get_peak_memory())
    except AttributeError:  # older MLX
        return 0


def active_memory_bytes() -> int:
    try:
        return int(mx.get_active_memory())
    except AttributeError:
        return 0


def reset_peak_memory() -> None:
    try:
        mx.reset_peak_memory()
    except AttributeError:
        pass
