"""A small W3C WebDriver client for headless Chromium, speaking HTTP to Debian's ``chromedriver``.

Selenium is not needed for the handful of commands the dashboard test uses (open a page, find and
click elements, run a script, take a screenshot); the protocol is plain JSON over HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tickercast.processes import stop_group

ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
PACKAGES = ("chromium", "chromium-driver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


class WebDriverError(RuntimeError):
    """The browser or the driver refused a command."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_browser() -> tuple[str, str] | None:
    """Return ``(chromium, chromedriver)`` paths when both are installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def ensure_browser() -> tuple[str, str]:
    """Install Debian's ``chromium`` and ``chromium-driver`` when missing (as root), then locate them.

    Returns:
        The chromium and chromedriver executables.

    Raises:
        RuntimeError: They are missing and cannot be installed here (not root, no apt-get, or the
            installation failed); the message says how to install them.

    """
    found = find_browser()
    if found:
        return found
    hint = "install them with: sudo apt-get install -y " + " ".join(PACKAGES)
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"headless Chromium and chromedriver are missing and there is no apt-get; {hint}")
    if os.geteuid() != 0:
        raise RuntimeError(
            f"headless Chromium and chromedriver are missing and this user is not root; {hint}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # the package lists may be missing or stale: refresh once and retry
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    found = find_browser()
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"apt-get could not install {' '.join(PACKAGES)} ({tail[0]}); {hint}")
    return found


class Browser:
    """One WebDriver session in headless Chromium."""

    def __init__(self, base: str, session_id: str) -> None:
        self._url = f"{base}/session/{session_id}"
        self._http = httpx.Client(base_url=self._url, timeout=60)
        self.session_id = session_id

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=payload if method == "POST" else None)
        body = response.json()
        value = body.get("value")
        if response.status_code >= 400:
            message = value.get("message", "") if isinstance(value, dict) else str(value)
            raise WebDriverError(
                f"{method} {path}: {message.splitlines()[0] if message else response.status_code}"
            )
        return value

    def get(self, url: str) -> None:
        """Open ``url`` and wait for the page's load event."""
        self._call("POST", "/url", {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        """Run a synchronous script in the page (``return ...`` gives its value)."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        """Return the id of the first element matching a CSS selector."""
        return self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT_KEY]

    def click(self, css: str) -> None:
        """Click the first element matching a CSS selector, as a user would."""
        element = self.find(css)
        self._call("POST", f"/element/{element}/click", {})

    def text(self, css: str) -> str:
        """Return the rendered text of the first element matching a CSS selector."""
        return self._call("GET", f"/element/{self.find(css)}/text")

    def set_window(self, width: int, height: int) -> None:
        """Resize the browser window."""
        self._call("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to ``path``."""
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return path

    def logs(self) -> list[dict[str, Any]]:
        """Return (and clear) the browser console's entries."""
        return self._call("POST", "/se/log", {"type": "browser"})

    def wait_for(self, script: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
        """Poll a script until it returns a truthy value; return that value.

        Raises:
            TimeoutError: The script kept returning a falsy value.

        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.execute(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f}s for: {script}")
            time.sleep(interval)

    def quit(self) -> None:
        """End the session (closes the browser)."""
        try:
            self._http.request("DELETE", self._url)
        finally:
            self._http.close()


@contextmanager
def headless_chromium(profile_dir: Path, width: int = 1440, height: int = 1000) -> Iterator[Browser]:
    """Start chromedriver and one headless Chromium session; stop both afterwards.

    Args:
        profile_dir: An empty folder for the browser profile (``--user-data-dir``).
        width: Window width in CSS pixels.
        height: Window height in CSS pixels.

    Yields:
        The browser session.

    """
    chromium, driver = ensure_browser()
    port = free_port()
    log_path = profile_dir.parent / f"{profile_dir.name}-chromedriver.log"
    with log_path.open("w") as log:
        # A session of its own: the browser processes join chromedriver's process group, so the
        # teardown can stop every one of them even if the browser ignores the session's end.
        process = subprocess.Popen(
            [driver, f"--port={port}", "--allowed-ips=127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    browser = None
    try:
        _wait_ready(base, process)
        options = {
            "binary": chromium,
            "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"],
        }
        capabilities = {
            "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
                "goog:loggingPrefs": {"browser": "ALL"},
                "pageLoadStrategy": "normal",
            }
        }
        response = httpx.post(f"{base}/session", json={"capabilities": capabilities}, timeout=120)
        value = response.json().get("value", {})
        if response.status_code >= 400 or "sessionId" not in value:
            raise WebDriverError(f"chromedriver could not start Chromium: {value.get('message', value)}")
        browser = Browser(base, value["sessionId"])
        yield browser
    finally:
        try:
            if browser is not None:
                browser.quit()
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """Stop chromedriver and every browser process it started (its process group)."""
    stop_group(process, ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the browser's own processes leave shortly after
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait_ready(base: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WebDriverError(f"chromedriver exited with code {process.returncode}")
        try:
            if httpx.get(f"{base}/status", timeout=2).json()["value"]["ready"]:
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    raise WebDriverError(f"chromedriver did not become ready within {timeout:.0f}s")
