"""Drive a server with wrk (Debian's `wrk`), rotating through many URLs, and read its figures back.

wrk is a C load generator: unlike a Python client it leaves the CPU to the server being measured.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile


def wrk(base: str, paths: list[str], duration: int, connections: int, headers: dict | None = None) -> dict:
    """req/s, p50, p99 (ms) and errors from one wrk run rotating over `paths`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            "paths = {\n" + ",\n".join(json.dumps(p) for p in paths) + "\n}\n"
            "counter = 0\n"
            "headers = " + lua_table(headers or {}) + "\n"
            "request = function()\n  counter = counter + 1\n"
            "  return wrk.format('GET', paths[(counter % #paths) + 1], headers)\nend\n"
        )
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, base],
            capture_output=True,
            text=True,
            timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(script)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise RuntimeError(f"wrk printed no rate: {out.strip()[-200:]}")
    rps = float(found.group(1))

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = int(errors.group(1)) if errors else 0
    failed += sum(int(x) for x in sock.groups()) if sock else 0
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "errors": failed}


def lua_table(values: dict) -> str:
    return "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in values.items()) + "}"
