"""`almanac model ...`: convert, run, inspect and verify streaming MoE checkpoints.

Thin glue only: parsing and printing. Everything else is in llm_engine.
"""

from __future__ import annotations

import json
import os

import click

from ..config import ConfigError
from ..datadir import DataDir


def _engine():
    # Imported lazily: MLX start-up is not needed by `almanac --help`.
    if "NUMBA_CACHE_DIR" not in os.environ:  # the CPU kernels' cache in the data dir (read when Numba loads)
        try:
            os.environ["NUMBA_CACHE_DIR"] = os.fspath(DataDir(_state().config.data_dir).kernel_cache)
        except (
            ConfigError,
            OSError,
            RuntimeError,
        ):  # no configuration (or no click context): Numba's own places, or none (it compiles anew)
            pass
    import llm_engine

    return llm_engine


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


@click.group("model")
def model():
    """Mixture-of-Experts models streamed from SSD."""


@model.command("convert")
@click.argument("src", type=click.Path(exists=True))
@click.argument("dst", type=click.Path())
@click.option(
    "--bits",
    type=click.Choice(["2", "3", "4", "5", "6", "8"]),
    default=None,
    help="Quantization bits for an unquantized SRC (default 4).",
)
@click.option(
    "--group-size",
    type=click.Choice(["32", "64", "128"]),
    default=None,
    help="Quantization group size for an unquantized SRC (default 64).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def convert_cmd(src, dst, bits, group_size, quiet):
    """Convert SRC (MLX or Hugging Face checkpoint folder, or a GGUF file) into DST.

    Mixture-of-Experts models get the streaming layout; a dense model is kept whole and runs resident.
    """
    llm_engine = _engine()
    try:
        m = llm_engine.convert(
            src,
            dst,
            bits=int(bits) if bits else None,
            group_size=int(group_size) if group_size else None,
            progress=not quiet,
        )
    except llm_engine.EngineError as e:
        raise _fail(e) from None
    click.echo(
        f"converted {m.model_type}: {len(m.layers)} MoE layers, experts {_human(m.expert_bytes())}, "
        f"resident {_human(m.resident_bytes())} -> {dst}" + ("" if m.layers else " (a dense model: it runs resident)")
    )


def _expert_cache_option(command):
    return click.option(
        "--expert-cache-gb",
        type=click.FloatRange(0),
        default=0.0,
        show_default=True,
        help="Memory for experts kept between tokens; 0 relies on the OS page cache.",
    )(command)


def _hot_list_options(command):
    """--hot-list FILE / --no-hot-list, as `model run` and `model serve` take them."""
    command = click.option(
        "--no-hot-list", is_flag=True, help="Neither read nor write a hot list (the cache starts cold)."
    )(command)
    return click.option(
        "--hot-list",
        type=click.Path(dir_okay=False),
        default=None,
        help="With an expert cache: where the counts of the experts this model routes to are kept between runs, "
        "so the next run reads its hottest experts into the cache in the background at start. "
        "Default: DIR/hot-experts.json.",
    )(command)


def _prefetch_option(command):
    return click.option(
        "--prefetch/--no-prefetch",
        default=False,
        show_default=True,
        help="Read each MoE layer's guessed experts while the layer before computes (the answers do not "
        "change; wrong guesses are extra reads).",
    )(command)


def _cpu_threads_option(command):
    return click.option(
        "--cpu-threads",
        type=click.IntRange(1),
        default=None,
        help="On the CPU: cores each step's work is spread over (the answers do not change). Default: all.",
    )(command)


def _hot_list(directory: str, hot_list: str | None, no_hot_list: bool) -> str | None:
    return None if no_hot_list else hot_list or os.path.join(directory, "hot-experts.json")


def _memory_options(command):
    """--memory-gb and --context-tokens, as `model run` and `model serve` take them."""
    command = click.option(
        "--context-tokens",
        type=click.IntRange(1),
        default=4096,
        show_default=True,
        help="With --memory-gb: the longest prompt plus answer the memory is planned for.",
    )(command)
    return click.option(
        "--memory-gb",
        default=None,
        help="Memory the engine may use in all, in GB, or 'auto' (what the machine has free): the expert cache "
        "gets what the model leaves (see `almanac model plan`). Instead of --expert-cache-gb.",
    )(command)


@model.command("run")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--prompt", required=True, help="Prompt text.")
@click.option("--max-tokens", type=click.IntRange(1), default=256, show_default=True)
@click.option(
    "--temp", type=click.FloatRange(0), default=0.0, show_default=True, help="Sampling temperature; 0 is greedy."
)
@click.option("--seed", type=int, default=None, help="Random seed for sampling.")
@click.option("--json", "as_json", is_flag=True, help="Print prompt_tokens, tokens, text and stats as JSON.")
@_expert_cache_option
@click.option(
    "--experts-per-token",
    type=click.IntRange(1),
    default=None,
    help="Quality trade-off: route each token to K experts instead of the trained "
    "number. Off by default; changes the model's answers, by how much is measured and printed first.",
)
@_memory_options
@_hot_list_options
@_prefetch_option
@_cpu_threads_option
def run_cmd(
    directory,
    prompt,
    max_tokens,
    temp,
    seed,
    as_json,
    expert_cache_gb,
    experts_per_token,
    memory_gb,
    context_tokens,
    hot_list,
    no_hot_list,
    prefetch,
    cpu_threads,
):
    """Generate text from the converted model in DIR."""
    llm_engine = _engine()
    try:
        with llm_engine.load(
            directory,
            expert_cache_gb=expert_cache_gb,
            experts_per_token=experts_per_token,
            memory_gb=memory_gb,
            context_tokens=context_tokens,
            hot_list=_hot_list(directory, hot_list, no_hot_list),
            prefetch=prefetch,
            cpu_threads=cpu_threads,
        ) as engine:
            change = None
            if experts_per_token is not None:
                from llm_engine.quality import experts_per_token_change

                change = experts_per_token_change(engine, experts_per_token)
                click.echo(f"[lossy: {change.describe()}]", err=True)
            if as_json:
                result = llm_engine.generate(engine, prompt, max_tokens=max_tokens, temp=temp, seed=seed)
                out = result.as_dict()
                if change is not None:
                    out["quality_change"] = change.as_dict()
                click.echo(json.dumps(out))
                return
            stats = {}
            for step in llm_engine.stream_generate(engine, prompt, max_tokens=max_tokens, temp=temp, seed=seed):
                click.echo(step.text, nl=False)
                stats = step.stats or stats
            click.echo()
    except llm_engine.EngineError as e:
        raise _fail(e) from None
    click.echo(
        f"[{stats.get('prompt_tokens', 0)} prompt tokens at {stats.get('prefill_tok_per_s', 0):.1f} tok/s, "
        f"{stats.get('generated_tokens', 0)} generated at {stats.get('decode_tok_per_s', 0):.1f} tok/s; "
        f"read {_human(stats.get('bytes_read', 0))}, cache hit rate "
        f"{stats.get('cache_hit_rate', 0):.0%}, peak RSS {_human(stats.get('peak_rss_bytes', 0))}]",
        err=True,
    )


@model.command("serve")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; the default lets only this machine connect.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=11434, show_default=True, help="TCP port (0 picks a free one)."
)
@_expert_cache_option
@click.option(
    "--max-tokens-limit",
    type=click.IntRange(1),
    default=2048,
    show_default=True,
    help="Most tokens one request may generate (also the default length).",
)
@click.option(
    "--max-prompt-tokens",
    type=click.IntRange(1),
    default=8192,
    show_default=True,
    help="Longer prompts are refused with a 400 error.",
)
@click.option(
    "--prompt-cache",
    type=click.IntRange(0),
    default=4,
    show_default=True,
    help="Keep the KV caches of this many recent prompts, so a follow-up computes only its new tokens; 0: none.",
)
@click.option(
    "--api-tokens",
    type=click.Path(dir_okay=False),
    default=None,
    help="File of SHA-256 digests of the tokens clients beyond this machine must send (Authorization: Bearer). "
    "Default with a --host other than 127.0.0.1: the data dir's, from `almanac model tokens`.",
)
@_memory_options
@_hot_list_options
@_prefetch_option
@_cpu_threads_option
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Decode up to N requests together (requests that wait join those decoding); 1: one at a time.",
)
def serve_cmd(
    directory,
    host,
    port,
    expert_cache_gb,
    max_tokens_limit,
    max_prompt_tokens,
    prompt_cache,
    api_tokens,
    memory_gb,
    context_tokens,
    max_batch,
    hot_list,
    no_hot_list,
    prefetch,
    cpu_threads,
):
    """Serve the model in DIR over the OpenAI and Ollama HTTP APIs.

    On 127.0.0.1 (the default) only this machine connects. On any other address every client beyond this
    machine must send one of the API tokens made with `almanac model tokens create`."""
    llm_engine = _engine()
    from llm_engine.serve import serve
    from llm_engine.serve.tokens import is_loopback

    if api_tokens is None and not is_loopback(host):
        from ..api_tokens import list_tokens, token_file

        data = _data()
        api_tokens = token_file(data)
        if not list_tokens(data):
            click.echo(
                "no API tokens yet: clients beyond this machine are refused; `almanac model tokens create NAME`",
                err=True,
            )

    def ready(url: str) -> None:
        from llm_engine import cpu_blas, cpu_quantized
        from llm_engine.device import on_cpu

        if on_cpu():  # a CPU prefill is ~10x faster on OpenBLAS, a decode 2-3x on Numba: say which runs
            click.echo(f"CPU matmuls on {cpu_blas.describe()}; {cpu_quantized.describe()}", err=True)
        click.echo(
            f"serving {os.path.basename(os.path.normpath(directory))} on {url} "
            f"(OpenAI: {url}/v1, Ollama: {url}); Ctrl-C stops"
        )

    try:
        serve(
            directory,
            host=host,
            port=port,
            max_tokens_limit=max_tokens_limit,
            max_prompt_tokens=max_prompt_tokens,
            expert_cache_gb=expert_cache_gb,
            prompt_cache_entries=prompt_cache,
            max_batch=max_batch,
            hot_list=_hot_list(directory, hot_list, no_hot_list),
            prefetch=prefetch,
            cpu_threads=cpu_threads,
            on_ready=ready,
            api_tokens=api_tokens,
            **({"memory_gb": memory_gb, "context_tokens": context_tokens} if memory_gb else {}),
        )
    except llm_engine.EngineError as e:
        raise _fail(e) from None


