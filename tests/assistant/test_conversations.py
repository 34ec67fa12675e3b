"""Conversations saved on the box, private to the device that had them: a real portal (gunicorn, two workers)
and two HTTP clients, each with its own cookie. No model: the turns are the library's passages."""

from __future__ import annotations

import json
import urllib.request

from almanac_testing import Device, Portal, free_port, sse_events

QUESTION = "How do I add zim files to the library?"


def _ask(device: Device, portal: Portal, body: dict) -> tuple[int, list]:
    status, text = device.request(f"{portal.url}/assistant/stream", "POST", body, accept="text/event-stream")
    return status, (sse_events(text) if status == 200 else text)


def test_two_devices_do_not_see_each_others_conversations(tmp_path):
    config = f"server:\n  host: 127.0.0.1\nassistant:\n  url: http://127.0.0.1:{free_port()}\n  passages: 3\n"
    with Portal(tmp_path, config) as portal:
        phone, laptop = Device(), Device()
        status, events = _ask(phone, portal, {"q": QUESTION, "conversation": "new"})
        assert status == 200 and [n for n, _ in events] == ["conversation", "passages", "done"]
        cid = events[0][1]["id"]
        assert events[0][1]["title"] == QUESTION and len(cid) >= 20
        status, events = _ask(phone, portal, {"q": "What is Kiwix?", "conversation": cid})
        assert [n for n, _ in events] == ["passages", "done"]
        status, laptop_events = _ask(laptop, portal, {"q": "offline wikipedia", "conversation": "new"})
        other = laptop_events[0][1]["id"]

        # Each device lists only its own.
        assert [c["id"] for c in phone.request(f"{portal.url}/conversations?format=json")[1]["conversations"]] == [cid]
        assert [c["id"] for c in laptop.request(f"{portal.url}/conversations?format=json")[1]["conversations"]] == [
            other
        ]
        saved = phone.request(f"{portal.url}/conversations/{cid}?format=json")[1]
        assert [e["q"] for e in saved["entries"]] == [QUESTION, "What is Kiwix?"]
        assert all(e["passages"] for e in saved["entries"])
        # The other device cannot read, continue, rename or delete it, even knowing its id.
        assert laptop.request(f"{portal.url}/conversations/{cid}?format=json")[0] == 404
        assert _ask(laptop, portal, {"q": "more", "conversation": cid})[0] == 404
        assert laptop.request(f"{portal.url}/conversations/{cid}/rename", "POST", {"title": "mine"})[0] == 404
        assert laptop.request(f"{portal.url}/conversations/{cid}", "DELETE")[0] == 404
        assert "What is Kiwix?" not in laptop.request(f"{portal.url}/assistant?c={cid}", accept="text/html")[1]
        # No cookie at all: nothing.
        assert Device().request(f"{portal.url}/conversations?format=json")[1]["conversations"] == []

        # Resume, rename (a bad title is refused and changes nothing), delete.
        page = phone.request(f"{portal.url}/assistant?c={cid}", accept="text/html")[1]
        assert QUESTION in page and "What is Kiwix?" in page and 'id="saved-conversation"' in page
        status, body = phone.request(f"{portal.url}/conversations/{cid}/rename", "POST", {"title": " "})
        assert status == 400 and "must not be empty" in body["message"]
        status, body = phone.request(f"{portal.url}/conversations/{cid}/rename", "POST", {"title": "Kiwix notes"})
        assert status == 200 and body["title"] == "Kiwix notes"
        assert "Kiwix notes" in phone.request(f"{portal.url}/conversations", accept="text/html")[1]
        assert phone.request(f"{portal.url}/conversations/{cid}", "DELETE")[1] == {"deleted": True, "id": cid}
        assert phone.request(f"{portal.url}/conversations?format=json")[1]["conversations"] == []
        assert [c["id"] for c in laptop.request(f"{portal.url}/conversations?format=json")[1]["conversations"]] == [
            other
        ]


def test_the_device_cookie_is_random_httponly_and_same_site(tmp_path):
    config = f"server:\n  host: 127.0.0.1\nassistant:\n  url: http://127.0.0.1:{free_port()}\n"
    with Portal(tmp_path, config) as portal:
        cookies = []
        for _ in range(2):
            # A device's first change asks for its CSRF token (GET /api/csrf, as assistant.js does): that makes
            # its cookie, and the change made with both is saved.
            with urllib.request.urlopen(f"{portal.url}/api/csrf", timeout=60) as r:
                cookies.append(r.headers["Set-Cookie"])
                token = json.load(r)["csrf_token"]
            req = urllib.request.Request(
                f"{portal.url}/assistant/stream",
                data=b'{"q": "wikipedia", "conversation": "new"}',
                headers={
                    "Content-Type": "application/json",
                    "Cookie": cookies[-1].split(";")[0],
                    "X-CSRF-Token": token,
                },
            )
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 200 and r.headers["Set-Cookie"] is None  # the cookie it had is kept
        for c in cookies:
            assert c.startswith("almanac_device=") and "HttpOnly" in c and "SameSite=Lax" in c and "Path=/" in c
        assert cookies[0].split(";")[0] != cookies[1].split(";")[0]
        # Reading a page makes no cookie: only what prepares a change does.
        with urllib.request.urlopen(f"{portal.url}/assistant", timeout=60) as r:
            assert r.headers["Set-Cookie"] is None
