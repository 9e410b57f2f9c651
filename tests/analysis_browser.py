"""Headless Chromium driven over the DevTools protocol: load a page, check its images, console and tables, screenshot
it at each width asked for."""

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
# A report's tables fit a desktop window whole; in a narrow one, a table wider than the page scrolls in its own box.
WIDE_PX, NARROW_PX = 1400, 800
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--remote-debugging-port=0", "--remote-allow-origins=*",
         "--window-size=1280,900"]


@dataclass(frozen=True)
class TableFit:
    """Where one table's last column ends against the space it can be seen in, at one window width."""

    width_px: int
    section: str  # the h2 the table sits under
    last_column: str
    right_px: float  # the right edge of the table's last column
    visible_right_px: float  # the right edge of what the page shows of it without scrolling
    scrollable: bool  # it sits in a box that scrolls sideways and that box fits the window

    @property
    def cut_off(self) -> bool:
        return self.right_px > self.visible_right_px + 0.5

    def __str__(self) -> str:
        return (f"at {self.width_px} px, the table under '{self.section}': its last column '{self.last_column}' ends "
                f"at {self.right_px:.0f} px, {self.right_px - self.visible_right_px:.0f} px past what is shown"
                f"{' (the box scrolls)' if self.scrollable else ' (and nothing scrolls to it)'}")


@dataclass
class PageCheck:
    images: list[dict[str, Any]]
    console_errors: list[str]
    title: str
    text: str
    screenshot: bytes = field(repr=False)  # at the first width
    screenshots: dict[int, bytes] = field(repr=False, default_factory=dict)
    tables: list[TableFit] = field(default_factory=list)

    def unfit_tables(self) -> list[str]:
        """Every table whose last column is cut off at WIDE_PX, or at a narrower width with nothing to scroll to it."""
        return [str(t) for t in self.tables if t.cut_off and (t.width_px >= WIDE_PX or not t.scrollable)]


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


# Every table, the folded ones opened: the right edge of its last column (the furthest last cell of any row) against
# the window and every box around it that clips; and whether a box around it scrolls sideways within the window.
TABLES_JS = """(() => {
  for (const d of document.querySelectorAll('details')) d.open = true;
  const windowRight = document.documentElement.clientWidth;
  let section = (document.querySelector('h1') || {innerText: ''}).innerText;
  const found = [];
  for (const element of document.querySelectorAll('h2, table')) {
    if (element.tagName === 'H2') { section = element.firstChild.textContent.trim(); continue; }
    let right = 0;
    for (const cell of element.querySelectorAll('tr > :last-child')) {
      right = Math.max(right, cell.getBoundingClientRect().right);
    }
    const heads = element.querySelectorAll('thead th');
    let visible = windowRight, scrollable = false;
    for (let box = element.parentElement; box && box !== document.documentElement; box = box.parentElement) {
      const overflow = getComputedStyle(box).overflowX;
      if (overflow === 'visible') continue;
      const rect = box.getBoundingClientRect();
      visible = Math.min(visible, rect.left + box.clientLeft + box.clientWidth);
      if ((overflow === 'auto' || overflow === 'scroll') && rect.right <= windowRight + 0.5) scrollable = true;
    }
    found.push({section, last_column: heads.length ? heads[heads.length - 1].innerText : '', right_px: right,
                visible_right_px: visible, scrollable});
  }
  return JSON.stringify(found);
})()"""

IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({src: i.src.slice(0, 40), complete: i.complete,
  naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})))"""


def check_page(path: Path, widths_px: tuple[int, ...] = (WIDE_PX, NARROW_PX), timeout_s: float = 60) -> PageCheck:
    """Open a local HTML file in headless Chromium; report its images, console errors and text, and at each width its
    tables' fit and a full screenshot (folded sections opened)."""
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
            screenshots, tables = {}, []
            for width in widths_px:
                tools.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                           mobile=False)
                fits = json.loads(tools.call("Runtime.evaluate", expression=TABLES_JS)["result"]["value"])
                tables += [TableFit(width_px=width, **fit) for fit in fits]
                screenshots[width] = _screenshot(tools)
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
                     screenshot=screenshots[widths_px[0]], screenshots=screenshots, tables=tables)


def _screenshot(tools: DevTools) -> bytes:
    metrics = tools.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1})
    return base64.b64decode(shot["data"])


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
