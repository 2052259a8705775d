"""The live page (book/_static/live/): the lab's nets run in a browser and label the bank's
scenes as PyTorch does, from a local web server and from disk (file://).

The browser is headless Chromium driven by Selenium, with Debian's ``/usr/bin/chromium`` and
``/usr/bin/chromedriver`` named explicitly (Selenium then downloads nothing); without them the
browser tests are skipped. Screenshots and the inference times go to
``_build/live-screenshots/``.
"""

import base64
import functools
import gzip
import hashlib
import http.server
import importlib.util
import io
import json
import re
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnlib.export import write_live_assets

ROOT = Path(__file__).resolve().parents[1]
LIVE = ROOT / "book" / "_static" / "live"
SHOTS = ROOT / "_build" / "live-screenshots"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCENES = (0, 1, 2, 3)  # run in the page, in this order: the first run of each net is its slowest
AGREEMENT = 0.999  # share of pixels the browser must label as PyTorch does
BUDGET = 15e6  # bytes: what the page adds to the book's static files, its scene bank aside


def _scripted(path: Path) -> dict[str, bytes]:
    """The files a script of fcnlib.export.write_files_script holds."""
    found = re.findall(r'^self\.fcnLiveFiles\["([^"]+)"\] = "([^"]*)";$', path.read_text(), re.M)
    return {name: gzip.decompress(base64.b64decode(packed)) for name, packed in found}


