"""The `almanac` command. Thin: it parses, calls content/llm_engine/appliance functions, and prints."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click

from . import __version__
from .config import ConfigError, default_config_path, dump, is_root, load_config, parse_value, set_value
from .datadir import prepare


class _State:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._config = None

    @property
    def config(self):
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def data(self):
        return prepare(self.config)

    def library(self):
        from content.library import Library

        data = self.data()
        return Library(data.db, data.archives)


pass_state = click.make_pass_decorator(_State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ALMANAC_CONFIG", metavar="FILE",
              help="Configuration file (default: $ALMANAC_CONFIG, ~/.config/almanac/config.yaml, /etc/almanac/config.yaml).")
@click.version_option(__version__, "--version", prog_name="almanac")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None):
    """Almanac: offline library, maps and assistant for your local network."""
    ctx.obj = _State(config_path)


@cli.command()
def version():
    """Print the version."""
    click.echo(__version__)


# -- serving --------------------------------------------------------------------------------------
@cli.command()
@click.option("--host", help="Address to bind (default: server.host, 0.0.0.0).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: server.port, 8080).")
@click.option("--workers", type=click.IntRange(1, 64), help="gunicorn worker processes (default: server.workers).")
@click.option("--detach", is_flag=True, help="Run in the background (pid file in the data dir); return once it answers.")
@pass_state
def serve(state: _State, host, port, workers, detach):
    """Serve the portal with gunicorn."""
    from . import server

    config, data = state.config, state.data()
    host = host or config.get("server.host")
    port = port or config.get("server.port")
    workers = workers or config.get("server.workers")
    if detach:
        pid = server.running_pid(data)
        if pid:
            raise click.ClickException(f"already running (pid {pid}); `almanac stop` first")
        args = ["--host", host, "--port", str(port), "--workers", str(workers)]
        if state.config_path:
            os.environ["ALMANAC_CONFIG"] = str(state.config_path)
        try:
            pid = server.start_detached(data, args, host, port)
        except RuntimeError as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"Almanac is running in the background (pid {pid}); logs: {data.logs / 'server.log'}")
        _print_urls(host, port)
        return
    try:
        server.serve(config, data, host, port, workers)
    except server.ModelServerError as e:  # the model beside the portal cannot start: say why, in one line
        raise click.ClickException(str(e)) from None


@cli.command()
@pass_state
def stop(state: _State):
    """Stop a server started with `serve --detach`."""
    from . import server

    pid = server.stop(state.data())
    click.echo(f"stopped (pid {pid})" if pid else "not running")


def _assistant_state(config) -> dict:
    from .model_client import probe

    state = probe(str(config.get("assistant.url")))
    return {"url": state.url, "models": state.models, "message": state.message}


def _print_urls(host: str, port: int) -> None:
    from .netinfo import urls as lan_urls

    for url in lan_urls(host, port):
        click.echo(f"  {url}")


@cli.command()
@pass_state
def urls(state: _State):
    """Print every URL of the portal on this network, one per line."""
    from .netinfo import urls as lan_urls

    for url in lan_urls(state.config.get("server.host"), state.config.get("server.port")):
        click.echo(url)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def status(state: _State, as_json: bool):
    """What is installed, free disk, service state and every LAN URL."""
    from . import server
    from .netinfo import urls as lan_urls
    from .service_state import detect

    config, data = state.config, state.data()
    library = state.library()
    books = library.list()
    host, port = config.get("server.host"), config.get("server.port")
    disk = shutil.disk_usage(data.root)
    live = server.health(host, port)
    report = {
        "version": __version__,
        "config": config.source,
        "data_dir": str(data.root),
        "books": [{"name": b.name, "title": b.title, "articles": b.article_count, "size": b.size} for b in books],
        "maps": sorted(p.name for p in data.maps.glob("*.pmtiles")),
        "models": sorted(p.name for p in data.models.iterdir() if p.is_dir()),
        "disk": {"free_bytes": disk.free, "total_bytes": disk.total},
        "service": detect(data).describe(),
        "answering": bool(live),
        "urls": lan_urls(host, port),
        "assistant": _assistant_state(config),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"Almanac {report['version']}")
    click.echo(f"config:   {report['config']}")
    click.echo(f"data:     {report['data_dir']}")
    click.echo(f"books:    {len(books)}" + "".join(f"\n  - {b.name}: {b.title}" for b in books))
    click.echo(f"maps:     {len(report['maps'])}")
    click.echo(f"models:   {len(report['models'])}")
    click.echo(f"disk:     {disk.free / 1e9:.1f} GB free of {disk.total / 1e9:.1f} GB")
    click.echo(f"service:  {report['service']}")
    click.echo(f"portal:   {'answering on port %d' % port if live else 'not answering on port %d' % port}")
    a = report["assistant"]
    click.echo(f"assistant: {', '.join(a['models'])} at {a['url']}" if a["models"] else
               f"assistant: passages only ({a['message']})")
    click.echo("urls:" + "".join(f"\n  {u}" for u in report["urls"]))


@cli.command()
@pass_state
def doctor(state: _State):
    """Check Python, MLX, libzim, the data dir, disk and port; print OK or FAIL with the fix."""
    from .doctor import run_checks

    checks = run_checks(state.config)
    for check in checks:
        click.echo(check.line())
    failed = [c for c in checks if not c.ok]
    click.echo(f"{len(checks) - len(failed)} OK, {len(failed)} FAIL")
    sys.exit(1 if failed else 0)


# -- configuration --------------------------------------------------------------------------------
@cli.group()
def config():
    """Show or change the configuration."""


@config.command("show")
@pass_state
def config_show(state: _State):
    """Print the effective configuration (defaults + your file + environment)."""
    cfg = state.config
    prepare(cfg)
    click.echo(f"# from: {cfg.source}")
    click.echo(dump(cfg), nl=False)


@config.command("path")
@pass_state
def config_path(state: _State):
    """Print the path of the configuration file in use."""
    click.echo(state.config.source)


@config.command("set")
@click.argument("key")
@click.argument("value")
@pass_state
def config_set(state: _State, key: str, value: str):
    """Set KEY (dotted, like server.port) to VALUE in the configuration file."""
    path = Path(state.config_path) if state.config_path else default_config_path()
    if path is None:
        path = Path("/etc/almanac/config.yaml") if is_root() else Path.home() / ".config" / "almanac" / "config.yaml"
    set_value(path, key, parse_value(value))
    click.echo(f"{path}: {key} = {value}")


# -- content --------------------------------------------------------------------------------------
@cli.group()
def content():
    """The library of ZIM archives."""


@content.command("build-zim")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--title", help="Title (default: the main page's heading).")
@click.option("--name", help="Book name in catalogs (default: the output file name).")
@click.option("--description", help="One-line description.")
@click.option("--language", default="eng", show_default=True, help="ISO 639-3 language code.")
def build_zim_cmd(src: Path, out: Path, title, name, description, language):
    """Build a ZIM (full-text and title index, metadata, illustration) from a folder of Markdown/HTML."""
    from content.zim_builder import ZimBuildError, build_zim

    try:
        report = build_zim(src, out, name=name, title=title, description=description, language=language)
    except ZimBuildError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{report.out_path}: {report.article_count} pages, {report.resource_count} files, "
               f"{report.size_bytes / 1e3:.0f} kB, main page {report.main_path!r}")


def _library_call(fn, *args):
    from content.library import LibraryError

    try:
        return fn(*args)
    except LibraryError as e:
        raise click.ClickException(str(e)) from None


@content.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
def content_add(state: _State, path: Path):
    """Register a ZIM file (checked in a separate process first)."""
    book = _library_call(state.library().add, path)
    click.echo(f"added {book.name}: {book.title} ({book.article_count} articles, {book.size / 1e6:.1f} MB)")


@content.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def content_list(state: _State, as_json: bool):
    """List the books in the library."""
    library = state.library()
    library.scan()
    books = library.list()
    if as_json:
        click.echo(json.dumps([b.to_json() for b in books], indent=2))
        return
    for b in books:
        click.echo(f"{b.name}\t{b.title}\t{b.language}\t{b.article_count} articles\t{b.size / 1e6:.1f} MB")
    for rejected in library.rejected():
        click.echo(f"refused: {rejected['reason']}", err=True)


@content.command("info")
@click.argument("name")
@pass_state
def content_info(state: _State, name: str):
    """Show a book's metadata."""
    book = state.library().get(name)
    if book is None:
        raise click.ClickException(f"no book named {name!r}")
    for key, value in book.to_json().items():
        click.echo(f"{key}: {value}")


