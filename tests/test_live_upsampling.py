"""Chapter 4's explorer (fcnlib/_live_upsampling.py, book/_static/live/upsampling.js): the data
holds what PyTorch and fcnlib compute, and the page's sliders, buttons and clicks show it, from
a local web server and from disk (file://)."""

import base64
import gzip
import json
import math
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _browser import LIVE, browser, call, console_errors, fallback_shown, screenshot, serve
from selenium.webdriver import ActionChains
from torch.testing import assert_close

from fcnlib._live_upsampling import (
    F_STITCH,
    KERNELS,
    STRIDES,
    copy_order,
    deconv_cases,
    grid,
    interior,
    stitch_case,
    write_upsampling_assets,
)
from fcnlib.data import ShapesDataset
from fcnlib.models import fcn
from fcnlib.upsample import bilinear_kernel, shift_and_stitch, stitch_sources, upsample_params

BUDGET = 0.5e6  # bytes: upsampling.js, the page's data
SIZE = 128  # the scene's side


def _scripted(path: Path) -> dict[str, bytes]:
    """The files a script of fcnlib.export.write_files_script holds."""
    found = re.findall(r'^self\.fcnLiveFiles\["([^"]+)"\] = "([^"]*)";$', path.read_text(), re.M)
    return {name: gzip.decompress(base64.b64decode(packed)) for name, packed in found}


@pytest.fixture(scope="module")
def scene() -> torch.Tensor:
    image = ShapesDataset("test", size=SIZE, length=1, seed=0)[0][0]
    return (image * 255).round().to(torch.uint8)  # (3, H, W), what a PNG holds


@pytest.fixture(scope="module")
def net(scored_lab_net):
    return scored_lab_net(8)


@pytest.fixture(scope="module")
def models(tmp_path_factory, net, scene) -> Path:
    folder = tmp_path_factory.mktemp("upsampling") / "models"
    script = write_upsampling_assets(folder, net, scene)
    print(f"upsampling.js: {script.stat().st_size / 1e3:.1f} kB")
    return folder


@pytest.fixture(scope="module")
def data(models) -> dict:
    return json.loads(_scripted(models / "upsampling.js")["upsampling.json"])


# ------------------------------------------------------------------------------ the data


