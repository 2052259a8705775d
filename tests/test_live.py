"""The live segmentation and fusion demos (book/_static/live/segment.html): the lab's nets run
in a browser and label the bank's scenes, and the reader's drawings, as PyTorch does, from a
local web server and from disk (file://); every control does what it says.

The browser is headless Chromium (tests/_browser.py); without it the browser tests are skipped,
saying why. Screenshots and the inference times go to ``_build/live-screenshots/``.
"""

import base64
import gzip
import hashlib
import importlib.util
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _browser import (
    LIVE,
    ROOT,
    SHOTS,
    browser,
    call,
    console_errors,
    fallback_shown,
    screenshot,
    serve,
)
from PIL import Image

from fcnlib.export import browser_net, write_live_assets

SCENES = (0, 1, 2, 3)  # run in the page, in this order: the first run of each net is its slowest
AGREEMENT = 0.999  # share of pixels the browser must label as PyTorch does
BUDGET = 15e6  # bytes: what the live pages add to the book's static files, scene bank included
PAGE = ("core.js", "segment.js", "fusion.js", "live.css", "segment.html")


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


def test_the_pages_and_their_runtime_leave_room_for_the_bank():
    files = [f for f in LIVE.rglob("*") if f.is_file() and "models" not in f.parts]
    assert sum(f.stat().st_size for f in files) <= BUDGET - 9e6  # the book's bank: < 9 MB


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


@pytest.fixture(scope="module")
def site(tmp_path_factory, scored_lab_net) -> tuple[Path, dict]:
    """A copy of the page and its runtime, with a scene bank of three nets in models/; and the
    browser copies of the nets (what the page runs)."""
    folder = tmp_path_factory.mktemp("live")
    for file in PAGE:
        shutil.copy(LIVE / file, folder)
    shutil.copytree(LIVE / "ort", folder / "ort")
    nets = {f"FCN-{s}s": scored_lab_net(s) for s in (32, 16, 8)}
    write_live_assets(folder / "models", nets, scenes=max(SCENES) + 1, seed=0)
    return folder, {name: browser_net(net) for name, net in nets.items()}


@pytest.fixture(scope="module")
def url(site, request):
    """The page's address, from a local server and from disk."""
    folder, _ = site
    if request.param == "file":
        yield folder.joinpath("segment.html").as_uri()
    else:
        with serve(folder) as base:
            yield base + "/segment.html"


def _files(site) -> dict[str, bytes]:
    return _scripted(site[0] / "models" / "bank.js")


def _png(files, name) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(files[name]))).ravel()


def _open(driver, url: str) -> tuple[dict, float]:
    """Open the page; its nets and scenes, and the seconds until both demos were ready."""
    console_errors(driver)  # drop what earlier pages logged
    driver.get(url)
    ready = call(
        driver,
        """const begin = performance.timeOrigin;
        await window.fcnLive.ready; await window.fcnFusion.ready;
        return {nets: window.fcnLive.nets, scenes: window.fcnLive.scenes,
                seconds: (performance.timeOrigin + performance.now() - begin) / 1000};""",
    )
    return ready, ready.pop("seconds")


def _labels_of(net, rgba: list[int], size) -> np.ndarray:
    """PyTorch's labels for the page's image (RGBA bytes, row by row)."""
    h, w = size
    image = torch.tensor(rgba, dtype=torch.uint8).view(h, w, 4)[..., :3]
    with torch.no_grad():
        return net(image.permute(2, 0, 1)[None].float().div(255)).argmax(1).ravel().numpy()


@browser
@pytest.mark.slow  # a browser, a scene bank, two page loads: about 20 s on 2 CPU cores
@pytest.mark.parametrize("url", ["server", "file"], indirect=True)
def test_the_page_labels_the_scenes_as_pytorch(url, site, driver):
    ready, seconds = _open(driver, url)
    bank = json.loads((site[0] / "models" / "bank.json").read_text())
    files = _files(site)
    assert ready == {"nets": [n["name"] for n in bank["nets"]], "scenes": len(bank["scenes"])}
    for k in SCENES:
        result = call(driver, "return await window.fcnLive.run(arguments[0]);", k)
        scene = bank["scenes"][k]
        assert result["size"] == bank["size"]
        assert np.array_equal(result["truth"], _png(files, scene["truth"]))  # PNGs read exactly
        for name, net in result["nets"].items():
            torch_labels = _png(files, scene["labels"][name])
            agreement = float(np.mean(np.asarray(net["labels"]) == torch_labels))
            assert agreement >= AGREEMENT, (name, k, agreement)
            assert net["same"] == pytest.approx(agreement)  # what the page shows
    assert not console_errors(driver)
    call(driver, "await window.fcnLive.show(1);")
    how = "file" if url.startswith("file:") else "server"
    screenshot(driver, f"segment-{how}.png")
    times = driver.execute_script("return window.fcnLive.times")  # the page's own runs first
    report = "; ".join(
        f"{name} first {times[name][0]:.1f} ms, later ones at most {max(times[name][1:]):.1f} ms"
        for name in ready["nets"]
    )
    print(f"Chromium ({how}): page ready in {seconds:.2f} s; {report}")
    with open(SHOTS / "times.txt", "a") as f:
        f.write(f"{how}: ready {seconds:.2f} s; {report}\n")
    assert seconds <= 3.0 and all(max(times[n][1:]) < 200 for n in ready["nets"])


