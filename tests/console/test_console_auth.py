"""The console's login and CSRF guard with Flask's test client over a real data dir: the password's hash,
the session cookie, every admin POST refused without a session, without the token and with another
session's token, the throttle of wrong passwords, logout and expiry ending a session on the server, and the
setting that asks everyone to log in."""

from __future__ import annotations

import logging
import os
import shutil
import stat

import pytest

from console_testing import PASSWORD, admin_pages, admin_posts, admin_token, device_token, login, set_password


@pytest.fixture
def admin(app, data_dir):
    set_password(data_dir)
    return app


def test_the_password_is_a_salted_scrypt_hash_in_a_0600_file(data_dir):
    from appliance import admin_password

    set_password(data_dir)
    path = admin_password.path_in(data_dir)
    first = path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert PASSWORD not in first and first.startswith("scrypt$32768$8$1$")
    assert admin_password.check(data_dir, PASSWORD) and not admin_password.check(data_dir, PASSWORD + "x")
    set_password(data_dir)
    assert path.read_text() != first  # a new salt each time
    with pytest.raises(admin_password.PasswordError, match="at least 8"):
        admin_password.set_password(data_dir, "short")
    assert admin_password.check(data_dir, PASSWORD)  # a refused password changes nothing


def test_login_sets_an_httponly_strict_cookie_secure_over_tls(admin, client):
    r = login(client)
    assert r.status_code == 303 and r.headers["Location"] == "/admin/"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("almanac_admin=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie and "Max-Age=43200" in cookie  # admin.session_hours: 12
    assert client.get("/admin/library?format=json").status_code == 200

    tls = admin.test_client()
    token = tls.get("/api/csrf", base_url="https://box.local").get_json()["csrf_token"]
    r = tls.post("/admin/login", data={"password": PASSWORD, "csrf_token": token}, base_url="https://box.local")
    assert r.status_code == 303 and "Secure" in r.headers["Set-Cookie"]


def test_console_pages_ask_for_the_login(admin, client):
    for url in admin_pages():
        r = client.get(url, headers={"Accept": "text/html"})
        assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login?next=/admin/"), url
        assert client.get(url + "?format=json").status_code == 401, url
    login(client)
    for url in admin_pages():
        if url == "/admin/status":
            url += "?doctor=0"
        r = client.get(url, headers={"Accept": "application/json"})
        if url == "/admin/maps/estimate":  # it needs a region: a 400 that says which argument
            assert r.status_code == 400 and "country" in r.get_json()["message"]
            continue
        assert r.status_code == 200 and r.is_json, (url, r.status_code)
        html = client.get(url, headers={"Accept": "text/html"})
        assert html.status_code == 200 and 'id="logout"' in html.get_data(as_text=True), url


@pytest.mark.parametrize("url", admin_posts())
def test_every_admin_post_is_refused_without_session_token_or_with_another_sessions(admin, client, data_dir, url):
    config_file = data_dir.parent / "config.yaml"
    before = config_file.read_text()
    books = [b.name for b in admin.extensions["almanac"].library.list()]
    form = {"key": "portal.title", "value": "Changed", "name_or_url": "example", "path": str(data_dir / "x")}

    anonymous = admin.test_client()
    r = anonymous.post(
        url, data={**form, "csrf_token": device_token(anonymous)}, headers={"Accept": "application/json"}
    )
    assert r.status_code == 401, (url, r.status_code)
    assert anonymous.post(url, data=form).status_code == 403  # no token at all: refused before anything

    login(client)
    r = client.post(url, data=form, headers={"Accept": "application/json"})
    assert r.status_code == 403 and "security token" in r.get_json()["message"], (url, r.status_code)

    other = admin.test_client()
    login(other)
    r = client.post(url, data={**form, "csrf_token": admin_token(other)}, headers={"Accept": "application/json"})
    assert r.status_code == 403, (url, r.status_code)

    # the device token of the same browser is not the admin's either
    r = client.post(url, data={**form, "csrf_token": device_token(anonymous)}, headers={"Accept": "application/json"})
    assert r.status_code == 403, (url, r.status_code)
    assert config_file.read_text() == before
    assert [b.name for b in admin.extensions["almanac"].library.list()] == books
    assert not (data_dir / "logs" / "tasks").exists()


def test_a_change_is_refused_by_get(admin, client):
    login(client)
    r = client.get("/admin/library/example/remove", headers={"Accept": "text/html"})
    assert r.status_code == 405 and "takes a POST" in r.get_data(as_text=True)
    assert admin.extensions["almanac"].library.get("example") is not None


def test_logout_ends_the_session_on_the_server(admin, client):
    login(client)
    cookie = client.get_cookie("almanac_admin").value
    token = admin_token(client)
    r = client.post("/admin/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"] == "/admin/login"
    assert "almanac_admin=;" in r.headers["Set-Cookie"]
    replay = admin.test_client()
    replay.set_cookie("almanac_admin", cookie)
    assert replay.get("/admin/jobs?format=json").status_code == 401  # the old cookie is worth nothing now
    r = replay.post("/admin/settings", data={"key": "portal.title", "value": "x", "csrf_token": token})
    assert r.status_code == 403


def test_sessions_expire(data_dir):
    from appliance.admin_sessions import SessionStore

    now = [1000.0]
    store = SessionStore(data_dir.parent / "state.db", clock=lambda: now[0])
    s = store.create(3600, "10.0.0.5")
    assert store.get(s.token) == s and store.get("made-up") is None and store.get(None) is None
    now[0] += 3599
    assert store.get(s.token) is not None
    now[0] += 2
    assert store.get(s.token) is None and store.count() == 0
    store.close()


def test_a_burst_of_wrong_passwords_is_slowed_and_logged(admin, client, caplog):
    clock = [5000.0]
    client.get("/api/csrf")
    from appliance.web.auth import state

    with admin.test_request_context():
        state().sessions.clock = lambda: clock[0]
    token = device_token(client)
    statuses, waits = [], []
    caplog.set_level(logging.WARNING)
    for _ in range(6):
        r = client.post("/admin/login", data={"password": "wrong password", "csrf_token": token})
        statuses.append(r.status_code)
        waits.append(int(r.headers.get("Retry-After", 0)))
    # three free tries; then each wrong one makes the next wait: 1 s, then refused (429) without a look
    assert statuses == [401, 401, 401, 401, 429, 429] and waits[:4] == [0, 0, 0, 2]
    r = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and "too many wrong passwords" in r.get_data(as_text=True)  # even the right one
    clock[0] += 2
    r = client.post("/admin/login", data={"password": "wrong again", "csrf_token": token})
    assert r.status_code == 401 and int(r.headers["Retry-After"]) == 3  # 2 s now: the delay grows
    clock[0] += 2.5
    assert (
        client.post("/admin/login", data={"password": "still wrong", "csrf_token": token}).headers["Retry-After"] == "5"
    )
    assert client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token}).status_code == 429
    clock[0] += 5
    assert client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token}).status_code == 303
    assert sum("login failed from 127.0.0.1" in r.getMessage() for r in caplog.records) == 6
    assert any("throttled" in r.getMessage() for r in caplog.records)
    # a success starts the count again
    with admin.test_request_context():
        assert state().sessions.wait_s("127.0.0.1") == 0