@model.command("info")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_cmd(directory, as_json):
    """Describe the converted model in DIR."""
    llm_engine = _engine()
    try:
        info = llm_engine.info(directory)
    except llm_engine.EngineError as e:
        raise _fail(e) from None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    quant = (
        ", ".join(f"{q['bits']}-bit {q['mode']} group {q['group_size']}" for q in info["expert_quantization"])
        or "unquantized"
    )
    click.echo(f"model type      {info['model_type']}")
    click.echo(f"MoE layers      {info['moe_layers']}")
    click.echo(f"experts/layer   {', '.join(map(str, info['experts_per_layer']))}")
    click.echo(f"expert weights  {_human(info['expert_bytes'])} ({quant})")
    click.echo(f"resident        {_human(info['resident_bytes'])}")
    click.echo(f"converted with  mlx-lm {info['mlx_lm_version']}")


@model.command("verify")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
def verify_cmd(directory):
    """Check every file of DIR against the checksums in its manifest."""
    llm_engine = _engine()
    try:
        problems = llm_engine.verify(directory)
    except llm_engine.EngineError as e:
        raise _fail(e) from None
    for p in problems:
        click.echo(str(p), err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) found in {os.fspath(directory)}")
    click.echo(f"OK: every checksum matches ({directory})")


def _state():
    """The CLI's state, also when this group runs on its own (`python -m appliance.cli.model`)."""
    state = click.get_current_context().find_root().obj
    if state is None:
        from .state import CliState

        state = CliState(None)
    return state