@browser
@pytest.mark.slow
@pytest.mark.parametrize("url", ["file"], indirect=True)
def test_every_control_does_what_it_says(url, site, driver):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(driver, url)
    demo = driver.find_element(By.CSS_SELECTOR, '[data-demo="segment"]')
    button = {b.text: b for b in demo.find_elements(By.TAG_NAME, "button")}
    current = "return window.fcnLive.current();"
    assert driver.execute_script(current) == {"scene": 0, "shapes": 0}
    button["Another scene"].click()
    call(driver, "await window.fcnFusion.ready;")
    assert _wait(driver, current) == {"scene": 1, "shapes": 0}
    caption = demo.find_element(By.CSS_SELECTOR, "figure figcaption").text
    assert caption.startswith("scene 2 of")

    # a drag on the scene draws the chosen shape where it started, as big as it was long
    Select(demo.find_element(By.TAG_NAME, "select")).select_by_visible_text("disc")
    canvas = demo.find_element(By.CSS_SELECTOR, "canvas.fcn-drawable")
    before = driver.execute_script("return window.fcnLive.image().rgb")
    scale = canvas.size["width"] / 128  # the scene's pixels as shown
    centre = (-canvas.size["width"] / 2 + 40 * scale, -canvas.size["height"] / 2 + 50 * scale)
    chain = ActionChains(driver).move_to_element_with_offset(canvas, *centre).click_and_hold()
    chain.move_by_offset(20 * scale, 0).release().perform()
    assert _wait(driver, current) == {"scene": 1, "shapes": 1}
    image = driver.execute_script("return window.fcnLive.image()")
    changed = np.any(np.asarray(image["rgb"]) != np.asarray(before), axis=0)
    assert changed
    # PyTorch agrees with the browser on the drawing, and the truth has the disc
    drawn = call(
        driver,
        "return await window.fcnLive.stamp(arguments[0]);",
        {"shape": "bar", "y": 100, "x": 90, "r": 18, "angle": 0.5},
    )
    image = driver.execute_script("return window.fcnLive.image()")
    truth = np.asarray(drawn["truth"]).reshape(128, 128)
    assert truth[50, 40] == 1 and truth[50, 40 + 10] == 1  # disc: class 1, inside the radius
    assert truth[100, 90] == 6 and (truth == 255).any()  # bar: class 6; its edges void
    for name, net in drawn["nets"].items():
        torch_labels = _labels_of(site[1][name], image["rgb"], image["size"])
        assert np.mean(np.asarray(net["labels"]) == torch_labels) >= AGREEMENT, name
        assert net["same"] is None  # the table says "–": PyTorch never saw the drawing
    screenshot(driver, "segment-drawn.png")
    button["Remove my shapes"].click()
    assert _wait(driver, current) == {"scene": 1, "shapes": 0}
    assert driver.execute_script("return window.fcnLive.image().rgb") == before

    # fusion: the steps follow the scene shown, each map the net's own, the buttons step
    fusion = driver.find_element(By.CSS_SELECTOR, '[data-demo="fusion"]')
    steps = {b.text: b for b in fusion.find_elements(By.TAG_NAME, "button")}
    net8 = site[1]["FCN-8s"]
    image = driver.execute_script("return window.fcnLive.image()")
    rgb = torch.tensor(image["rgb"], dtype=torch.uint8).view(128, 128, 4)[..., :3]
    with torch.no_grad():
        maps = net8.score_maps(rgb.permute(2, 0, 1)[None].float().div(255))
    seen = []
    for n in range(4):
        shown = call(driver, "return await window.fcnFusion.step(arguments[0]);", n)
        for name, got in shown["maps"].items():
            expected = maps["score" if name == "logits" else name].argmax(1).ravel().numpy()
            assert np.mean(np.asarray(got["labels"]) == expected) >= AGREEMENT, name
        seen.append(sorted(shown["maps"]))
        if n in (1, 2):
            assert 0 <= shown["changed"] <= 1
    assert seen[0] == ["score_fr"] and seen[3] == ["logits"]
    assert seen[2] == ["fuse_pool3", "score_pool3", "upscore_pool4"]
    call(driver, "await window.fcnFusion.step(0);")
    steps["Next step ▶"].click()
    title = fusion.find_element(By.CSS_SELECTOR, ".fcn-status").text
    assert title.startswith("Step 2 of 4: fuse_pool4")
    assert steps["◀ Previous step"].is_enabled()
    driver.execute_script("arguments[0].scrollIntoView()", fusion)
    screenshot(driver, "fusion-step2.png")
    assert not console_errors(driver)


def _wait(driver, script: str, timeout: float = 30.0):
    """``script``'s value once it stops changing (the page's runs are asynchronous)."""
    import time

    end, last = time.monotonic() + timeout, None
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value == last:
            return value
        last = value
        time.sleep(0.5)
    return last


@browser
@pytest.mark.slow
def test_without_webassembly_the_page_shows_the_figure(site, driver):
    url = site[0].joinpath("segment.html").as_uri()
    shown = fallback_shown(driver, url, "segment", ("WebAssembly",))
    assert shown is not None and shown["width"] > 0
    assert "WebAssembly" in shown["text"]
    fusion = driver.execute_script(
        "const img = document.querySelector('[data-demo=\"fusion\"] .fcn-fallback img');"
        "return img && [img.naturalWidth, img.getAttribute('src')];"
    )
    assert fusion[0] > 0 and fusion[1].endswith("models/fusion-fallback.png")
    screenshot(driver, "segment-fallback.png")