def test_the_vendored_webassembly_is_the_one_the_readme_names():
    readme = (LIVE / "ort" / "README.md").read_text()
    wasm = _scripted(LIVE / "ort" / "ort-wasm-simd.wasm.js")["ort-wasm-simd.wasm"]
    assert wasm[:4] == b"\0asm"
    assert hashlib.sha256(wasm).hexdigest() in readme
    script = (LIVE / "ort" / "ort.wasm-core.min.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() in readme
    assert b"ONNX Runtime Web v1.18.0" in script[:200] and "onnxruntime-web@1.18.0" in readme


def test_the_page_and_its_runtime_stay_small():
    files = [f for f in LIVE.rglob("*") if f.is_file() and "models" not in f.parts]
    assert sum(f.stat().st_size for f in files) <= BUDGET


def _vendor_ort():
    spec = importlib.util.spec_from_file_location("vendor_ort", ROOT / "book" / "vendor_ort.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package(path: Path, files: dict[str, bytes]) -> Path:
    """An npm package (.tgz) holding ``files`` under package/."""
    with tarfile.open(path, "w:gz") as tgz:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tgz.addfile(info, io.BytesIO(data))
    return path


def test_vendor_ort_writes_the_backend_and_refuses_a_package_without_it(tmp_path):
    vendor = _vendor_ort()
    files = {
        "package.json": b'{"name": "onnxruntime-web", "version": "1.18.9"}',
        "dist/ort.wasm-core.min.js": b"var ort = {};",
        "dist/ort-wasm-simd.wasm": b"\0asm" + bytes(range(256)),
    }
    recorded = vendor.vendor(_package(tmp_path / "ort.tgz", files), tmp_path / "out")
    assert recorded["package"] == "onnxruntime-web@1.18.9"
    assert (tmp_path / "out" / "ort.wasm-core.min.js").read_bytes() == b"var ort = {};"
    wasm = files["dist/ort-wasm-simd.wasm"]
    assert _scripted(tmp_path / "out" / "ort-wasm-simd.wasm.js") == {"ort-wasm-simd.wasm": wasm}
    assert recorded["sha256 ort-wasm-simd.wasm"] == hashlib.sha256(wasm).hexdigest()
    del files["dist/ort-wasm-simd.wasm"]  # as from 1.19 on: only the threaded build
    with pytest.raises(SystemExit, match=r"no package/dist/ort-wasm-simd\.wasm.*1\.18"):
        vendor.vendor(_package(tmp_path / "new.tgz", files), tmp_path / "out2")


def _missing() -> list[str]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install selenium)")
    return missing


browser = pytest.mark.skipif(
    bool(_missing()),
    reason=f"needs headless Chromium: {', '.join(_missing())} not found (Debian: apt-get "
    "install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory, scored_lab_net) -> Path:
    """A copy of the page and its runtime, with a scene bank of three nets in models/."""
    folder = tmp_path_factory.mktemp("live")
    for file in ("segment.html", "segment.js", "segment.css"):
        shutil.copy(LIVE / file, folder)
    shutil.copytree(LIVE / "ort", folder / "ort")
    nets = {f"FCN-{s}s": scored_lab_net(s) for s in (32, 16, 8)}
    write_live_assets(folder / "models", nets, scenes=max(SCENES) + 1, seed=0)
    return folder


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
        httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the test reports, not the server
        pass


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1100,760")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    chrome.set_script_timeout(120)
    yield chrome
    chrome.quit()


_READY = """
const done = arguments[arguments.length - 1];
window.fcnLive.ready.then(() => done({nets: window.fcnLive.nets, scenes: window.fcnLive.scenes}),
                          (error) => done({error: String(error)}));
"""
_RUN = """
const done = arguments[arguments.length - 1];
window.fcnLive.run(arguments[0]).then(done, (error) => done({error: String(error)}));
"""


def _label_png(path: Path) -> np.ndarray:
    return np.array(Image.open(path)).ravel()


def _open(driver, url: str) -> dict:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    ready = driver.execute_async_script(_READY)
    assert "error" not in ready, ready["error"]
    return ready


@browser
@pytest.mark.slow  # a browser, a scene bank, two page loads: about 15 s on 2 CPU cores
@pytest.mark.parametrize("how", ["server", "file"])
def test_the_page_labels_the_scenes_as_pytorch(how, request, site, driver):
    url = (
        request.getfixturevalue("server") + "/segment.html"
        if how == "server"
        else site.joinpath("segment.html").as_uri()
    )
    ready = _open(driver, url)
    bank = json.loads((site / "models" / "bank.json").read_text())
    assert ready == {"nets": [n["name"] for n in bank["nets"]], "scenes": len(bank["scenes"])}
    for k in SCENES:
        result = driver.execute_async_script(_RUN, k)
        assert "error" not in result, result["error"]
        scene = bank["scenes"][k]
        assert result["size"] == bank["size"]
        truth = _label_png(site / "models" / scene["truth"])
        assert np.array_equal(result["truth"], truth)  # the page reads the PNGs exactly
        for name, net in result["nets"].items():
            torch_labels = _label_png(site / "models" / scene["labels"][name])
            agreement = float(np.mean(np.asarray(net["labels"]) == torch_labels))
            assert agreement >= AGREEMENT, (name, k, agreement)
            assert net["same"] == pytest.approx(agreement)  # what the page shows
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.fcnLive.show(1).then(() => done())"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"segment-{how}.png"))
    times = driver.execute_script("return window.fcnLive.times")  # the page's own run first
    assert all(len(times[name]) == len(SCENES) + 2 for name in ready["nets"])
    report = "; ".join(
        f"{name} first {times[name][0]:.1f} ms, then "
        + " / ".join(f"{t:.1f}" for t in times[name][1:])
        for name in ready["nets"]
    )
    print(f"inference in Chromium ({how}): {report}")
    with open(SHOTS / "times.txt", "a") as f:
        f.write(f"{how}: {report}\n")


@browser
@pytest.mark.slow
def test_without_webassembly_the_page_shows_the_figure(site, driver):
    added = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.WebAssembly;"}
    )
    try:
        driver.get(site.joinpath("segment.html").as_uri())
        shown = driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const img = document.querySelector("#fcn-live .fcn-fallback img");
            if (!img) return done(null);
            const report = () => done({width: img.naturalWidth, text: img.parentNode.innerText});
            img.complete ? report() : (img.onload = img.onerror = report);
            """
        )
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", added)
    assert shown is not None and shown["width"] > 0
    assert "WebAssembly" in shown["text"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / "segment-fallback.png"))