def test_next_after_login_stays_on_the_box(admin, client):
    token = device_token(client)
    for nxt, where in (("/admin/maps", "/admin/maps"), ("//evil.example/x", "/admin/"), ("http://evil/", "/admin/")):
        fresh = admin.test_client()
        token = device_token(fresh)
        r = fresh.post("/admin/login", data={"password": PASSWORD, "csrf_token": token, "next": nxt})
        assert r.status_code == 303 and r.headers["Location"] == where, nxt


def test_reader_side_changes_need_the_device_token(admin, client):
    r = client.post("/answers", json={"q": "What is Kiwix?"})
    assert r.status_code == 403
    r = client.post("/answers", json={"q": "What is Kiwix?"}, headers={"X-CSRF-Token": "made-up"})
    assert r.status_code == 403
    other = admin.test_client()
    r = client.post("/answers", json={"q": "What is Kiwix?"}, headers={"X-CSRF-Token": device_token(other)})
    assert r.status_code == 403  # another device's token
    r = client.post("/answers", json={"q": "What is Kiwix?"}, headers={"X-CSRF-Token": device_token(client)})
    assert r.status_code != 403  # no deep model here: the answer is refused for that, not for its token
    # a page read makes no cookie, and its meta token is empty until one is asked for
    fresh = admin.test_client()
    r = fresh.get("/library", headers={"Accept": "text/html"})
    assert "Set-Cookie" not in r.headers and '<meta name="csrf-token" content="">' in r.get_data(as_text=True)


def test_login_to_read_closes_everything_but_the_login(admin, client, data_dir):
    from almanac_testing import MAPS

    (data_dir / "maps").mkdir(exist_ok=True)
    shutil.copy(MAPS / "world-ne10m-z0-6.pmtiles", data_dir / "maps" / "plain.pmtiles")
    tile = "/maps/tiles/plain/0/0/0.mvt"
    assert admin.test_client().get(tile).status_code == 200  # open to all: the fast path serves it
    login(client)
    token = admin_token(client)
    r = client.post("/admin/settings", data={"key": "admin.login_to_read", "value": "true", "csrf_token": token})
    assert r.status_code == 303
    assert "login_to_read: true" in (data_dir.parent / "config.yaml").read_text()
    anonymous = admin.test_client()
    r = anonymous.get("/library", headers={"Accept": "text/html"})
    assert r.status_code == 302 and r.headers["Location"] == "/admin/login?next=/library"
    assert anonymous.get("/search?pattern=kiwix&format=json").status_code == 401
    assert anonymous.get("/content/example/").status_code == 302
    assert anonymous.get(tile).status_code == 302  # not even through the tiles' fast path
    assert anonymous.get("/healthz").status_code == 200 and anonymous.get("/admin/login").status_code == 200
    assert client.get("/library?format=json").status_code == 200  # the admin reads on
    r = client.post("/admin/settings", data={"key": "admin.login_to_read", "value": "false", "csrf_token": token})
    assert r.status_code == 303 and anonymous.get("/library?format=json").status_code == 200


def test_no_password_set_says_how_to_set_one(app, client):
    r = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": device_token(client)})
    assert r.status_code == 403 and "almanac admin set-password" in r.get_data(as_text=True)