def _data():
    """The data dir, created if need be."""
    return _state().data()


def _models_dir():
    return _data().models


@model.command("pull")
@click.argument("repo_or_url")
@click.option(
    "--bits",
    type=click.Choice(["2", "3", "4", "5", "6", "8"]),
    default=None,
    help="Quantization bits for an unquantized repository (default 4).",
)
@click.option("--name", help="Folder name under the data dir's models/ (default: the repository's name and bits).")
@click.option(
    "--endpoint",
    help="A Hugging Face Hub or a mirror of it on your LAN (default: $HF_ENDPOINT, else huggingface_hub's own).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the converted model's info as JSON.")
def pull_cmd(repo_or_url, bits, name, endpoint, quiet, as_json):
    """Download a Hugging Face repository (ORG/NAME[@REV] or a Hub URL) and convert it into models/ in one step.

    The model is built under models/.partial/ and moved into place only once it verifies; an interrupted
    download goes on from what arrived the next time.
    """
    from ..models import ModelError, pull

    llm_engine = _engine()
    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    try:
        dest = pull(
            repo_or_url,
            _models_dir(),
            bits=int(bits) if bits else None,
            name=name,
            endpoint=endpoint,
            progress=not (quiet or as_json),
            log=log,
        )
    except ModelError as e:
        raise _fail(e) from None
    info = llm_engine.info(dest)
    if as_json:
        click.echo(json.dumps({"path": str(dest), "info": info}, indent=2))
        return
    click.echo(
        f"pulled {repo_or_url} -> {dest}: {info['model_type']}, {info['moe_layers']} MoE layers, "
        f"experts {_human(info['expert_bytes'])}, resident {_human(info['resident_bytes'])}"
    )


