"""`almanac jobs [list] | pause ID | resume ID | cancel ID | run`: the download jobs in the state database,
shared with the service (which runs them) and with every other `almanac` process."""

from __future__ import annotations

import json
import sys

import click

from .state import BadInput, CliState, pass_state


def _line(job) -> str:
    from content.downloads import human_bytes

    done = f"{job.fraction:.0%}" if job.fraction is not None else human_bytes(job.bytes_done)
    rate = f"{human_bytes(job.rate)}/s" if job.state == "running" and job.rate else ""
    eta = f"ETA {job.eta_s:.0f} s" if job.eta_s is not None else ""
    tail = job.result if job.state == "done" else job.error
    return "\t".join(str(x) for x in (job.id, job.kind, job.name, job.state, done, rate, eta, tail))


def _call(fn, job_id: int):
    from content.downloads import JobError

    try:
        return fn(job_id)
    except JobError as e:
        raise BadInput(str(e)) from None


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Every job as JSON (what /api/jobs answers).")
@click.option("--all", "show_all", is_flag=True, help="Also the finished ones (done, failed, cancelled).")
@click.pass_context
def jobs(ctx: click.Context, as_json: bool, show_all: bool):
    """Download jobs: list them (the default), pause, resume, cancel, or run the queue here."""
    if ctx.invoked_subcommand is not None:
        return
    state: CliState = ctx.find_root().obj
    box = state.box()
    unfinished = ("queued", "running", "verifying", "paused", "failed")
    listed = box.downloader.jobs(None if show_all or as_json else unfinished)
    if as_json:
        click.echo(json.dumps({"jobs": [j.to_json() for j in listed]}, indent=2))
        return
    for job in listed:
        click.echo(_line(job))
    if not listed:
        click.echo("no download jobs" + ("" if show_all else " (--all shows the finished ones)"), err=True)


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True)
@click.pass_context
def jobs_list(ctx: click.Context, as_json: bool, show_all: bool):
    """List the download jobs."""
    ctx.invoke(jobs, as_json=as_json, show_all=show_all)


def _change(state: CliState, verb: str, job_id: int, as_json: bool) -> None:
    box = state.box()
    job = _call(getattr(box.downloader, verb), job_id)
    if as_json:
        click.echo(json.dumps(job.to_json(), indent=2))
        return
    hint = " (the service runs it; without one, `almanac jobs run`)" if verb == "resume" else ""
    click.echo(f"job {job.id} ({job.name}): {job.state}{hint}")


@jobs.command("pause")
@click.argument("job_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def jobs_pause(state: CliState, job_id: int, as_json: bool):
    """Pause a queued or running job; what has arrived is kept."""
    _change(state, "pause", job_id, as_json)


@jobs.command("resume")
@click.argument("job_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def jobs_resume(state: CliState, job_id: int, as_json: bool):
    """Queue a paused or failed job again; it goes on from its last checkpoint."""
    _change(state, "resume", job_id, as_json)


@jobs.command("cancel")
@click.argument("job_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def jobs_cancel(state: CliState, job_id: int, as_json: bool):
    """Cancel a job and delete what it downloaded; nothing installed is touched."""
    _change(state, "cancel", job_id, as_json)


@jobs.command("run")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def jobs_run(state: CliState, as_json: bool):
    """Run the queued jobs in this process until none is left (the service does this by itself)."""
    box = state.box(progress=not as_json)
    ran = box.downloader.run()
    if box.downloader.on_progress is not None:
        box.downloader.on_progress.close()
    if as_json:
        click.echo(json.dumps({"jobs": [j.to_json() for j in ran]}, indent=2))
    else:
        for job in ran:
            click.echo(_line(job))
    if any(j.state != "done" for j in ran):
        sys.exit(1)