def test_the_assets_are_one_small_script_and_a_figure(models, data):
    assert (models / "upsampling.js").stat().st_size <= BUDGET
    files = _scripted(models / "upsampling.js")
    assert set(files) == {"upsampling.json", "upsampling/scene.png"}
    assert files["upsampling/scene.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert (models / "upsampling-fallback.png").read_bytes()[:4] == b"\x89PNG"
    assert data["format"] == "fcnlib-live-upsampling/1"
    assert data["fcnKernels"] == {str(s): upsample_params(s)[0] for s in STRIDES}


@pytest.mark.parametrize("s", STRIDES)
@pytest.mark.parametrize("k", KERNELS)
def test_the_stored_maps_are_conv_transpose2ds(data, s, k):
    cases = data["deconv"][f"{s},{k}"]
    n = grid(s)
    ones = torch.ones(1, 1, n, n, dtype=torch.float64)
    kernels = {"ones": torch.ones(k, k, dtype=torch.float64)}
    if (k + 1) // 2 == s:
        kernels["bilinear"] = bilinear_kernel(k, dtype=torch.float64)
    assert set(cases) == set(kernels)
    for kind, kernel in kernels.items():
        case = cases[kind]
        want = F.conv_transpose2d(ones, kernel[None, None], stride=s)[0, 0]
        assert_close(torch.tensor(case["output"], dtype=torch.float64), want, rtol=0, atol=1e-6)
        # a footprint is where a one-hot input's copy of the kernel lands
        for a, b in [(0, 0), (n // 2, n - 1), (n - 1, 1)]:
            hot = torch.zeros(1, 1, n, n, dtype=torch.float64)
            hot[..., a, b] = 1
            spread = F.conv_transpose2d(hot, kernel[None, None], stride=s)[0, 0]
            top, left, bottom, right = case["footprints"][a * n + b]
            assert (top, left, bottom, right) == (s * a, s * b, s * a + k - 1, s * b + k - 1)
            assert spread[top : bottom + 1, left : right + 1].count_nonzero() == k * k
            assert spread.count_nonzero() == k * k


@pytest.mark.parametrize("s", STRIDES)
@pytest.mark.parametrize("k", KERNELS)
def test_the_interior_is_where_a_larger_input_gives_the_same(data, s, k):
    case, n = data["deconv"][f"{s},{k}"]["ones"], grid(s)
    a, b = case["interior"]
    assert (a, b) == interior(n, s, k) and b - a + 1 >= 2 * s  # two periods, at least
    kernel = torch.ones(1, 1, k, k, dtype=torch.float64)
    m = -(-k // s)  # more input rows on each side than any kernel reaches
    large = F.conv_transpose2d(torch.ones(1, 1, n + 2 * m, n + 2 * m), kernel.float(), stride=s)
    large = large[0, 0, s * m : s * m + s * (n - 1) + k, s * m : s * m + s * (n - 1) + k]
    output = torch.tensor(case["output"], dtype=torch.float32)
    assert torch.equal(output[a : b + 1, a : b + 1], large[a : b + 1, a : b + 1])
    assert not torch.equal(output, large) or (a, b) == (0, len(output) - 1)


def test_the_ones_kernel_is_a_checkerboard_exactly_when_k_is_no_multiple_of_s(data):
    for s in STRIDES:
        for k in KERNELS:
            case = data["deconv"][f"{s},{k}"]["ones"]
            assert case["interiorEven"] == (k % s == 0), (s, k)
            a, b = case["interior"]
            inside = torch.tensor(case["output"])[a : b + 1, a : b + 1]
            assert (case["min"], case["max"]) == (inside.min().item(), inside.max().item())
            assert case["min"] == (k // s) ** 2 and case["max"] == (-(-k // s)) ** 2


def test_the_bilinear_kernel_gives_an_even_interior(data):
    found = 0
    for s in STRIDES:
        for k in (2 * s - 1, 2 * s):
            case = data["deconv"][f"{s},{k}"]["bilinear"]
            assert case["interiorEven"] and case["min"] == pytest.approx(1, abs=1e-6), (s, k)
            assert_close(torch.tensor(case["kernel"]), bilinear_kernel(k), rtol=0, atol=1e-6)
            found += k == upsample_params(s)[0]
    assert found == len(STRIDES)  # FCN's kernel for every stride is among them


def test_the_copies_come_coarse_to_fine_and_each_once():
    order = copy_order(F_STITCH)
    assert sorted(map(tuple, order)) == [(dy, dx) for dy in range(8) for dx in range(8)]
    assert order[:4] == [[0, 0], [4, 4], [0, 4], [4, 0]]  # the first four fill a 4-pixel lattice
    assert copy_order(2) == [[0, 0], [1, 1], [0, 1], [1, 0]] and copy_order(1) == [[0, 0]]
    with pytest.raises(ValueError, match="power of 2"):
        copy_order(6)


def test_the_stored_labels_are_shift_and_stitchs_and_the_nets(data, net, scene):
    st = data["stitch"]
    x = scene[None].float() / 255
    with torch.no_grad():
        stitched = shift_and_stitch(lambda t: net.score_maps(t)["fuse_pool3"], x, 8)
        dense, bilinear = stitched.argmax(1)[0], net(x).argmax(1)[0]
        coarse = net.score_maps(x)["fuse_pool3"].argmax(1)[0]
    assert st["size"] == [SIZE, SIZE] and st["coarseSize"] == [SIZE // 8, SIZE // 8]
    assert st["dense"] == dense.flatten().tolist()
    assert st["bilinear"] == bilinear.flatten().tolist()
    assert st["coarse"] == coarse.flatten().tolist()
    assert st["agree"] == int((dense == bilinear).sum())
    # copy (0, 0) is the plain coarse net: its pixels carry the coarse labels
    assert torch.equal(dense[::8, ::8], coarse)
    sources = stitch_sources(8, (SIZE, SIZE))
    for c, name in enumerate(("dy", "dx", "i", "j")):
        assert st["sources"][name] == sources[..., c].flatten().tolist()
    # pixel (f i + dy, f j + dx) comes from cell (i, j) of copy (dy, dx)
    assert sources[8 * 3 + 5, 8 * 7 + 2].tolist() == [5, 2, 3, 7]


def test_bad_inputs_say_what_was_expected(net, scene, tmp_path):
    with pytest.raises(ValueError, match=r"uint8 RGB tensor \(3, H, W\).*float32"):
        write_upsampling_assets(tmp_path, net, scene.float() / 255)
    with pytest.raises(ValueError, match=r"uint8 RGB tensor \(3, H, W\).*\(1, 128, 128\)"):
        write_upsampling_assets(tmp_path, net, scene[:1])
    with pytest.raises(ValueError, match=r"multiples of 8.*got 100 x 128"):
        write_upsampling_assets(tmp_path, net, scene[:, :100])
    with pytest.raises(ValueError, match=r"output stride 8.*Identity"):
        stitch_case(torch.nn.Identity(), scene)
    with pytest.raises(ValueError, match=r"output stride 8.*stride 32"):
        write_upsampling_assets(tmp_path, fcn("tiny_vgg", n_classes=7, stride=32), scene)
    assert not (tmp_path / "upsampling.js").exists()


def test_the_deconv_cases_cover_every_slider_position():
    cases = deconv_cases()
    assert set(cases) == {f"{s},{k}" for s in STRIDES for k in KERNELS}


# ------------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def site(models) -> Path:
    """A copy of the page, core.js and the data."""
    folder = models.parent
    for file in ("core.js", "upsampling.js", "upsampling.html", "upsampling.css"):
        shutil.copy(LIVE / file, folder)
    return folder


def _open(driver, url: str) -> float:
    """Open the page and wait until it is ready; the seconds that took."""
    console_errors(driver)  # drop what earlier pages logged
    start = time.perf_counter()
    driver.get(url)
    call(driver, "await window.fcnUpsampling.ready;")
    return time.perf_counter() - start


def _move(driver, css: str, value: int) -> None:
    """Set a slider as a reader would: a new value, then the input event."""
    driver.execute_script(
        "const s = document.querySelector(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('input', {bubbles: true}));",
        css,
        str(value),
    )


_PIXELS = """
const c = document.querySelector(arguments[0]);
return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data);
"""


def _pixels(driver, css: str) -> list[int]:
    return driver.execute_script(_PIXELS, css)


def _cell_colour(driver, row: int, col: int) -> list[int]:
    """The colour at the centre of output cell (row, col) of the drawn grid."""
    return driver.execute_script(
        """
        const c = document.querySelector(".fcn-output-grid");
        const side = window.fcnUpsampling.current().deconv.output.length;
        const cell = c.width / side;
        const at = (v) => Math.floor(v * cell + 2);  // clear of the numbers, inside the cell
        return Array.from(c.getContext("2d").getImageData(at(arguments[1]), at(arguments[0]),
                                                           1, 1).data);
        """,
        row,
        col,
    )


def _click(driver, canvas, top: float, left: float) -> None:
    """A real click at (top, left), fractions of the canvas' height and width. WebDriver's
    offsets count from the floored centre of the element's box, which may sit at fractions of
    a pixel: so the offsets are chosen to land on the rounded target."""
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height]",
        canvas,
    )
    x, y, w, h = box
    dx = round(x + left * w) - math.floor(x + w / 2)
    dy = round(y + top * h) - math.floor(y + h / 2)
    ActionChains(driver).move_to_element_with_offset(canvas, dx, dy).click().perform()


@browser
@pytest.mark.slow  # a browser and two page loads: about 10 s on 2 CPU cores
@pytest.mark.parametrize("how", ["server", "file"])
def test_every_control_shows_what_pytorch_computed(how, site, data, driver):
    with serve(site) as url:
        page = f"{url}/upsampling.html" if how == "server" else (site / "upsampling.html").as_uri()
        seconds = _open(driver, page)
        print(f"upsampling.html ({how}): ready {1e3 * seconds:.0f} ms after opening")
        screenshot(driver, f"upsampling-{how}.png")

        # (a) the stride and kernel sliders select Python's map, and the drawing follows
        before = _pixels(driver, ".fcn-output-grid")
        for s, k in [(2, 4), (2, 3), (3, 5), (4, 8), (1, 1)]:
            _move(driver, ".fcn-stride", s)
            _move(driver, ".fcn-kernel", k)
            shown = driver.execute_script("return window.fcnUpsampling.current().deconv")
            case = data["deconv"][f"{s},{k}"]["ones"]
            assert (shown["stride"], shown["kernel"], shown["weights"]) == (s, k, "ones")
            assert shown["output"] == case["output"]
            verdict = driver.find_element("css selector", ".fcn-verdict")
            assert verdict.get_attribute("data-even") == str(k % s == 0).lower()
            assert ("checkerboard" in verdict.text) == (k % s != 0), verdict.text
            assert f"{case['min']:g}" in verdict.text
            if k % s:
                assert f"{case['max']:g}" in verdict.text
            after = _pixels(driver, ".fcn-output-grid")
            assert after != before
            before = after
        # k = 3, s = 2 draws a checkerboard; k = 4, s = 2 an even interior
        driver.execute_script("window.fcnUpsampling.setDeconv({stride: 2, kernel: 3})")
        a = data["deconv"]["2,3"]["ones"]["interior"][0] + 1
        assert _cell_colour(driver, a, a) != _cell_colour(driver, a, a + 1)
        screenshot(driver, f"upsampling-{how}-checkerboard.png")
        driver.execute_script("window.fcnUpsampling.setDeconv({stride: 2, kernel: 4})")
        a = data["deconv"]["2,4"]["ones"]["interior"][0] + 1
        assert _cell_colour(driver, a, a) == _cell_colour(driver, a, a + 1)
        # the bilinear weights, chosen by the button for FCN's kernel: flat inside
        driver.execute_script("window.fcnUpsampling.setDeconv({stride: 3, kernel: 1})")
        bilinear = driver.find_element("css selector", ".fcn-weights-bilinear input")
        assert not bilinear.is_enabled()  # no bilinear kernel of factor 3 has size 1
        driver.find_element("xpath", '//button[contains(., "FCN\'s kernel")]').click()
        shown = driver.execute_script("return window.fcnUpsampling.current().deconv")
        assert (shown["kernel"], shown["weights"]) == (upsample_params(3)[0], "bilinear")
        assert shown["output"] == data["deconv"]["3,5"]["bilinear"]["output"]
        assert (
            shown["interiorEven"]
            and "even" in driver.find_element("css selector", ".fcn-verdict").text
        )
        # pointing at an input cell outlines its footprint and says where it is
        driver.execute_script("window.fcnUpsampling.setDeconv({stride: 2, kernel: 3})")
        before = _pixels(driver, ".fcn-output-grid")
        cell = driver.find_element("css selector", ".fcn-input-grid")
        _click(driver, cell, 1.5 / grid(2), 4.5 / grid(2))  # input cell (1, 4)
        text = driver.find_element("css selector", ".fcn-footprint").text
        top, left, bottom, right = data["deconv"]["2,3"]["ones"]["footprints"][1 * grid(2) + 4]
        assert f"({1}, {4})" in text and f"rows {top}–{bottom}, columns {left}–{right}" in text
        assert _pixels(driver, ".fcn-output-grid") != before

        # (b) the shifts slider fills n / 64 of the pixels, in grey until then
        total = SIZE * SIZE
        grey = (190, 190, 190, 255)
        for n in (1, 4, 17, 64):
            _move(driver, ".fcn-shifts", n)
            filled = driver.execute_script("return window.fcnUpsampling.current().shifts")
            assert filled == {"n": n, "filled": n * total // 64}
            rgba = _pixels(driver, ".fcn-stitched")
            greys = sum(tuple(rgba[p : p + 4]) == grey for p in range(0, len(rgba), 4))
            assert greys == total - n * total // 64
            assert (
                f"{n * total // 64:,} of {total:,}"
                in driver.find_element("css selector", ".fcn-filled").text
            )
        assert call(driver, "return window.fcnUpsampling.setShifts(8)") == {
            "n": 8,
            "filled": total // 8,
        }
        driver.execute_script("document.querySelector('.fcn-stitch').scrollIntoView()")
        screenshot(driver, f"upsampling-{how}-8-copies.png")
        # all 64 copies: the stitched labels drawn are Python's
        call(driver, "return window.fcnUpsampling.setShifts(64)")
        colours = [tuple(c) for c in data["colors"]]
        rgba = _pixels(driver, ".fcn-stitched")
        drawn = [colours.index(tuple(rgba[p : p + 3])) for p in range(0, len(rgba), 4)]
        assert drawn == data["stitch"]["dense"]
        # clicking a pixel says which copy and cell it comes from
        canvas = driver.find_element("css selector", ".fcn-stitched")
        sources = stitch_sources(8, (SIZE, SIZE))
        for y, x in [(37, 90), (0, 0), (127, 64), (64, 127)]:
            _click(driver, canvas, (y + 0.5) / SIZE, (x + 0.5) / SIZE)
            dy, dx, i, j = sources[y, x].tolist()
            text = driver.find_element("css selector", ".fcn-source").text
            assert f"Pixel ({y}, {x})" in text, text
            assert f"(dy, dx) = ({dy}, {dx})" in text and f"(i, j) = ({i}, {j})" in text
            got = call(driver, "return window.fcnUpsampling.pixelSource(...arguments)", y, x)
            assert got == {"dy": dy, "dx": dx, "i": i, "j": j}
        agree = driver.find_element("css selector", ".fcn-agree").text
        assert f"{data['stitch']['agree']:,} of {total:,}" in agree
        driver.execute_script("document.querySelector('.fcn-stitch').scrollIntoView()")
        screenshot(driver, f"upsampling-{how}-clicked.png")
        assert not console_errors(driver)


@browser
@pytest.mark.slow
def test_without_decompression_the_page_shows_the_figure(site, driver):
    url = (site / "upsampling.html").as_uri()
    removed = ("DecompressionStream", "WebAssembly")
    shown = fallback_shown(driver, url, "upsampling", removed)
    screenshot(driver, "upsampling-fallback.png")
    assert shown is not None and shown["width"] > 0
    assert "DecompressionStream" in shown["text"]
