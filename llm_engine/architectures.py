"""Reuse of mlx-lm's model definitions: build a model from a config, find its switch layers."""

from __future__ import annotations

import mlx.nn as nn
from mlx_lm.models.switch_layers import SwitchGLU, SwitchMLP
from mlx_lm.utils import _get_classes

from .errors import UnsupportedModelError

# mlx-lm keeps the routed experts of every MoE model it supports in one of these.
SWITCH_TYPES = (SwitchGLU, SwitchMLP)

# Names under which mlx-lm's MoE blocks (or their routers) keep the number of routed
# experts per token.
TOP_K_ATTRIBUTES = ("top_k", "num_experts_per_tok", "num_experts_per_token")


def build_model(config: dict) -> nn.Module:
    """An mlx-lm model for `config` with lazily initialised (never materialised) weights."""
    model_type = config.get("model_type")
    if not model_type:
        raise UnsupportedModelError("config.json: field 'model_type' is missing")
    try:
        model_class, args_class = _get_classes(config)
    except ValueError:
        raise UnsupportedModelError(
            f"config.json: model_type {model_type!r} is not supported by the installed mlx-lm"
        ) from None
    model = model_class(args_class.from_dict(config))
    return model


def switch_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(dotted path, module) for every switch layer, in model order."""
    found = [(p, m) for p, m in model.named_modules() if isinstance(m, SWITCH_TYPES)]
    # named_modules() walks leaves first; order by layer number so layer files are numbered
    # in model order.
    return sorted(found, key=lambda pm: _path_key(pm[0]))


def _path_key(path: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.split(".")]


def get_module(model: nn.Module, path: str) -> nn.Module:
    m = model
    for part in path.split("."):
        m = m[int(part)] if isinstance(m, list) else m[part]
    return m


def set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = get_module(model, parent_path) if parent_path else model
    if isinstance(parent, list):
        parent[int(name)] = new
    else:
        setattr(parent, name, new)
