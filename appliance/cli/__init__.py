"""The `almanac` command. Thin: it parses, calls content/llm_engine/appliance functions, and prints.

One module per command group: serve.py (serve, stop, status, urls, version), config.py, content.py, maps.py,
model.py, jobs.py (download jobs), doctor.py, ask.py, answers.py and admin.py (the console's password).
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..config import ConfigError
from . import admin, answers, ask, config, content, doctor, jobs, maps, model, serve
from .state import CliState


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="ALMANAC_CONFIG",
    metavar="FILE",
    help="Configuration file (default: $ALMANAC_CONFIG, ~/.config/almanac/config.yaml, /etc/almanac/config.yaml).",
)
@click.version_option(__version__, "--version", prog_name="almanac")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None):
    """Almanac: offline library, maps and assistant for your local network."""
    ctx.obj = CliState(config_path)


for command in (
    serve.version,
    serve.serve,
    serve.stop,
    serve.urls,
    serve.status,
    doctor.doctor,
    config.config,
    content.content,
    jobs.jobs,
    model.model,
    maps.maps,
    ask.ask,
    answers.answers,
    admin.admin,
):
    cli.add_command(command)


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
