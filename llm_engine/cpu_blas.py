"""The BLAS MLX's CPU backend calls: the system's OpenBLAS where there is one, bound before MLX loads.

The mlx[cpu] wheel for Linux carries netlib's reference BLAS (unvectorised, one thread), and MLX's
CPU matmul and attention call its cblas_sgemm. Loading OpenBLAS with RTLD_GLOBAL before libmlx is
loaded puts its cblas_sgemm first in the search order, so libmlx binds there instead: 93x on a
prefill's fp32 matmul, 6.5x on its attention (bench/cpu_blas.py). Importing this module binds
(llm_engine/__init__.py imports it before anything that loads MLX); it imports no MLX itself.

OpenBLAS runs on one thread here: the engine's CPU streams are its parallelism (cpu_split.py), one
core each, and one BLAS thread per stream measured fastest (a prefill's experts: 0.55 s on two
streams of one thread, 0.70 s with two threads each, on two cores).

    ALMANAC_CPU_BLAS=off       keep the wheel's BLAS (benchmarks compare the two)
    ALMANAC_CPU_BLAS=/path.so  bind this OpenBLAS instead of the loader's libopenblas.so.0

Debian and Ubuntu: `apt install libopenblas0-pthread` (install.sh does). On macOS the wheel's
BLAS is Accelerate and nothing is bound.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

DEFAULT_LIBRARY = "libopenblas.so.0"

_state: dict = {"tried": False, "bound": False, "library": None, "why": "bind() was not called"}


def _libmlx_loaded() -> bool:
    try:
        return "libmlx" in Path("/proc/self/maps").read_text()
    except OSError:
        return "mlx.core" in sys.modules


def bind() -> bool:
    """Bind MLX's CPU BLAS calls to OpenBLAS, if it can still be done in this process; says why not in
    describe(). Called once, before MLX is imported; later calls change nothing."""
    if _state["tried"]:
        return _state["bound"]
    _state["tried"] = True
    choice = os.environ.get("ALMANAC_CPU_BLAS", "").strip()
    if not sys.platform.startswith("linux"):
        _state["why"] = "not Linux: MLX's own BLAS is kept"
    elif choice.lower() in ("off", "0", "no", "wheel"):
        _state["why"] = "ALMANAC_CPU_BLAS=off"
    elif _libmlx_loaded():
        _state["why"] = "MLX was loaded before llm_engine, with the BLAS its wheel ships"
    else:
        library = choice or DEFAULT_LIBRARY
        try:
            blas = ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
            blas.openblas_set_num_threads(1)
            blas.openblas_get_config.restype = ctypes.c_char_p
            config = blas.openblas_get_config().decode(errors="replace")
        except (OSError, AttributeError) as e:
            _state["why"] = f"no OpenBLAS ({library}: {e}); on Debian/Ubuntu: apt install libopenblas0-pthread"
        else:
            _state.update(bound=True, library=library, why=config)
    return _state["bound"]


def bound() -> bool:
    """True when MLX's CPU matmuls run on OpenBLAS in this process."""
    return _state["bound"]


def describe() -> str:
    """One line for `almanac doctor` and `almanac model serve`: which BLAS, or why the wheel's."""
    if _state["bound"]:
        version = " ".join(_state["why"].split()[:2])  # "OpenBLAS 0.3.21" of its build line
        return f"{version} ({_state['library']}, one thread per CPU stream)"
    return f"the MLX wheel's BLAS ({_state['why']})"


bind()
