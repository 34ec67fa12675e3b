"""`almanac answers list | show ID | cancel ID | delete ID`: the waiting answers on this box, from a terminal.

The terminal is the box's own console, so it sees every device's waiting answers (the portal shows each
device only its own). `almanac ask --later` asks for one.
"""

from __future__ import annotations

import json
import time

import click

from .state import CliState, pass_state

TERMINAL_DEVICE = "terminal"  # the device of the questions asked with `almanac ask --later`


def _stores(state: CliState):
    from ..assistant.jobs import JobStore
    from ..assistant.speeds import SpeedStore

    data = state.data()
    return JobStore(data.db), SpeedStore(data.db)


def _progress(job, place) -> str:
    position, eta = place
    when = "" if eta is None else f", ready in about {max(1, round(eta / 60))} min"
    if job.status == "queued":
        return f"queued, number {position} in line{when}"
    if job.status == "running":
        return f"running, {job.tokens} tokens so far{when}"
    if job.status == "failed":
        return f"failed: {job.error}"
    return job.status


@click.group()
def answers():
    """Waiting answers: questions for the deep model, answered in the background."""


@answers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def list_answers(state: CliState, as_json: bool):
    """Every waiting answer, newest first, with its place in line and ETA."""
    from ..assistant.speeds import schedule

    jobs, speeds = _stores(state)
    url = str(state.config.get("assistant.deep.url")).strip()
    places = schedule(jobs.waiting(), speeds.get(url) if url else None)
    found = jobs.list()
    if as_json:
        out = []
        for job in found:
            d = job.to_json()
            d["position"], d["eta_s"] = places.get(job.id, (None, None))
            out.append(d)
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("no waiting answers")
    for job in found:
        asked = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created))
        click.echo(f"{job.id:>5}  {asked}  {_progress(job, places.get(job.id, (None, None)))}  {job.question}")


def _job(state: CliState, job_id: int):
    jobs, _ = _stores(state)
    job = jobs.get(job_id)
    if job is None:
        raise click.ClickException(f"no waiting answer {job_id} (`almanac answers list` names them)")
    return jobs, job


@answers.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def show(state: CliState, job_id: int, as_json: bool):
    """One waiting answer: its status, the answer so far and its sources."""
    _, job = _job(state, job_id)
    if as_json:
        click.echo(json.dumps(job.to_json(), ensure_ascii=False, indent=2))
        return
    click.echo(f"{job.question}\n[{job.status}{', ' + job.note if job.note else ''}]\n")
    if job.answer:
        click.echo(job.answer)
    click.echo("\nSources:")
    for p in job.passages:
        click.echo(f"[{p['n']}] {p['title']} ({p['book']}: {p['url']})")


@answers.command()
@click.argument("job_id", type=int)
@pass_state
def cancel(state: CliState, job_id: int):
    """Stop a waiting answer (a running one stops at its next token)."""
    jobs, job = _job(state, job_id)
    if not jobs.cancel(job.id):
        raise click.ClickException(f"waiting answer {job_id} is {job.status}, not waiting")
    click.echo(f"cancelled {job_id}")


@answers.command()
@click.argument("job_id", type=int)
@pass_state
def delete(state: CliState, job_id: int):
    """Delete a waiting answer and what was written of it."""
    jobs, job = _job(state, job_id)
    jobs.delete(job.id)
    click.echo(f"deleted {job_id}")
