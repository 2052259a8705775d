"""The published live page (``_build/html/book/live.html``, what ``make book`` writes) in
headless Chromium, opened from disk: the nets Chapter 5 trained label every scene of the bank as
PyTorch does, every demo on the page starts, and the page adds no console error to those that
every page of the book has. ``make book`` runs this after building; elsewhere it is skipped
unless a built book is there (``FCN_LIVE_BOOK`` names another build's html folder).
"""

import base64
import gzip
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from _browser import ROOT, SHOTS, browser, call, screenshot
from PIL import Image

HTML = Path(os.environ.get("FCN_LIVE_BOOK", ROOT / "_build" / "html"))
PAGE = HTML / "book" / "live.html"
AGREEMENT = 0.999
DEMOS = {"segment": "fcnLive", "fusion": "fcnFusion", "fields": "fcnFields",
         "upsampling": "fcnUpsampling"}  # fmt: skip

pytestmark = [
    browser,
    pytest.mark.slow,
    pytest.mark.skipif(not PAGE.is_file(), reason=f"no built book: {PAGE} (run make book)"),
]


def _scripted(path: Path) -> dict[str, bytes]:
    found = re.findall(r'^self\.fcnLiveFiles\["([^"]+)"\] = "([^"]*)";$', path.read_text(), re.M)
    return {name: gzip.decompress(base64.b64decode(packed)) for name, packed in found}


def _errors(driver) -> set[str]:
    """The console's errors, without where they were raised (file, line, column)."""
    found = set()
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            found.add(re.sub(r"^\S+ \d+:\d+ ", "", entry["message"]))
    return found


def test_the_published_page_runs_the_chapters_nets(driver):
    driver.get_log("browser")
    driver.get((HTML / "book" / "intro.html").as_uri())  # what every page of the book logs
    every_page = _errors(driver)
    driver.get(PAGE.as_uri())
    demos = call(
        driver,
        """const begin = performance.timeOrigin, found = {};
        for (const [demo, api] of Object.entries(arguments[0])) {
          if (document.querySelector(`[data-demo="${demo}"]`)) {
            await window[api].ready;
            found[demo] = (performance.timeOrigin + performance.now() - begin) / 1000;
          }
        }
        return found;""",
        DEMOS,
    )
    assert {"segment", "fusion"} <= set(demos)
    models = HTML / "_static" / "live" / "models"
    bank = json.loads((models / "bank.json").read_text())
    files = _scripted(models / "bank.js")
    worst = {}
    for k, scene in enumerate(bank["scenes"]):
        result = call(driver, "return await window.fcnLive.run(arguments[0]);", k)
        for name, net in result["nets"].items():
            torch = np.array(Image.open(io.BytesIO(files[scene["labels"][name]]))).ravel()
            share = float(np.mean(np.asarray(net["labels"]) == torch))
            worst[name] = min(worst.get(name, 1.0), share)
    assert all(share >= AGREEMENT for share in worst.values()), worst
    for demo in demos:
        driver.execute_script(f"document.querySelector('[data-demo=\"{demo}\"]').scrollIntoView()")
        screenshot(driver, f"book-{demo}.png")
    assert _errors(driver) <= every_page
    times = driver.execute_script("return window.fcnLive.times")
    report = (
        "published page: "
        + ", ".join(f"{demo} ready in {s:.2f} s" for demo, s in demos.items())
        + "; worst agreement with PyTorch over the bank: "
        + ", ".join(f"{name} {100 * share:.2f}%" for name, share in worst.items())
        + "; later runs at most "
        + ", ".join(f"{name} {max(t[1:]):.0f} ms" for name, t in times.items())
    )
    print(report)
    with open(SHOTS / "times.txt", "a") as f:
        f.write(report + "\n")
    assert max(demos.values()) <= 3.0
