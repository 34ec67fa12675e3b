"""Almanac's SSD-streaming Mixture-of-Experts engine on MLX.

    engine = llm_engine.load("/models/qwen3-30b-a3b-stream", expert_cache_gb=4)
    result = llm_engine.generate(engine, "Why is the sky blue?", max_tokens=128)
    for step in llm_engine.stream_generate(engine, "Hello", max_tokens=32):
        print(step.text, end="")

Serving over HTTP (the OpenAI and Ollama APIs) lives in `llm_engine.serve`, which this module does not
import: loading the engine never starts or imports a web server.
"""

# First: importing cpu_blas binds MLX's CPU matmuls to OpenBLAS where there is one, which works only
# before anything (the imports below) loads MLX.
from . import cpu_blas  # noqa: F401
from .batch import BatchGenerator, BatchStep, batch_generate
from .checks import Problem, info, verify
from .converter import convert
from .errors import CheckpointError, EngineError, UnsupportedModelError
from .generate import Result, Step, generate, stream_generate
from .loader import Engine, load

SUPPORTED_MLX_LM = ">=0.32,<0.33"

__all__ = [
    "BatchGenerator",
    "BatchStep",
    "batch_generate",
    "CheckpointError",
    "Engine",
    "EngineError",
    "Problem",
    "Result",
    "Step",
    "UnsupportedModelError",
    "convert",
    "generate",
    "info",
    "load",
    "stream_generate",
    "verify",
    "SUPPORTED_MLX_LM",
]
