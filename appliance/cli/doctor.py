"""`almanac doctor`: each check says OK or FAIL, and how to fix a failure (the checks: appliance/doctor.py)."""

from __future__ import annotations

import json
import sys

import click

from ..doctor import Check, run_checks
from .state import CliState, pass_state

__all__ = ["Check", "doctor", "run_checks"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Every check as JSON (what the console's Status page shows).")
@pass_state
def doctor(state: CliState, as_json: bool):
    """Check Python, MLX, libzim, the data dir, disk, port and the models; print OK or FAIL with the fix."""
    checks = run_checks(state.config)
    if as_json:
        click.echo(json.dumps({"checks": [c.to_json() for c in checks], "ok": all(c.ok for c in checks)}, indent=2))
        sys.exit(0 if all(c.ok for c in checks) else 1)
    for check in checks:
        click.echo(check.line())
    failed = [c for c in checks if not c.ok]
    click.echo(f"{len(checks) - len(failed)} OK, {len(failed)} FAIL")
    sys.exit(1 if failed else 0)