@model.command("import")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--name", help="Folder name under the data dir's models/ (default: the folder's own name).")
def import_cmd(path, name):
    """Copy a converted model folder (from a drive, another box) into models/, verified before and after."""
    from ..models import ModelError, import_model

    try:
        dest = import_model(path, _models_dir(), name=name)
    except ModelError as e:
        raise _fail(e) from None
    click.echo(f"imported {path} -> {dest} (every checksum matches)")


@model.group("tokens")
def tokens():
    """API tokens for the model server served to the LAN (clients send Authorization: Bearer TOKEN)."""


@tokens.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its secret as JSON.")
def tokens_create(name, as_json):
    """Make a token named NAME (a device or a person); its secret is shown once, now."""
    from ..api_tokens import TokenError, create

    try:
        token, secret = create(_data(), name)
    except TokenError as e:
        raise _fail(e) from None
    if as_json:
        click.echo(json.dumps({"token": token.to_json(), "secret": secret}, indent=2))
        return
    click.echo(f"token {token.id} ({token.name}) created. Its secret, shown only now:\n\n  {secret}\n")
    click.echo("Clients send it as `Authorization: Bearer <secret>` (an OpenAI client: api_key=<secret>).")


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tokens_list(as_json):
    """Every valid token: id, name, when it was made and last used, and the start of its secret."""
    import datetime

    from ..api_tokens import list_tokens

    found = list_tokens(_data())
    if as_json:
        click.echo(json.dumps([t.to_json() for t in found], indent=2))
        return
    if not found:
        click.echo("no API tokens; `almanac model tokens create NAME` makes one")
    for t in found:
        made = datetime.datetime.fromtimestamp(t.created).strftime("%Y-%m-%d %H:%M")
        used = datetime.datetime.fromtimestamp(t.last_used).strftime("%Y-%m-%d %H:%M") if t.last_used else "never"
        click.echo(f"{t.id:>4}  {t.name:<30}  created {made}  last used {used:<16}  {t.hint}…")


