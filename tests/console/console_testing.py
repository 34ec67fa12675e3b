"""Helpers of the console tests: the admin password set in a data dir, a Flask test client logged in (or
not), the CSRF token a page carries, and every admin POST of the console with a sample URL."""

from __future__ import annotations

import re
from pathlib import Path

PASSWORD = "a long test password"
_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')

# Every change the console offers (routes.CONSOLE's POSTs), with path parameters filled in.
SAMPLES = {
    "<name>": "example",
    "<pack_id>": "tiny",
    "<int:job_id>": "1",
    "<verb>": "pause",
    "<int:task_id>": "1",
    "<int:token_id>": "1",
}


def set_password(data_root: Path, password: str = PASSWORD) -> None:
    from appliance.admin_password import set_password as store

    store(Path(data_root), password)


def page_token(html: str) -> str:
    m = _META.search(html)
    assert m, "the page has no <meta name=csrf-token>"
    return m.group(1)


def device_token(client) -> str:
    return client.get("/api/csrf").get_json()["csrf_token"]


def login(client, password: str = PASSWORD):
    """Log ``client`` in through the form (as a browser does); the response of the POST."""
    token = device_token(client)
    return client.post("/admin/login", data={"password": password, "csrf_token": token, "next": "/admin/"})


def admin_token(client) -> str:
    r = client.get("/admin/", headers={"Accept": "text/html"})
    assert r.status_code == 200, r.status_code
    return page_token(r.get_data(as_text=True))


def admin_posts() -> list[str]:
    from appliance.web.routes import CONSOLE

    urls = []
    for rule, _view, *methods in CONSOLE:
        if methods and "POST" in methods[0]:
            for key, value in SAMPLES.items():
                rule = rule.replace(key, value)
            urls.append(rule)
    return urls


def admin_pages() -> list[str]:
    from appliance.web.routes import CONSOLE

    return [rule for rule, _view, *methods in CONSOLE if not methods and "<" not in rule]
