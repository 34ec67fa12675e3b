"""Models as content: pull a Hugging Face repository and convert it into the data dir's ``models/`` in one
step, or import a converted model folder; either way atomically — the model is built or copied under
``models/.partial/`` and renamed into place only once ``llm_engine.verify`` finds nothing wrong, so a failure
leaves nothing half-made in ``models/``.

The Hub is asked through ``huggingface_hub`` (``snapshot_download``), which honours ``HF_ENDPOINT``: a local
mirror on the LAN is that variable, ``--endpoint``, or the mirror's URL given as REPO_OR_URL
(``http://mirror:8080/ORG/NAME``). The download stays in ``models/.partial/`` until the conversion is done,
so a pull that was interrupted goes on from the files it already has.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

# What a conversion reads: configs, tokenizer files, safetensors weights. Not .bin/.gguf/.onnx/.msgpack copies
# of the same weights, which can be as large again.
PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja", "*.py"]
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class ModelError(Exception):
    """A pull or import that cannot be done; one line."""


def parse_source(repo_or_url: str) -> tuple[str, str | None, str | None]:
    """(repo id, endpoint or None, revision or None) from ``ORG/NAME``, ``ORG/NAME@REV`` or a Hub URL
    ``http(s)://HOST/ORG/NAME[/tree/REV]``."""
    text = repo_or_url.strip()
    endpoint = revision = None
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        segments = [s for s in parts.path.split("/") if s]
        if segments[:1] == ["models"]:
            segments = segments[1:]
        if len(segments) >= 4 and segments[2] == "tree":
            revision = "/".join(segments[3:])
        if len(segments) < 2:
            raise ModelError(f"{repo_or_url}: give a repository URL, http(s)://HOST/ORG/NAME")
        endpoint = f"{parts.scheme}://{parts.netloc}"
        text = "/".join(segments[:2])
    elif "@" in text:
        text, revision = text.split("@", 1)
    if not _REPO.match(text):
        raise ModelError(f"{repo_or_url!r} is not a repository (ORG/NAME) or a Hub URL")
    return text, endpoint, revision


def default_name(repo: str, bits: int | None) -> str:
    base = repo.split("/")[-1]
    return f"{base}-{bits}bit" if bits else base


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or "/" in name or name in ("..",):
        raise ModelError(f"{name!r} is not a usable model folder name")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _problems(directory: Path) -> list[str]:
    import llm_engine

    try:
        return [str(p) for p in llm_engine.verify(directory)]
    except llm_engine.EngineError as e:
        return [_one_line(e)]


def pull(
    repo_or_url: str,
    models_dir: Path,
    *,
    bits: int | None = None,
    name: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda m: None,
) -> Path:
    """Download a Hugging Face repository and convert it into ``models_dir/NAME``; returns that folder."""
    import llm_engine

    repo, url_endpoint, revision = parse_source(repo_or_url)
    endpoint = (endpoint or url_endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
    name = name or default_name(repo, bits)
    _check_name(name)
    models_dir = Path(models_dir)
    dest = models_dir / name
    if dest.exists():
        raise ModelError(f"{dest} already exists; give another --name or remove it")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise ModelError("HF_HUB_OFFLINE is set, which forbids downloads: unset it to pull")
    staging = models_dir / ".partial" / f"pull-{repo.replace('/', '--')}"
    download = staging / "download"
    built = staging / name
    shutil.rmtree(built, ignore_errors=True)
    download.mkdir(parents=True, exist_ok=True)
    log(f"downloading {repo}" + (f"@{revision}" if revision else "") + f" from {endpoint or 'the Hub (HF_ENDPOINT)'}")
    try:
        _snapshot(repo, revision, download, endpoint, progress)
    except ModelError:
        raise
    except Exception as e:  # huggingface_hub's many errors (not found, HTTP, offline): one line
        arrived = any(p.is_file() for p in download.rglob("*"))
        if not arrived:
            shutil.rmtree(staging, ignore_errors=True)
            _tidy(models_dir)
        where = endpoint or "the Hub"
        reason = (
            f"no repository {repo} at {where}"
            if type(e).__name__ in ("RepositoryNotFoundError", "RevisionNotFoundError")
            else _one_line(e)
        )
        hint = " (a new pull goes on from what arrived)" if arrived else ""
        raise ModelError(f"{repo}: download failed: {reason}{hint}") from None
    if not any(download.glob("*.safetensors")) or not (download / "config.json").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(f"{repo}: no config.json and safetensors weights in the repository; nothing to convert")
    log(f"converting {repo} into the streaming layout" + (f" ({bits}-bit)" if bits else ""))
    try:
        llm_engine.convert(download, built, bits=bits, progress=progress)
    except llm_engine.EngineError as e:
        shutil.rmtree(built, ignore_errors=True)
        raise ModelError(f"{repo}: conversion failed: {_one_line(e)}") from None
    problems = _problems(built)
    if problems:
        shutil.rmtree(built, ignore_errors=True)
        raise ModelError(f"{repo}: the converted model does not verify: {problems[0]}")
    os.replace(built, dest)
    shutil.rmtree(staging, ignore_errors=True)
    _tidy(models_dir)
    return dest


def _tidy(models_dir: Path) -> None:
    try:
        (Path(models_dir) / ".partial").rmdir()  # only when nothing else is staged there
    except OSError:
        pass


def _snapshot(repo: str, revision: str | None, folder: Path, endpoint: str | None, progress: bool) -> None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError("huggingface_hub is not installed (pip install huggingface_hub)") from None
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    if not progress:
        disable_progress_bars()
    try:
        snapshot_download(
            repo_id=repo,
            revision=revision,
            local_dir=folder,
            endpoint=endpoint,
            allow_patterns=PATTERNS,
        )
    finally:
        if not progress:
            enable_progress_bars()


def import_model(src: Path, models_dir: Path, *, name: str | None = None) -> Path:
    """Copy a converted model folder into ``models_dir/NAME``, checked where it lies and again as copied."""
    src = Path(src)
    if not (src / "manifest.json").is_file():
        raise ModelError(f"{src}: not a converted model (no manifest.json); convert one with `almanac model convert`")
    problems = _problems(src)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelError(f"does not verify, nothing copied: {problems[0]}{more}")
    name = name or src.resolve().name
    _check_name(name)
    dest = Path(models_dir) / name
    if dest.exists():
        raise ModelError(f"{dest} already exists; give another --name or remove it")
    part = Path(models_dir) / ".partial" / f"import-{name}-{os.getpid()}"
    shutil.rmtree(part, ignore_errors=True)
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(src, part, symlinks=False)
        problems = _problems(part)
        if problems:
            raise ModelError(f"{src}: the copy does not verify: {problems[0]}")
        os.replace(part, dest)
    except OSError as e:
        raise ModelError(f"{dest}: copy failed: {e.strerror or e}") from None
    finally:
        shutil.rmtree(part, ignore_errors=True)
        _tidy(models_dir)
    return dest