@tokens.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
def tokens_revoke(token_id):
    """Take token ID out: the model server refuses it from its next request on."""
    from ..api_tokens import revoke
    from .state import BadInput

    if not revoke(_data(), token_id):
        raise BadInput(f"no API token with id {token_id}; `almanac model tokens list` shows them")
    click.echo(f"token {token_id} revoked")


# --- almanac model plan: a forecast before anything runs ---------------------------------------


@model.command("plan")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--memory-gb",
    default="auto",
    show_default=True,
    help="Memory the engine may use, in GB, or 'auto' for what this machine has free.",
)
@click.option(
    "--context-tokens",
    type=click.IntRange(1),
    default=4096,
    show_default=True,
    help="Longest prompt plus answer the memory is planned for.",
)
@click.option("--max-batch", type=click.IntRange(1), default=1, show_default=True, help="Sequences decoded together.")
@click.option(
    "--read-seconds",
    type=click.FloatRange(0.1),
    default=1.0,
    show_default=True,
    help="How long the read test reads experts.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan_cmd(directory, memory_gb, context_tokens, max_batch, read_seconds, as_json):
    """Forecast memory, decode and prefill speed of the model in DIR from its layout and a short read test."""
    llm_engine = _engine()
    from llm_engine.forecast import forecast
    from llm_engine.memory import budget_bytes, parse_memory_gb, process_rss

    try:
        baseline = process_rss()
        f = forecast(
            directory,
            budget_bytes(parse_memory_gb(memory_gb), baseline),
            baseline,
            context_tokens=context_tokens,
            max_batch=max_batch,
            read_seconds=read_seconds,
        )
    except llm_engine.EngineError as e:
        raise _fail(e) from None
    if as_json:
        click.echo(json.dumps(f.as_dict(), indent=2))
        return
    m = f.memory
    click.echo(f"memory budget     {_human(m.budget)}")
    click.echo(f"  in use already  {_human(m.baseline)} (this process: interpreter, libraries)")
    click.echo(f"  resident        {_human(m.resident)} (non-expert weights, as loaded on this device)")
    click.echo(f"  working         {_human(m.working + m.read_buffers)} ({m.context_tokens} tokens x {m.max_batch})")
    if m.cache_slots:
        click.echo(
            f"  expert cache    {_human(m.cache_bytes)}: {m.cache_slots} of {f.experts} experts per layer "
            f"({m.cache_slots / f.experts:.0%})"
        )
    else:
        click.echo(f"  streaming bank  {_human(m.bank)} (no expert cache: the OS page cache only)")
    click.echo(f"  total           {_human(m.total)}")
    r = f.reads
    click.echo(
        f"read test         {r.cold_gbps:.2f} GB/s from disk ({r.how}), {r.warm_gbps:.2f} GB/s from the page cache"
    )
    rates = ", ".join(f"{r} row{'s' if r > 1 else ''} {v / 1e9:.2f}" for r, v in f.compute.rates.items())
    click.echo(
        f"compute test      GB/s of quantized weights: {rates}; a product call's fixed cost "
        f"{f.compute.call_s * 1e3:.2f} ms"
    )
    for name in ("warm", "cold"):
        d = f.decode[name]
        click.echo(
            f"decode, {name:<4}      {d['tok_per_s']:.1f} tok/s, {d['bytes_per_token'] / 1e6:.0f} MB read per token"
        )
    for p, row in f.prefill.items():
        click.echo(
            f"prefill {p:>5} tok  warm {row['warm']['tok_per_s']:.0f} tok/s (TTFT {row['warm']['ttft_s']:.1f} s), "
            f"cold {row['cold']['tok_per_s']:.0f} tok/s (TTFT {row['cold']['ttft_s']:.1f} s)"
        )
    click.echo("(uniform routing assumed: a real model's skewed routing hits its cache more often)")


if __name__ == "__main__":
    model()
