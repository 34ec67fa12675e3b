"""Almanac's SSD-streaming Mixture-of-Experts engine on MLX.

    engine = llm_engine.load("/models/qwen3-30b-a3b-stream", expert_cache_gb=4)
    result = llm_engine.generate(engine, "Why is the sky blue?", max_tokens=128)
    for step in llm_engine.stream_generate(engine, "Hello", max_tokens=32):
        print(step.text, end="")
"""

from .converter import convert
from .errors import CheckpointError, EngineError, UnsupportedModelError
from .generate import Result, Step, generate, stream_generate
from .checks import Problem, info, verify
from .loader import Engine, load
from .server import make_server, serve
from .worker import Job, Worker

SUPPORTED_MLX_LM = ">=0.32,<0.33"

__all__ = [
    "CheckpointError", "Engine", "EngineError", "Problem", "Result", "Step",
    "UnsupportedModelError", "Job", "Worker", "convert", "generate", "info", "load",
    "make_server", "serve", "stream_generate", "verify", "SUPPORTED_MLX_LM",
]
