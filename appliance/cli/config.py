"""`almanac config show | path | set KEY VALUE`."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import dump, parse_value, set_value, writable_config_path
from ..datadir import prepare
from .state import CliState, pass_state


@click.group()
def config():
    """Show or change the configuration."""


@config.command("show")
@pass_state
def config_show(state: CliState):
    """Print the effective configuration (defaults + your file + environment)."""
    cfg = state.config
    prepare(cfg)
    click.echo(f"# from: {cfg.source}")
    click.echo(dump(cfg), nl=False)


@config.command("path")
@pass_state
def config_path(state: CliState):
    """Print the path of the configuration file in use."""
    click.echo(state.config.source)


@config.command("set")
@click.argument("key")
@click.argument("value")
@pass_state
def config_set(state: CliState, key: str, value: str):
    """Set KEY (dotted, like server.port) to VALUE in the configuration file."""
    path = Path(state.config_path) if state.config_path else writable_config_path()
    set_value(path, key, parse_value(value))
    click.echo(f"{path}: {key} = {value}")
