"""Headless Chromium driven over the DevTools protocol: load a page, check its images and console, screenshot it."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--remote-debugging-port=0", "--remote-allow-origins=*",
         "--window-size=1280,900"]


@dataclass
class PageCheck:
    images: list[dict[str, Any]]
    console_errors: list[str]
    title: str
    text: str
    screenshot: bytes = field(repr=False)


class DevTools:
    """A minimal DevTools-protocol client over one websocket (one page target)."""

    def __init__(self, url: str):
        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        while time.monotonic() < deadline:
            message = json.loads(self.socket.recv())
            self.events.append(message)
            if message.get("method") == event:
                return message
        raise TimeoutError(f"no {event} within {timeout_s} s")

    def close(self) -> None:
        self.socket.close()


def _page_socket(user_dir: Path, process: subprocess.Popen[bytes], timeout_s: float = 30) -> str:
    port_file = user_dir / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_file.is_file() and len(port_file.read_text().splitlines()) >= 2:
            break
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        time.sleep(0.1)
    else:
        raise TimeoutError("chromium did not open its DevTools port")
    port = int(port_file.read_text().splitlines()[0])
    browser = websocket.create_connection(f"ws://127.0.0.1:{port}{port_file.read_text().splitlines()[1]}",
                                          timeout=30, suppress_origin=True)
    try:
        browser.send(json.dumps({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}))
        while True:
            message = json.loads(browser.recv())
            if message.get("id") == 1:
                target = message["result"]["targetId"]
                break
    finally:
        browser.close()
    return f"ws://127.0.0.1:{port}/devtools/page/{target}"


IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({src: i.src.slice(0, 40), complete: i.complete,
  naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})))"""


def check_page(path: Path, timeout_s: float = 60) -> PageCheck:
    """Open a local HTML file in headless Chromium; report its images, console errors, text and a full screenshot."""
    user_dir = Path(tempfile.mkdtemp(prefix="offpath-chromium-"))
    process = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={user_dir}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tools = DevTools(_page_socket(user_dir, process))
        try:
            for domain in ("Page", "Runtime", "Log"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=path.resolve().as_uri())
            tools.wait_for("Page.loadEventFired", timeout_s)
            images = json.loads(tools.call("Runtime.evaluate", expression=IMAGES_JS)["result"]["value"])
            title = tools.call("Runtime.evaluate", expression="document.title")["result"]["value"]
            text = tools.call("Runtime.evaluate", expression="document.body.innerText")["result"]["value"]
            metrics = tools.call("Page.getLayoutMetrics")["cssContentSize"]
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                              clip={"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1})
            errors = _console_errors(tools.events)
        finally:
            tools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(user_dir, ignore_errors=True)
    return PageCheck(images=images, console_errors=errors, title=title, text=text,
                     screenshot=base64.b64decode(shot["data"]))


def _console_errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(str(params["entry"].get("text")))
    return errors
