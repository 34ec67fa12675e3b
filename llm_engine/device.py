"""Every device-specific choice lives here.

MLX's CPU quantized kernels are many times slower in bf16/fp16 than in fp32, so on the CPU
all floating weights, scales and activations are fp32. On Metal the stored dtype (usually
bf16) is kept, as mlx-lm does.
"""

import mlx.core as mx
from mlx.utils import tree_map_with_path


def on_cpu() -> bool:
    return mx.default_device().type == mx.cpu


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


def peak_memory_bytes() -> int:
    """Peak memory MLX allocated since the last reset (0 if unknown)."""
    try:
        return int(mx.get_peak_memory())
    except AttributeError:  # older MLX
        return 0


def reset_peak_memory() -> None:
    try:
        mx.reset_peak_memory()
    except AttributeError:
        pass