@content.command("remove")
@click.argument("name")
@pass_state
def content_remove(state: _State, name: str):
    """Remove a book; its file is deleted only if it lives in the data dir's archives folder."""
    library = state.library()
    book = _library_call(library.remove, name)
    path = Path(book.path)
    if path.parent.resolve() == library.archives_dir.resolve():
        path.unlink(missing_ok=True)  # else the next scan would register it again
        click.echo(f"removed {name} and deleted {path}")
    else:
        click.echo(f"removed {name} (file kept at {path})")


@content.command("check")
@click.argument("name")
@pass_state
def content_check(state: _State, name: str):
    """Run libzim's full integrity check on a book."""
    from content.zim_probe import deep_check

    book = state.library().get(name)
    if book is None:
        raise click.ClickException(f"no book named {name!r}")
    ok, message = deep_check(book.path)
    click.echo(f"{'OK' if ok else 'FAIL'} {name}: {message}")
    sys.exit(0 if ok else 1)


from .cli_model import model as _model_group  # noqa: E402  (the engine's commands live beside it)

cli.add_command(_model_group)


from .cli_maps import maps as _maps_group  # noqa: E402

cli.add_command(_maps_group)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="almanac", standalone_mode=False)
    except ConfigError as e:
        click.echo(f"almanac: config error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
