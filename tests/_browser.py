"""Headless Chromium for the live pages' tests (tests/test_live*.py): Debian's
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` named explicitly, so Selenium downloads
nothing; without them (or the selenium package) the browser tests are skipped, saying what is
missing. The ``driver`` fixture is in the root conftest.py; screenshots and printed times go to
``_build/live-screenshots/``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIVE = ROOT / "book" / "_static" / "live"
SHOTS = ROOT / "_build" / "live-screenshots"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def missing() -> list[str]:
    found = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        found.append("the selenium package (pip install selenium)")
    return found


browser = pytest.mark.skipif(
    bool(missing()),
    reason=f"needs headless Chromium: {', '.join(missing())} not found (Debian: apt-get "
    "install chromium chromium-driver)",
)


def chrome():
    """A headless Chromium, 1100 x 900, keeping the console's messages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1100,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(120)
    return driver


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the test reports, not the server
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """A static web server on ``folder``; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()


def call(driver, script: str, *args):
    """Run ``script``, an async function body that may ``await`` and ``return``, in the page;
    its value, or AssertionError with the page's error."""
    wrapped = (
        "const done = arguments[arguments.length - 1];"
        f"(async (...args) => {{ {script} }})(...Array.from(arguments).slice(0, -1))"
        ".then((value) => done({value}), (error) => done({error: String(error.stack || error)}));"
    )
    out = driver.execute_async_script(wrapped, *args)
    assert "error" not in out, out["error"]
    return out.get("value")


def console_errors(driver) -> list[dict]:
    """The console's errors since the last call (reading the log empties it)."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    driver.save_screenshot(str(path))
    return path


def fallback_shown(driver, url: str, demo: str, removed: tuple[str, ...]) -> dict | None:
    """Open ``url`` in a browser without the globals ``removed`` (``"WebAssembly"``,
    ``"DecompressionStream"``) and return the fallback figure that ``demo``'s container shows
    instead: ``{"width": its natural width, "text": the message with it}``, or None."""
    source = " ".join(f"delete window.{name};" for name in removed)
    added = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})
    try:
        driver.get(url)
        return driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const img = document.querySelector(`[data-demo="${arguments[0]}"] .fcn-fallback img`);
            if (!img) return done(null);
            const report = () => done({width: img.naturalWidth, text: img.parentNode.innerText});
            img.complete ? report() : (img.onload = img.onerror = report);
            """,
            demo,
        )
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", added)
