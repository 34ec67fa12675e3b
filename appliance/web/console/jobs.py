"""The console's Downloads and jobs: every download job with its live progress (bytes, rate, ETA) and error,
pause / resume / cancel (by changing the job's state in SQLite, as `almanac jobs` does: the downloader's
process does the work), and the console's tasks (imports, exports, model pulls, map regions) with their
output, stoppable."""

from __future__ import annotations

from flask import abort, request

from content.downloads import JobError

from ...tasks import TaskError
from ..render import page
from .common import box, done, tasks

UNFINISHED = ("queued", "running", "verifying", "paused", "failed")
VERBS = ("pause", "resume", "cancel")


def jobs_page():
    """GET /admin/jobs[?all=1]: the jobs (unfinished ones, or all) and the tasks, newest task first."""
    show_all = request.args.get("all") == "1"
    listed = box().downloader.jobs(None if show_all else UNFINISHED)
    if not show_all:  # the last few finished ones too, so a download that just ended does not vanish
        finished = [j for j in box().downloader.jobs(("done", "cancelled")) if j.id not in {x.id for x in listed}]
        listed = sorted(listed + finished[-5:], key=lambda j: j.id)
    data = {
        "jobs": [j.to_json() for j in listed],
        "tasks": [t.to_json() for t in tasks().list(20)],
        "all": show_all,
        "notice": request.args.get("notice", ""),
    }
    return page("console/jobs.html", data)


def change_job(job_id: int, verb: str):
    """POST /admin/jobs/ID/pause|resume|cancel."""
    if verb not in VERBS:
        abort(404, f"no action {verb!r} (known: {', '.join(VERBS)})")
    try:
        job = getattr(box().downloader, verb)(job_id)
    except JobError as e:
        abort(404 if str(e).startswith("no download job") else 409, str(e))
    return done(f"job {job.id} ({job.name}): {job.state}", "/admin/jobs", job=job.to_json())


def task_page(task_id: int):
    """GET /admin/tasks/ID: one task with the last 200 lines of its output and its JSON result."""
    try:
        task = tasks().get(task_id)
    except TaskError as e:
        abort(404, str(e))
    return page("console/task.html", {"task": task.to_json(200), "result": task.result()})


def stop_task(task_id: int):
    """POST /admin/tasks/ID/stop."""
    try:
        task = tasks().stop(task_id)
    except TaskError as e:
        abort(404 if str(e).startswith("no task") else 409, str(e))
    return done(f"task {task.id} ({task.label}): stopping", "/admin/jobs", task=task.to_json())
