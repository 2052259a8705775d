"""Chapter 3's receptive-field explorer: fcnlib._live_fields writes, for a lab FCN and a scene,
each layer's analytic fields and each unit's input gradient; book/_static/live/fields.js draws
them in a browser, from a local web server and from disk (file://).

The browser tests use headless Chromium (tests/_browser.py) and are skipped without it;
screenshots go to ``_build/live-screenshots/``.
"""

import base64
import gzip
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _browser import LIVE, browser, call, console_errors, fallback_shown, screenshot, serve
from PIL import Image
from torch import nn

from fcnlib import _live_fields
from fcnlib._live_fields import FIELDS_FORMAT, MASS, write_fields_assets
from fcnlib.data import ShapesDataset
from fcnlib.receptive_field import receptive_field

SIZE = 128  # the scene's side, as in the book
BUDGET = 1.5e6  # bytes of fields.js for a 128 x 128 scene
READY = 3.0  # seconds from opening the page to the first unit drawn, at most
LAYERS = ["pool1", "pool2", "pool3", "pool4", "pool5", "fc7"]


def _scene(size: int = SIZE) -> torch.Tensor:
    """A lab scene as a PNG holds it: uint8 (3, H, W)."""
    image = ShapesDataset("test", size=size, length=1, seed=0)[0][0]
    return (image * 255).round().to(torch.uint8)


def _scripted(path: Path) -> dict[str, bytes]:
    """The files a script of fcnlib.export.write_files_script holds."""
    found = re.findall(r'^self\.fcnLiveFiles\["([^"]+)"\] = "([^"]*)";$', path.read_text(), re.M)
    return {name: gzip.decompress(base64.b64decode(packed)) for name, packed in found}


def _leaves(net) -> list[tuple[str, nn.Module]]:
    chain = nn.Sequential(*net.features.values(), net.fc)  # Chapter 3's up_to_fc7
    return [(n, m) for n, m in chain.named_modules() if next(m.children(), None) is None]


@pytest.fixture(scope="module")
def written(tmp_path_factory, scored_lab_net):
    """The explorer's data for the stride-8 lab net on a 128 x 128 scene, read back."""
    net, image = scored_lab_net(8), _scene()
    folder = tmp_path_factory.mktemp("fields")
    begin = time.perf_counter()
    path = write_fields_assets(folder, net, image)
    seconds = time.perf_counter() - begin
    files = _scripted(path)
    fields = json.loads(files["fields.json"])
    atlases = {
        layer["name"]: np.array(Image.open(io.BytesIO(files[layer["atlas"]])))
        for layer in fields["layers"]
    }
    info = {"net": net, "image": image, "path": path, "seconds": seconds, "files": files}
    return info, (fields, atlases)


def _box(layer: dict, i: int, j: int) -> tuple[int, int, int, int]:
    """The unclipped analytic box of unit (i, j): first and last rows and columns."""
    top = layer["offset"] + i * layer["stride"] - (layer["size"] - 1) / 2
    left = layer["offset"] + j * layer["stride"] - (layer["size"] - 1) / 2
    assert top == int(top) and left == int(left)
    size = int(layer["size"])
    return int(top), int(left), int(top) + size - 1, int(left) + size - 1


def _clipped(box, h: int, w: int) -> list[int]:
    return [max(box[0], 0), max(box[1], 0), min(box[2], h - 1), min(box[3], w - 1)]


def _tile(atlases, layer: dict, i: int, j: int) -> np.ndarray:
    size = layer["tile"]
    return atlases[layer["name"]][i * size : (i + 1) * size, j * size : (j + 1) * size]


def test_the_script_fits_the_budget_and_is_written_quickly(written):
    info, _ = written
    size = info["path"].stat().st_size
    print(f"fields.js: {size / 1e6:.2f} MB for a {SIZE} x {SIZE} scene, {info['seconds']:.1f} s")
    assert size <= BUDGET
    assert info["seconds"] < 30  # a few seconds on one core; generous for a busy machine
    assert set(info["files"]) == {"fields.json", "fields-scene.png"} | {
        f"fields-{name}.png" for name in LAYERS
    }
    scene = np.array(Image.open(io.BytesIO(info["files"]["fields-scene.png"])))
    assert np.array_equal(scene, info["image"].permute(1, 2, 0).numpy())
    fallback = Image.open(info["path"].parent / "fields-fallback.png")
    assert fallback.width > 2 * SIZE and fallback.height > SIZE


