"""The download jobs as JSON, read-only, for the admin console's pages to render (changing a job from the web
needs the admin login of a later issue; today the CLI does it: `almanac jobs pause|resume|cancel ID`)."""

from __future__ import annotations

from flask import abort, jsonify, request

from . import worker_state

STATES = ("queued", "running", "verifying", "paused", "done", "failed", "cancelled")


def jobs_list():
    """GET /api/jobs[?state=running,queued]: every job, oldest first, with counts by state."""
    wanted = tuple(s for s in request.args.get("state", "").split(",") if s)
    unknown = [s for s in wanted if s not in STATES]
    if unknown:
        abort(400, f"unknown state {unknown[0]!r} (known: {', '.join(STATES)})")
    listed = worker_state.get().downloads.list(wanted or None)
    counts = {s: 0 for s in STATES}
    for job in listed:
        counts[job.state] += 1
    return jsonify({"jobs": [j.to_json() for j in listed], "counts": counts})


def job_detail(job_id: int):
    """GET /api/jobs/ID: one job."""
    from content.downloads import JobError

    try:
        job = worker_state.get().downloads.get(job_id)
    except JobError as e:
        abort(404, str(e))
    return jsonify(job.to_json())
