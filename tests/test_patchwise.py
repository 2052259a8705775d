"""Patchwise segmentation: windows, sampling and stitching."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.patchwise import (
    classify_pixels,
    patch_windows,
    predict_patchwise,
    sample_patches,
    sliding_window_scores,
)


@pytest.mark.parametrize("size", [1, 4, 5, 8])
def test_windows_are_centred_zero_padded_patches(size):
    images = torch.rand(2, 3, 7, 9)
    windows = patch_windows(images, size=size)
    assert windows.shape == (2, 3, 7, 9, size, size)
    before = size // 2
    padded = F.pad(images, (before, size - before - 1, before, size - before - 1))
    for n, y, x in [(0, 0, 0), (1, 3, 4), (0, 6, 8), (1, 6, 0)]:
        expected = padded[n, :, y : y + size, x : x + size]
        torch.testing.assert_close(windows[n, :, y, x], expected, rtol=0, atol=0)
    # the centre element of each window is the pixel itself
    torch.testing.assert_close(windows[..., before, before], images, rtol=0, atol=0)


class CentreReader(nn.Module):
    """A 'classifier' that answers with the class written into the centre pixel's red channel."""

    def __init__(self, size, n_classes):
        super().__init__()
        self.c, self.n = size // 2, n_classes

    def forward(self, patches):
        cls = patches[:, 0, self.c, self.c].round().long()
        return F.one_hot(cls, self.n).float()


@pytest.mark.parametrize("size", [3, 6])
def test_stitching_reproduces_centre_labels(size):
    labels = torch.randint(0, 5, (2, 11, 13))
    images = torch.stack([labels.float()] * 3, dim=1)
    pred = predict_patchwise(CentreReader(size, 5), images, size=size, chunk=17)
    assert pred.dtype == torch.int64
    assert torch.equal(pred, labels)


def test_classify_pixels_at_chosen_positions():
    labels = torch.randint(0, 4, (3, 8, 8))
    images = torch.stack([labels.float()] * 3, dim=1)
    index = (torch.tensor([0, 2, 1]), torch.tensor([0, 7, 3]), torch.tensor([5, 1, 3]))
    pred = classify_pixels(CentreReader(5, 4), images, index, size=5)
    assert torch.equal(pred, labels[index])


def test_sampled_targets_are_centre_labels_and_skip_void():
    labels = torch.randint(0, 3, (4, 10, 10))
    labels[:, :5] = 255
    images = torch.stack([labels.float()] * 3, dim=1)
    g = torch.Generator().manual_seed(0)
    patches, targets = sample_patches(images, labels, 500, size=5, generator=g)
    assert patches.shape == (500, 3, 5, 5)
    assert (targets != 255).all()
    assert torch.equal(patches[:, 0, 2, 2].long(), targets)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        sample_patches(images, labels, 5, size=5, generator=g, ignore_index=255.0)


def test_object_weight_shifts_sampling():
    labels = torch.zeros(1, 20, 20, dtype=torch.int64)
    labels[0, :2] = 1  # 10% object pixels
    images = torch.rand(1, 3, 20, 20)
    g = torch.Generator().manual_seed(0)
    _, plain = sample_patches(images, labels, 4000, size=3, generator=g)
    _, weighted = sample_patches(images, labels, 4000, size=3, object_weight=9.0, generator=g)
    assert 0.07 < plain.float().mean() < 0.13
    assert 0.45 < weighted.float().mean() < 0.55  # 9 * 40 object vs 360 background pixels


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        patch_windows(torch.rand(3, 8, 8), size=3)
    with pytest.raises(ValueError, match="do not match"):
        sample_patches(torch.rand(1, 3, 8, 8), torch.zeros(1, 8, 9, dtype=torch.long), 3, size=3)
    with pytest.raises(ValueError, match="no pixel can be sampled"):
        sample_patches(torch.rand(1, 3, 4, 4), torch.full((1, 4, 4), 255), 3, size=3)


def test_sliding_window_equals_the_convolutionalized_classifier():
    # With unpadded convolutions a crop's features do not depend on what lies outside it, so
    # classifying every window equals one dense pass of the convolutionalized net, exactly.
    from fcnlib.models import convolutionalize

    class Clf(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU(),
                nn.MaxPool2d(2),
            )  # fmt: skip  # 20 -> 18 -> 9 -> 7 -> 3
            self.classifier = nn.Sequential(nn.Linear(8 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, 5))

        def forward(self, x):
            return self.classifier(self.features(x).flatten(1))

    torch.manual_seed(0)
    clf = Clf().double().eval()
    images = torch.rand(2, 3, 52, 44, dtype=torch.float64)
    slid = sliding_window_scores(clf, images, window=20, stride=4)
    dense = convolutionalize(clf).eval()(images)
    assert slid.shape == dense.shape == (2, 5, 9, 7)
    torch.testing.assert_close(slid, dense, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="smaller than"):
        sliding_window_scores(clf, images[..., :10], window=20, stride=4)
