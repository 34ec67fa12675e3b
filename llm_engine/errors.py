"""Errors raised by the engine. Each names the file or manifest field at fault."""


class EngineError(Exception):
    """Base class for every error the engine raises on bad input."""


class CheckpointError(EngineError):
    """A converted checkpoint is missing, truncated, corrupt or inconsistent."""


class UnsupportedModelError(EngineError):
    """The architecture is unknown to mlx-lm or has no switch (MoE) layers."""