def test_the_geometry_is_receptive_fields(written):
    info, (fields, atlases) = written
    net = info["net"]
    assert fields["format"] == FIELDS_FORMAT and fields["size"] == [SIZE, SIZE]
    assert fields["mass"] == MASS and fields["inputs"] == "the scene"
    assert [layer["name"] for layer in fields["layers"]] == LAYERS
    chain = nn.Sequential(*net.features.values(), net.fc)
    for axis in (-2, -1):
        rf = {r.name: r for r in receptive_field(chain, axis=axis)}
        for layer in fields["layers"]:
            r = rf[layer["module"]]
            assert (layer["kind"], layer["size"], layer["stride"], layer["offset"]) == (
                r.kind,
                r.size,
                r.stride,
                r.offset,
            )
    pools = [n for n, m in _leaves(net) if isinstance(m, nn.MaxPool2d)]
    assert [layer["module"] for layer in fields["layers"][:5]] == pools
    last_conv = [n for n, m in _leaves(net) if isinstance(m, nn.Conv2d)][-1]
    assert fields["layers"][-1]["module"] == last_conv and fields["layers"][-1]["kind"] == "conv"
    for layer in fields["layers"]:
        rows, cols = layer["grid"]
        assert rows == cols == -(-SIZE // int(layer["stride"]))  # ceil_mode pools
        assert atlases[layer["name"]].shape == (rows * layer["tile"], cols * layer["tile"])
        assert layer["tile"] == layer["size"] and len(layer["mass"]) == rows * cols


def _gradient(net, image: torch.Tensor, layer: dict, i: int, j: int) -> torch.Tensor:
    """|d unit (i, j) / d image|, RGB summed (H, W): the unit alone, with autograd."""
    leaves = _leaves(net)
    names = [n for n, _ in leaves]
    end = names.index(layer["module"])
    if layer["name"].startswith("fc"):
        end += 1  # read after its ReLU
        assert isinstance(leaves[end][1], nn.ReLU)
    prefix = nn.Sequential(*[m for _, m in leaves[: end + 1]]).eval()
    x = (image.float()[None] / 255).requires_grad_()
    out = prefix(net.normalize(x))
    (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x)
    return grad.abs().sum(1)[0]


@pytest.mark.parametrize("name", LAYERS)
def test_the_stored_maps_are_the_units_gradients(written, name):
    info, (fields, atlases) = written
    layer = next(entry for entry in fields["layers"] if entry["name"] == name)
    rows, cols = layer["grid"]
    for i, j in {(0, 0), (rows // 2, cols // 3), (rows - 1, cols - 1), (1 % rows, cols - 1)}:
        grad = _gradient(info["net"], info["image"], layer, i, j)
        box = _box(layer, i, j)
        top, left, bottom, right = _clipped(box, SIZE, SIZE)
        inside = torch.zeros_like(grad, dtype=torch.bool)
        inside[top : bottom + 1, left : right + 1] = True
        assert (grad[~inside] == 0).all(), (name, i, j)  # none outside the analytic box
        crop = grad[top : bottom + 1, left : right + 1]
        expected = (crop / crop.max() * 255).numpy()
        tile = _tile(atlases, layer, i, j).astype(float)
        stored = tile[top - box[0] : bottom - box[0] + 1, left - box[1] : right - box[1] + 1]
        np.testing.assert_allclose(stored, expected, atol=0.5 + 1e-3)  # 8-bit rounding
        assert tile.sum() == stored.sum()  # the box beyond the image is zero
        values = np.sort(crop.double().flatten().numpy())[::-1]
        kept = np.searchsorted(np.cumsum(values), MASS * values.sum()) + 1
        assert layer["mass"][i * cols + j] == pytest.approx(kept / crop.numel(), abs=2e-3)


def test_every_tile_is_zero_where_its_box_leaves_the_image(written):
    _, (fields, atlases) = written
    for layer in fields["layers"]:
        rows, cols = layer["grid"]
        for i in range(rows):
            for j in range(cols):
                box = _box(layer, i, j)
                top, left, bottom, right = _clipped(box, SIZE, SIZE)
                tile = _tile(atlases, layer, i, j).astype(int)
                inner = tile[top - box[0] : bottom - box[0] + 1, left - box[1] : right - box[1] + 1]
                assert tile.sum() == inner.sum() and inner.max() == 255, (layer["name"], i, j)
        assert layer["empty"] == 0


def test_a_gradient_outside_the_analytic_box_raises(tmp_path, monkeypatch, scored_lab_net):
    def too_small(chain, *, axis=-1):  # every field 2 pixels short: the gradient leaks out
        return [
            type(r)(r.name, r.kind, max(r.size - 2, 1), r.stride, r.offset)
            for r in receptive_field(chain, axis=axis)
        ]

    monkeypatch.setattr(_live_fields, "receptive_field", too_small)
    with pytest.raises(RuntimeError, match="outside its analytic field"):
        write_fields_assets(tmp_path, scored_lab_net(8), _scene(32))
    assert not (tmp_path / "fields.js").exists()


def test_noise_inputs_are_said(tmp_path, scored_lab_net):
    path = write_fields_assets(tmp_path, scored_lab_net(8), _scene(32), noise=2, seed=1)
    fields = json.loads(_scripted(path)["fields.json"])
    assert fields["inputs"] == "the scene and 2 seeded Gaussian noise images"


@pytest.mark.parametrize(
    "image, match",
    [
        (torch.zeros(3, 32, 32), r"uint8 tensor \(3, H, W\).*torch\.float32"),
        (torch.zeros(32, 32, dtype=torch.uint8), r"uint8 tensor \(3, H, W\)"),
        (torch.zeros(1, 32, 32, dtype=torch.uint8), r"\(3, H, W\).*\(1, 32, 32\)"),
        (np.zeros((3, 32, 32), np.uint8), r"got ndarray"),
    ],
)
def test_a_bad_image_says_what_is_expected(tmp_path, scored_lab_net, image, match):
    with pytest.raises(ValueError, match=match):
        write_fields_assets(tmp_path, scored_lab_net(8), image)


def test_a_net_without_features_or_fc_says_what_is_expected(tmp_path):
    with pytest.raises(ValueError, match=r"`features` dict.*`fc` head.*got Sequential"):
        write_fields_assets(tmp_path, nn.Sequential(nn.Conv2d(3, 4, 3)), _scene(32))


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory, scored_lab_net) -> Path:
    """The page, core.js and the explorer's data for the stride-8 lab net in models/."""
    folder = tmp_path_factory.mktemp("fields-site")
    for file in ("core.js", "fields.js", "fields.html", "fields.css"):
        shutil.copy(LIVE / file, folder)
    write_fields_assets(folder / "models", scored_lab_net(8), _scene())
    return folder


def _site_fields(site: Path) -> tuple[dict, dict]:
    files = _scripted(site / "models" / "fields.js")
    fields = json.loads(files["fields.json"])
    atlases = {
        layer["name"]: np.array(Image.open(io.BytesIO(files[layer["atlas"]])))
        for layer in fields["layers"]
    }
    return fields, atlases


_PIXELS = """
const view = document.querySelector('[data-demo="fields"] canvas');
const data = view.getContext("2d").getImageData(0, 0, view.width, view.height).data;
let hash = 0;
for (let k = 0; k < data.length; k += 7) hash = (hash * 31 + data[k] * (k % 251 + 1)) % 1000000007;
return hash;
"""


def _expected(layer: dict, i: int, j: int) -> dict:
    centre = [layer["offset"] + i * layer["stride"], layer["offset"] + j * layer["stride"]]
    return {"unit": [i, j], "box": _clipped(_box(layer, i, j), SIZE, SIZE), "centre": centre}


def _nearest(layer: dict, v: float, n: int) -> int:
    return min(max(round((v - layer["offset"]) / layer["stride"]), 0), n - 1)


@browser
@pytest.mark.slow  # a browser and two page loads: about 10 s on 2 CPU cores
@pytest.mark.parametrize("how", ["server", "file"])
def test_every_control_of_the_explorer(how, site, driver):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    fields, atlases = _site_fields(site)
    layers = {layer["name"]: layer for layer in fields["layers"]}
    console_errors(driver)  # drop what earlier pages logged
    with serve(site) as url:
        begin = time.perf_counter()
        driver.get(f"{url}/fields.html" if how == "server" else (site / "fields.html").as_uri())
        assert (
            call(driver, "await window.fcnFields.ready; return window.fcnFields.layers;") == LAYERS
        )
        seconds = time.perf_counter() - begin
        in_page = call(driver, "return window.fcnFields.readyMs;") / 1000
        print(f"fields page ({how}): ready {seconds:.2f} s after opening ({in_page:.2f} s in page)")
        assert in_page < READY

        # The layer selector: each layer's box is its analytic field (clipped to the image).
        view = driver.find_element(By.CSS_SELECTOR, '[data-demo="fields"] canvas')
        pick = Select(driver.find_element(By.CSS_SELECTOR, '[data-demo="fields"] select'))
        readout = driver.find_element(By.CSS_SELECTOR, '[data-demo="fields"] .fcn-fields-readout')
        drawn = [call(driver, _PIXELS)]  # pool3 first
        for name in LAYERS:
            before = call(driver, "return window.fcnFields.select({});")
            pick.select_by_value(name)
            shown = call(driver, "return window.fcnFields.select({});")
            layer = layers[name]
            assert shown["layer"] == name and shown["size"] == layer["size"]
            assert shown["stride"] == layer["stride"]
            i, j = shown["unit"]  # the unit nearest the previous one's centre
            assert [i, j] == [
                _nearest(layer, c, n) for c, n in zip(before["centre"], layer["grid"], strict=True)
            ]
            assert {k: shown[k] for k in ("unit", "box", "centre")} == _expected(layer, i, j)
            box = shown["box"]
            assert shown["clipped"] == (box[2] - box[0] + 1 < layer["size"])
            assert f"field {layer['size']:g} × {layer['size']:g} px" in readout.text
            assert shown["erf"]["nonzeroOutsideBox"] == 0
            drawn.append(call(driver, _PIXELS))
            assert drawn[-1] != drawn[-2], name  # each layer draws something else
        assert len(set(drawn)) == len(LAYERS)
        screenshot(driver, f"fields-fc7-{how}.png")

        # Real clicks on the scene, then clickAt: the nearest unit of pool3, its box and centre.
        pick.select_by_value("pool3")
        layer = layers["pool3"]
        zoom = view.size["width"] / SIZE
        for y, x in [(70, 41), (5, 120), (127, 0)]:
            before = call(driver, _PIXELS)
            dx = (x + 0.5) * zoom - view.size["width"] / 2  # offsets from the canvas' centre
            dy = (y + 0.5) * zoom - view.size["height"] / 2
            ActionChains(driver).move_to_element_with_offset(
                view, int(dx), int(dy)
            ).click().perform()
            shown = call(driver, "return window.fcnFields.select({});")
            i, j = _nearest(layer, y, layer["grid"][0]), _nearest(layer, x, layer["grid"][1])
            assert {k: shown[k] for k in ("unit", "box", "centre")} == _expected(layer, i, j)
            assert call(driver, _PIXELS) != before
            assert call(driver, "return window.fcnFields.clickAt(...arguments);", y, x) == shown
        pick.select_by_value("pool4")
        shown = call(driver, "return window.fcnFields.clickAt(40, 56);")
        assert shown["unit"] == [2, 3] and shown["centre"] == [39.5, 55.5]

        # The arrow keys move the unit.
        i, j = shown["unit"]
        view.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_DOWN)
        assert call(driver, "return window.fcnFields.select({});")["unit"] == [i + 1, j + 2]

        # The page's map of a unit is the one Python stored.
        for name, (i, j) in [("pool4", (2, 3)), ("fc7", (0, 3)), ("pool1", (40, 17))]:
            shown = call(driver, "return window.fcnFields.select(arguments[0]);", {"layer": name})
            shown = call(
                driver, "return window.fcnFields.select({i: arguments[0], j: arguments[1]});", i, j
            )
            assert shown["erf"]["sum"] == int(_tile(atlases, layers[name], i, j).astype(int).sum())
            assert shown["erf"]["nonzeroOutsideBox"] == 0
            assert shown["mass"] == layers[name]["mass"][i * layers[name]["grid"][1] + j]
        call(driver, "window.fcnFields.select({layer: 'pool3', i: 8, j: 5});")
        assert not console_errors(driver)
        screenshot(driver, f"fields-{how}.png")


@browser
@pytest.mark.slow
def test_without_decompression_the_page_shows_the_figure(site, driver):
    url = (site / "fields.html").as_uri()
    removed = ("DecompressionStream", "WebAssembly")
    shown = fallback_shown(driver, url, "fields", removed)
    assert shown is not None and shown["width"] > 0
    assert "DecompressionStream" in shown["text"]
    with pytest.raises(AssertionError, match="no DecompressionStream"):
        call(driver, "await window.fcnFields.ready;")
    screenshot(driver, "fields-fallback.png")
