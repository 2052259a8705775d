"""Inference on images of any size and mode."""

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
    Image.fromarray(torch.rand(4, 5).numpy() * 7).save(tmp_path / "f.tiff")  # mode "F"
    with pytest.raises(ValueError, match=r"f\.tiff.*range is unknown.*8- or 16-bit"):
        load_image(tmp_path / "f.tiff")
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
