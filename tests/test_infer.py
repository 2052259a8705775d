"""Inference on images of any size and mode."""

import os

import pytest
import torch
from PIL import Image

from fcnlib.infer import load_image, predict, to_rgb
from fcnlib.models import fcn8s


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = fcn8s("tiny_vgg", n_classes=4).eval()
    torch.nn.init.normal_(model.score_fr.weight, std=0.5)
    return model


def test_modes_are_converted():
    grey = torch.randint(0, 256, (1, 5, 6), dtype=torch.uint8)
    rgb = to_rgb(grey)
    assert rgb.shape == (3, 5, 6) and rgb.dtype == torch.float32
    torch.testing.assert_close(rgb[0], grey[0].float() / 255)
    assert to_rgb(torch.rand(5, 6)).shape == (3, 5, 6)
    with pytest.warns(UserWarning, match="alpha"):
        assert to_rgb(torch.rand(4, 5, 6)).shape == (3, 5, 6)
    with pytest.raises(ValueError, match="C in 1, 3, 4"):
        to_rgb(torch.rand(2, 5, 6))


def test_batch_and_list_agree(net):
    images = torch.rand(3, 3, 40, 52)
    batch = predict(net, images, batch_size=2)
    assert batch.shape == (3, 40, 52) and batch.dtype == torch.int64
    listed = predict(net, [*images, torch.rand(3, 17, 9)], batch_size=2)
    assert [tuple(x.shape) for x in listed] == [(40, 52)] * 3 + [(17, 9)]
    for a, b in zip(batch, listed, strict=False):
        assert torch.equal(a, b)


def test_predict_restores_training_mode(net):
    net.train()
    predict(net, torch.rand(1, 3, 32, 32))
    assert net.training
    net.eval()


def test_predict_leaves_a_frozen_batch_norm_frozen(net):
    # fine-tuning with frozen statistics: the net trains, its BatchNorm does not
    model = torch.nn.Sequential(net, torch.nn.BatchNorm2d(4)).train()
    model[1].eval()
    predict(model, torch.rand(1, 3, 32, 32))
    assert model.training and net.training and not model[1].training
    net.eval()


def test_load_image_round_trip(tmp_path):
    rgba = torch.randint(0, 256, (4, 9, 11), dtype=torch.uint8)
    Image.fromarray(rgba.permute(1, 2, 0).numpy(), mode="RGBA").save(tmp_path / "x.png")
    with pytest.warns(UserWarning, match="alpha"):
        image = load_image(tmp_path / "x.png")
    torch.testing.assert_close(image, rgba[:3].float() / 255)
    with pytest.raises(FileNotFoundError, match="no image"):
        load_image(tmp_path / "missing.png")


def _write_png16_grey(path, values):
    """A 16-bit grey PNG, as scanners and medical/depth cameras write them."""
    import numpy as np

    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"


def test_16_bit_grey_images_are_scaled_not_clipped(tmp_path):
    values = [[0, 257, 30000], [40000, 65535, 1000]]
    _write_png16_grey(tmp_path / "g16.png", values)
    image = load_image(tmp_path / "g16.png")
    expected = torch.tensor(values, dtype=torch.float32) / 65535
    assert image.shape == (3, 2, 3) and image.dtype == torch.float32
    torch.testing.assert_close(image, expected.expand(3, -1, -1))  # was clipped to 255/255
    uint16 = torch.tensor(values, dtype=torch.int32).to(torch.uint16)  # decode_image's dtype
    torch.testing.assert_close(to_rgb(uint16), expected.expand(3, -1, -1))


def test_images_of_unknown_range_are_refused(tmp_path):
    from fcnlib.infer import ImageFileError, check_image

    Image.fromarray(torch.rand(4, 5).numpy() * 7).save(tmp_path / "f.tiff")  # mode "F"
    for read in (load_image, check_image):  # the mode is in the header
        with pytest.raises(ImageFileError, match=r"f\.tiff.*range is unknown.*8- or 16-bit"):
            read(tmp_path / "f.tiff")
    with pytest.raises(TypeError, match="uint8, uint16 or float"):
        to_rgb(torch.ones(3, 4, 5, dtype=torch.int32))


def test_label_png_is_a_voc_palette_png(tmp_path):
    import numpy as np

    from fcnlib.data.labels import save_label_png, voc_palette

    label = torch.tensor([[0, 1, 2], [15, 20, 255]])
    save_label_png(label, tmp_path / "l.png")
    png = Image.open(tmp_path / "l.png")
    assert png.mode == "P"
    assert np.array(png).tolist() == label.tolist()  # the class ids themselves
    assert png.getpalette()[: 3 * 256] == voc_palette().flatten().tolist()
    with pytest.raises(ValueError, match="0-255"):
        save_label_png(torch.tensor([[0, 300]]), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"argmax\(1\)"):
        save_label_png(torch.rand(2, 3), tmp_path / "x.png")


# ----------------------------------------------------------------------------- hostile inputs


