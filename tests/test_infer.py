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


def test_load_image_round_trip(tmp_path):
    rgba = torch.randint(0, 256, (4, 9, 11), dtype=torch.uint8)
    Image.fromarray(rgba.permute(1, 2, 0).numpy(), mode="RGBA").save(tmp_path / "x.png")
    with pytest.warns(UserWarning, match="alpha"):
        image = load_image(tmp_path / "x.png")
    torch.testing.assert_close(image, rgba[:3].float() / 255)
    with pytest.raises(FileNotFoundError, match="no image"):
        load_image(tmp_path / "missing.png")
