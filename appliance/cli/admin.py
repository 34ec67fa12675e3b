"""`almanac admin set-password | status`: the console's admin password (a scrypt hash in the data dir)."""

from __future__ import annotations

from pathlib import Path

import click

from .state import BadInput, CliState, pass_state


@click.group()
def admin():
    """The admin console's login (/admin/ on the portal)."""


@admin.command("set-password")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the password from the first line of this file (else it is asked for, twice).",
)
@click.option("--generate", is_flag=True, help="Make a random password and print it (once: it is not kept).")
@click.option("--keep", is_flag=True, help="Do nothing if a password is set already (what a re-install does).")
@pass_state
def set_password(state: CliState, password_file: Path | None, generate: bool, keep: bool):
    """Set the admin's password; every console session ends."""
    from .. import admin_password
    from ..admin_sessions import SessionStore

    data = state.data()
    if keep and admin_password.is_set(data.root):
        click.echo(f"admin password: kept (already set in {admin_password.path_in(data.root)})")
        return
    if password_file and generate:
        raise click.UsageError("give --password-file or --generate, not both")
    if password_file:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"{password_file}: cannot read ({getattr(e, 'strerror', None) or e})") from None
        password = lines[0] if lines else ""
    elif generate:
        password = admin_password.generate()
    else:
        password = click.prompt("New admin password", hide_input=True, confirmation_prompt=True)
    try:
        path = admin_password.set_password(data.root, password)
    except admin_password.PasswordError as e:
        raise BadInput(str(e)) from None
    store = SessionStore(data.db)
    ended = store.end_all()
    store.close()
    if generate:
        click.echo(f"admin password: {password}")
        click.echo("  (shown only now: write it down; `almanac admin set-password` changes it)")
    click.echo(f"admin password set in {path}" + (f"; {ended} console session(s) ended" if ended else ""))


@admin.command("status")
@pass_state
def status(state: CliState):
    """Whether an admin password is set, and how many console sessions are open."""
    from .. import admin_password
    from ..admin_sessions import SessionStore

    data = state.data()
    store = SessionStore(data.db)
    n = store.count()
    store.close()
    where = admin_password.path_in(data.root)
    click.echo(f"admin password: {'set in ' + str(where) if where.is_file() else 'not set'}; {n} open session(s)")
