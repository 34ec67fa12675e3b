"""`almanac serve | stop | status | urls | version`: the portal as a process, and what it serves."""

from __future__ import annotations

import json
import os

import click

from .. import __version__
from ..runtime import model_process, pidfile
from ..runtime.netinfo import urls as lan_urls
from .state import CliState, pass_state


@click.command()
def version():
    """Print the version."""
    click.echo(__version__)


@click.command()
@click.option("--host", help="Address to bind (default: server.host, 0.0.0.0).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: server.port, 8080).")
@click.option("--workers", type=click.IntRange(1, 64), help="gunicorn worker processes (default: server.workers).")
@click.option(
    "--detach", is_flag=True, help="Run in the background (pid file in the data dir); return once it answers."
)
@pass_state
def serve(state: CliState, host, port, workers, detach):
    """Serve the portal with gunicorn."""
    config, data = state.config, state.data()
    host = host or config.get("server.host")
    port = port or config.get("server.port")
    workers = workers or config.get("server.workers")
    if detach:
        pid = pidfile.running_pid(data)
        if pid:
            raise click.ClickException(f"already running (pid {pid}); `almanac stop` first")
        args = ["--host", host, "--port", str(port), "--workers", str(workers)]
        if state.config_path:
            os.environ["ALMANAC_CONFIG"] = str(state.config_path)
        try:
            pid = pidfile.start_detached(data, args, host, port)
        except RuntimeError as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"Almanac is running in the background (pid {pid}); logs: {data.logs / 'server.log'}")
        for url in lan_urls(host, port):
            click.echo(f"  {url}")
        return
    from ..runtime import gunicorn_app  # gunicorn is only needed here

    try:
        gunicorn_app.serve(config, data, host, port, workers)
    except model_process.ModelServerError as e:  # the model beside the portal cannot start: say why, in one line
        raise click.ClickException(str(e)) from None


@click.command()
@pass_state
def stop(state: CliState):
    """Stop a server started with `serve --detach`."""
    pid = pidfile.stop(state.data())
    click.echo(f"stopped (pid {pid})" if pid else "not running")


@click.command()
@pass_state
def urls(state: CliState):
    """Print every URL of the portal on this network, one per line."""
    for url in lan_urls(state.config.get("server.host"), state.config.get("server.port")):
        click.echo(url)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def status(state: CliState, as_json: bool):
    """What is installed, free disk, service state and every LAN URL."""
    from ..status_report import status_report

    config, data = state.config, state.data()
    report = status_report(config, data)
    books, disk, port = report["books"], report["disk"], config.get("server.port")
    live = report["answering"]
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"Almanac {report['version']}")
    click.echo(f"config:   {report['config']}")
    click.echo(f"data:     {report['data_dir']}")
    click.echo(f"books:    {len(books)}" + "".join(f"\n  - {b['name']}: {b['title']}" for b in books))
    click.echo(f"maps:     {len(report['maps'])}")
    click.echo(f"models:   {len(report['models'])}")
    click.echo(f"disk:     {disk['free_bytes'] / 1e9:.1f} GB free of {disk['total_bytes'] / 1e9:.1f} GB")
    click.echo(f"service:  {report['service']}")
    click.echo(f"portal:   {'answering' if live else 'not answering'} on port {port}")
    a = report["assistant"]
    click.echo(
        f"assistant: {', '.join(a['models'])} at {a['url']}"
        if a["models"]
        else f"assistant: passages only ({a['message']})"
    )
    click.echo("urls:" + "".join(f"\n  {u}" for u in report["urls"]))
