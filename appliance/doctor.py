"""The checks of `almanac doctor` and of the console's Status page: each says OK or FAIL, and how to fix a failure."""

from __future__ import annotations

import shutil
import socket
import sys
from dataclasses import dataclass

from .config import Config
from .datadir import DataDir, prepare
from .runtime.pidfile import health

MIN_FREE_BYTES = 1 << 30


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}

    def line(self) -> str:
        text = f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text}\n     fix: {self.fix}"


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 10)
    return Check(
        "python",
        ok,
        f"{v.major}.{v.minor}.{v.micro} at {sys.executable}",
        "install Python 3.10 or newer and re-run install.sh --python /path/to/python3",
    )


def check_mlx() -> Check:
    try:
        import llm_engine  # noqa: F401  first: MLX binds its CPU BLAS as it loads (llm_engine/cpu_blas.py)
        import mlx.core as mx

        device = mx.default_device()
        value = (mx.arange(4, dtype=mx.float32) * 2).sum().item()
        if value != 12:
            return Check("mlx", False, f"wrong arithmetic on {device}", "reinstall mlx: almanac's install.sh")
        from llm_engine import cpu_blas, cpu_quantized
        from llm_engine.device import backend

        kind = {"metal": "Metal GPU", "cuda": "CUDA GPU"}.get(
            backend(),
            f"CPU only (no GPU here; the assistant is slower), {cpu_blas.describe()}, {cpu_quantized.describe()}",
        )
        return Check("mlx", True, f"{mx.__version__} on {kind}")
    except Exception as e:  # an import failure is exactly what this check reports
        fix = "pip install 'mlx[cpu]' (Linux) or 'mlx' (macOS) into Almanac's venv; re-running install.sh does it"
        return Check("mlx", False, f"cannot use MLX ({str(e).splitlines()[0] if str(e) else type(e).__name__})", fix)


def check_libzim() -> Check:
    try:
        import libzim
        from libzim.reader import Archive  # noqa: F401

        from importlib.metadata import version

        versions = dict(libzim.version.get_versions())
        return Check("libzim", True, f"libzim {versions.get('libzim', '?')} (python-libzim {version('libzim')})")
    except Exception as e:
        return Check("libzim", False, f"cannot import libzim ({e})", "pip install libzim into Almanac's venv")


def check_data_dir(config: Config) -> tuple[Check, DataDir | None]:
    try:
        data = prepare(config)
        return Check("data dir", True, f"{data.root} is writable"), data
    except Exception as e:
        return Check(
            "data dir", False, str(e), "set data_dir in the config (or ALMANAC_DATA) to a writable folder"
        ), None


def check_disk(data: DataDir) -> Check:
    free = shutil.disk_usage(data.root).free
    ok = free >= MIN_FREE_BYTES
    return Check(
        "disk", ok, f"{free / 1e9:.1f} GB free in {data.root}", "free some space, or move data_dir to a bigger disk"
    )


def check_port(config: Config) -> Check:
    host, port = config.get("server.host"), config.get("server.port")
    info = health(host, port, timeout=1.5)
    if info and info.get("status") == "ok":
        return Check("port", True, f"{port} is served by Almanac {info.get('version', '')}".rstrip())
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return Check("port", True, f"{host}:{port} is free")
        except OSError as e:
            return Check(
                "port",
                False,
                f"cannot use {host}:{port} ({e.strerror})",
                f"stop the program using port {port}, or `almanac config set server.port 8081`",
            )


def check_library(data: DataDir) -> Check:
    from content.library import Library

    try:
        library = Library(data.db, data.archives)
        books = library.count()
        library.close()
        return Check("library", True, f"{books} book{'s' if books != 1 else ''} registered in {data.db}")
    except Exception as e:
        return Check(
            "library",
            False,
            f"state database unusable ({e})",
            f"move {data.db} aside; `almanac content add` re-registers the archives",
        )


def check_assistant(config: Config, data: DataDir) -> Check:
    """The model server the assistant asks. Having none is fine (passages only); a configured one down is not."""
    from .assistant.model_client import probe

    url, directory = str(config.get("assistant.url")), data.model_path(config.get("assistant.model_dir"))
    if not url:
        return Check("assistant", True, "no model configured (assistant.url is empty): passages only")
    state = probe(url)
    if state.message and not state.models and directory is not None:
        return Check(
            "assistant",
            False,
            state.message,
            f"start the portal (`almanac serve`), which runs {directory}; see {data.logs / 'model.log'}",
        )
    if not state.available:
        return Check("assistant", True, f"no model running (passages only): {state.message}")
    return Check("assistant", True, f"{', '.join(state.models)} answering at {url}")


def check_deep_model(config: Config, data: DataDir) -> Check:
    """The deep model of waiting answers: configured, loadable (its converted folder, when Almanac runs it), and
    its server answering with the model asked for. None configured is fine: there are no waiting answers."""
    from .assistant.model_client import probe

    quick, deep = config.get("assistant"), config.get("assistant.deep")
    url = str(deep["url"]).strip()
    if not url:
        return Check("deep model", True, "none configured (assistant.deep.url is empty): no waiting answers")
    shared = url.rstrip("/") == str(quick["url"]).strip().rstrip("/")
    key = "assistant.model_dir" if shared else "assistant.deep.model_dir"
    directory = data.model_path(quick["model_dir"] if shared else deep["model_dir"])
    log = data.logs / ("model.log" if shared else "model-deep.log")
    if directory is not None:
        try:
            from llm_engine.checks import info

            info(directory)
        except Exception as e:  # a missing or damaged manifest: the server could never load it
            return Check(
                "deep model",
                False,
                f"{key} {directory} is not a loadable converted model ({e})",
                f"convert one with `almanac model convert SRC {directory}`, or `almanac config set {key} NAME`",
            )
    state = probe(url, str(deep["model"]))
    if not state.models:
        fix = (
            f"start the portal (`almanac serve`), which runs {directory} and restarts it if it dies; see {log}"
            if directory is not None
            else f"start the model server at {url}, or `almanac config set assistant.deep.url URL`"
        )
        return Check("deep model", False, f"waiting answers wait: {state.message}", fix)
    if deep["model"] and deep["model"] not in state.models:
        return Check(
            "deep model",
            False,
            f"the server at {url} lists {', '.join(state.models)}, not {deep['model']}",
            f"`almanac config set assistant.deep.model {state.models[0]}` (or empty: the first it lists)",
        )
    return Check("deep model", True, f"{state.model} answering at {url}" + (" (the quick model's)" if shared else ""))


def run_checks(config: Config) -> list[Check]:
    checks = [check_python()]
    dir_check, data = check_data_dir(config)
    checks.append(dir_check)
    if data:
        checks += [check_disk(data), check_library(data)]
    checks += [check_libzim(), check_mlx(), check_port(config)]
    if data:
        checks += [check_assistant(config, data), check_deep_model(config, data)]
    return checks