def test_a_non_finite_pixel_is_refused_before_the_model_runs(net):
    def fail(*args):
        raise AssertionError("the model ran")

    hook = net.register_forward_pre_hook(fail)
    try:
        for bad in (float("nan"), float("inf")):
            image = torch.rand(3, 20, 24)
            image[1, 5, 7] = bad
            with pytest.raises(ValueError, match=r"image 2 has 1 non-finite.*nan_to_num"):
                predict(net, [torch.rand(3, 8, 8), torch.rand(3, 20, 24), image])
            batch = torch.rand(4, 3, 16, 16)
            batch[3, 0, 0, 0] = bad
            with pytest.raises(ValueError, match=r"image 3 has 1 non-finite"):
                predict(net, batch)
    finally:
        hook.remove()


def test_non_finite_logits_are_refused_not_turned_into_labels():
    model = torch.nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        model.weight[2, 0] = float("nan")  # a diverged run's weights
    with pytest.raises(RuntimeError, match=r"logits of images 0, 1 are not finite.*weights"):
        predict(model, torch.rand(2, 3, 8, 8))
    with pytest.raises(RuntimeError, match=r"logits of image 0 are not finite.*weights"):
        predict(model, [torch.rand(3, 8, 8), torch.rand(3, 5, 6)])


def _marked_image(width, height):
    """uint8 RGB (H, W, 3), black with a white top-left corner: shows how an image turned."""
    import numpy as np

    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:10, :10] = 255
    return pixels


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: shown turned 90 degrees clockwise, as phones save portraits
    path = tmp_path / f"portrait{suffix}"
    Image.fromarray(_marked_image(60, 40)).save(path, exif=exif, quality=100)
    image = load_image(path)
    assert image.shape == (3, 60, 40)  # as displayed: 40 wide, 60 high (was (3, 40, 60))
    # the stored top-left corner is shown at the top right
    assert image[:, :10, -10:].mean() > 0.9 and image[:, :10, :10].mean() < 0.1


def _image_file(path, width=20, height=10):
    Image.new("RGB", (width, height), (10, 20, 30)).save(path)
    return path


def test_the_pixel_limit_is_read_from_the_header_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    from fcnlib.infer import DEFAULT_MAX_PIXELS, ImageFileError, check_image

    path = _image_file(tmp_path / "wide.png", 20, 10)
    assert load_image(path, max_pixels=200).shape == (3, 10, 20)
    assert load_image(path, max_pixels=None).shape == load_image(path, max_pixels=0).shape
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    for read in (load_image, check_image):
        with pytest.raises(ImageFileError, match=r"wide\.png is 20x10 = 200 pixels.*limit of 199"):
            read(path, max_pixels=199)
    big = tmp_path / "big.png"
    monkeypatch.undo()
    Image.new("1", (8000, 6000)).save(big)  # 48 megapixels, a few kB on disk
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    assert DEFAULT_MAX_PIXELS < 8000 * 6000
    with pytest.raises(ValueError, match=r"big\.png is 8000x6000 = 48\.0 megapixels.*max_pixels"):
        load_image(big)


def test_pils_decompression_bomb_checks_give_way_to_the_limit(tmp_path, monkeypatch):
    import warnings

    from fcnlib.infer import ImageFileError

    path = _image_file(tmp_path / "bomb.png", 20, 10)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 200 > 150: PIL warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path, max_pixels=None).shape == (3, 10, 20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 90)  # 200 > 2 * 90: PIL refuses
    with pytest.raises(ImageFileError, match=r"bomb\.png.*decompression bomb.*MAX_IMAGE_PIXELS"):
        load_image(path, max_pixels=None)


def _truncated(path):
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p.write_bytes(b""), r"empty \(0 bytes\)"),
        (lambda p: p.write_text("not an image"), "not an image"),
        (_truncated, "damaged or incomplete"),
    ],
    ids=["empty", "text", "truncated"],
)
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_unreadable_files_name_the_file_and_what_to_do(tmp_path, make, why, suffix):
    from fcnlib.infer import ImageFileError, check_image

    path = tmp_path / f"holiday{suffix}"
    make(path)
    with pytest.raises(ImageFileError, match=rf"holiday\{suffix}.*{why}.*(replace|leave it out)"):
        load_image(path)
    if why != "damaged or incomplete":  # a truncated file's header is whole
        with pytest.raises(ImageFileError, match=why):
            check_image(path)


def test_a_folder_or_a_missing_file_is_not_an_image(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no image at .*missing\.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_image(tmp_path)


def test_an_atomic_label_png_never_leaves_half_a_file(tmp_path, monkeypatch):
    from fcnlib.data.labels import save_label_png

    path = tmp_path / "photo_mask.png"
    save_label_png(torch.zeros(3, 4, dtype=torch.long), path)
    before = path.read_bytes()

    def crash(self, fp, *args, **kwargs):  # the disk fills up halfway through
        if isinstance(fp, (str, os.PathLike)):
            fp = open(fp, "wb")  # noqa: SIM115 (closed below, as PIL does)
            fp.write(b"half")
            fp.close()
        else:
            fp.write(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(OSError, match="No space"):
        save_label_png(torch.ones(3, 4, dtype=torch.long), path, atomic=True)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    with pytest.raises(OSError, match="No space"):
        save_label_png(torch.ones(3, 4, dtype=torch.long), path)  # in place: fast, not safe
    assert path.read_bytes() == b"half"
