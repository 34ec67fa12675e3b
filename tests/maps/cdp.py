"""Headless Chromium driven over the DevTools protocol: open a page, watch every request, wait for a
condition, screenshot, and measure the screenshot's colours inside the browser (no imaging library)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--mute-audio",
    "--enable-unsafe-swiftshader",
    "--window-size=1024,768",
    # Belt and braces for the sandbox: names other than loopback do not resolve at all.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    def __init__(self, binary: str):
        import websocket

        self.profile = Path(tempfile.mkdtemp(prefix="almanac-chromium-"))
        # TMPDIR inside the profile: Chromium's own scratch files go away with it.
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(self.profile)},
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []
        self.frame_sessions: dict[str, str] = {}  # target id -> DevTools session of an out-of-process frame

    def _send(self, method: str, params: dict, session: str | None = None) -> int:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        return self._id

    def call(self, method: str, session: str | None = None, **params):
        my_id = self._send(method, params, session)
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._event(msg)

    def _event(self, msg: dict) -> None:
        self.events.append(msg)
        if msg["method"] == "Target.attachedToTarget":
            # A worker (MapLibre fetches tiles from web workers): watch its requests too, then let it run.
            session = msg["params"]["sessionId"]
            self._send("Network.enable", {}, session)
            self._send("Runtime.runIfWaitingForDebugger", {}, session)

    def watch_everything(self) -> None:
        """Record requests of the page and of every worker it starts."""
        self.call("Network.enable")
        self.call("Runtime.enable")
        self.call("Page.enable")
        # Frames in a process of their own (a sandboxed article is one) are left out: paused for a debugger
        # they would never load; frame_evaluate() attaches to them when asked.
        self.call(
            "Target.setAutoAttach",
            autoAttach=True,
            waitForDebuggerOnStart=True,
            flatten=True,
            filter=[{"type": "iframe", "exclude": True}, {}],
        )

    def evaluate(self, expression: str, await_promise: bool = False):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, in_frame: bool | str = False) -> bool:
        """Poll `expression` until it is true: in the page, or in its frame (`in_frame`: True, or a part of the
        frame's URL)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if (
                    self.frame_evaluate(expression, "" if in_frame is True else in_frame)
                    if in_frame
                    else self.evaluate(expression)
                ):
                    return True
            except RuntimeError:
                if not in_frame:
                    raise  # the frame may be between two documents: try again
            time.sleep(0.25)
        return False

    def frame_evaluate(self, expression: str, url_part: str = ""):
        """`expression` in the page's iframe (the first whose URL holds `url_part`), which the page's own scripts
        may not reach (a sandboxed article runs in a process of its own): through the frame's DevTools session."""
        targets = self.call("Target.getTargets")["targetInfos"]
        frames = [t for t in targets if t["type"] == "iframe" and url_part in t["url"]]
        if not frames:
            raise RuntimeError(f"no frame of {url_part or 'any address'} in a process of its own")
        target = frames[0]["targetId"]
        if target not in self.frame_sessions:
            self.frame_sessions[target] = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        session = self.frame_sessions[target]
        try:
            result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        except RuntimeError:
            del self.frame_sessions[target]  # the frame went away (navigated): attach again next time
            raise
        if "exceptionDetails" in result:
            raise RuntimeError(f"frame error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            if e["method"] == "Runtime.exceptionThrown":
                out.append(str(e["params"]["exceptionDetails"].get("exception", {}).get("description")))
            elif e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in e["params"]["args"]))
        return out

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def colour_stats(self, png: bytes, box: dict) -> dict:
        """Distinct colours (quantised to 4 bits a channel) and the share of the box covered by colours other
        than the most common one, measured by drawing the screenshot on a 2D canvas inside the page."""
        data_url = "data:image/png;base64," + base64.b64encode(png).decode()
        script = """(async () => {
          const img = new Image(); img.src = IMAGE_URL; await img.decode();
          const b = BOX, c = document.createElement('canvas'); c.width = b.width; c.height = b.height;
          const g = c.getContext('2d'); g.drawImage(img, -b.x, -b.y);
          const px = g.getImageData(0, 0, b.width, b.height).data, counts = new Map();
          for (let i = 0; i < px.length; i += 4) {
            const k = (px[i] >> 4) << 8 | (px[i + 1] >> 4) << 4 | (px[i + 2] >> 4);
            counts.set(k, (counts.get(k) || 0) + 1);
          }
          const total = px.length / 4, top = Math.max(...counts.values());
          const big = [...counts.values()].filter(n => n > total * 0.002).length;
          return {colours: counts.size, colours_over_0_2pct: big, not_dominant: 1 - top / total};
        })()""".replace("BOX", json.dumps(box)).replace("IMAGE_URL", json.dumps(data_url))  # no underscore in base64
        return self.evaluate(script, await_promise=True)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
