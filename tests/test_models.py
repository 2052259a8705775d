"""From classifier to FCN: convolutionalization, the skip nets, alignment, staged init."""

import pytest
import torch
from torch import nn

from fcnlib.backbones import build_classifier
from fcnlib.models import FCN, convolutionalize, fcn, fcn8s, fcn16s, fcn32s, init_from


def _randomise_bn(net: nn.Module) -> nn.Module:
    # Non-trivial running statistics, so that eval-mode BN is not the identity.
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net


@pytest.mark.parametrize("name", ["tiny_vgg", "tiny_vgg_wide", "alexnet", "vgg16", "googlenet"])
def test_convolutionalized_net_equals_its_classifier(name):
    torch.manual_seed(0)
    clf = _randomise_bn(build_classifier(name)).eval()
    conv = convolutionalize(clf).eval()
    size = 96 if name.startswith("tiny") else 224
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        logits, heat = clf(x), conv(x)
    assert heat.shape == (2, logits.shape[1], 1, 1)
    torch.testing.assert_close(heat.flatten(1), logits, rtol=1e-4, atol=1e-4)
    # The classifier is left untouched (its layers were copied, not moved).
    assert all(
        not isinstance(m, nn.Conv2d) or m.kernel_size != (3, 3) or m.padding != (100, 100)
        for m in clf.modules()
    )


@pytest.mark.parametrize("size", [96, 128, 160, 250])
def test_bigger_inputs_give_heatmaps_of_predicted_size(size):
    conv = convolutionalize(build_classifier("tiny_vgg")).eval()
    with torch.no_grad():
        out = conv(torch.rand(1, 3, size, size))
    # five 2x2 pools (floor) then a 3x3 fc6 without padding
    side = size // 32 - 3 + 1
    assert out.shape == (1, 6, side, side)


def test_convolutionalize_rejects_what_it_cannot_read():
    with pytest.raises(TypeError, match="features"):
        convolutionalize(nn.Sequential(nn.Linear(3, 2)))


@pytest.mark.parametrize("builder", [fcn32s, fcn16s, fcn8s])
@pytest.mark.parametrize("align", ["same", "caffe"])
@pytest.mark.parametrize("hw", [(1, 1), (7, 5), (31, 33), (64, 64), (100, 37)])
def test_output_matches_input_size(builder, align, hw):
    net = builder("tiny_vgg", n_classes=5, align=align).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *hw))
    assert out.shape == (2, 5, *hw)


@pytest.mark.parametrize("name", ["vgg16", "alexnet", "googlenet"])
def test_imagenet_backbones_any_size(name):
    net = fcn8s(name, n_classes=4).eval()
    with torch.no_grad():
        for hw in [(1, 1), (45, 70)]:
            assert net(torch.rand(1, 3, *hw)).shape == (1, 4, *hw)


def test_fcn4s_is_one_more_skip():
    net = fcn("tiny_vgg", n_classes=3, stride=4).eval()
    assert net.skip_strides == [16, 8, 4]
    assert set(net.crop_offsets) == {"score_pool4", "score_pool3", "score_pool2", "upscore4"}
    with torch.no_grad():
        assert net(torch.rand(1, 3, 50, 41)).shape == (1, 3, 50, 41)


def test_caffe_crop_offsets_are_the_official_ones():
    # The official Caffe FCN-VGG16 nets crop at these offsets; ours are computed, not typed.
    assert fcn32s("vgg16", align="caffe").crop_offsets == {"upscore": 19}
    assert fcn16s("vgg16", align="caffe").crop_offsets == {"score_pool4": 5, "upscore16": 27}
    assert fcn8s("vgg16", align="caffe").crop_offsets == {
        "score_pool4": 5,
        "score_pool3": 9,
        "upscore8": 31,
    }
    # The official FCN-AlexNet upsamples with a 63-wide kernel so that its crop is whole.
    alex = fcn32s("alexnet", align="caffe")
    assert alex.upscore.kernel_size == (63, 63)
    assert alex.crop_offsets == {"upscore": 18}


def test_same_alignment_needs_no_crops():
    for name in ("tiny_vgg", "vgg16"):
        assert set(fcn8s(name).crop_offsets.values()) == {0}


def test_caffe_alignment_refuses_maps_out_of_register():
    with pytest.raises(ValueError, match="out of register"):
        fcn8s("alexnet", align="caffe")


def test_score_layers_start_at_zero_and_upsampling_at_bilinear():
    net = fcn8s("tiny_vgg", n_classes=4)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        layer = getattr(net, name)
        assert layer.weight.abs().sum() == 0 and layer.bias.abs().sum() == 0
    assert net.upscore2.weight.requires_grad and net.upscore_pool4.weight.requires_grad
    assert not net.upscore8.weight.requires_grad  # the final upsampling stays fixed
    with torch.no_grad():
        out = net.upscore2(torch.ones(1, 4, 6, 6))
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.ones(1, 4, 10, 10))


def _trained_like(net: FCN) -> FCN:
    # Give the coarse net's score layers non-zero weights, as training would.
    g = torch.Generator().manual_seed(1)
    for name, p in net.named_parameters():
        if name.startswith("score_"):
            p.data = torch.randn(p.shape, generator=g) * 0.2
    return net


def test_staged_init_keeps_the_coarser_predictions():
    torch.manual_seed(0)
    net32 = _trained_like(fcn32s("tiny_vgg", n_classes=5)).eval()
    net16 = init_from(fcn16s("tiny_vgg", n_classes=5), net32).eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        m32, m16 = net32.score_maps(x), net16.score_maps(x)
    # Everything up to score_fr is copied ...
    torch.testing.assert_close(m16["score_fr"], m32["score_fr"], rtol=0, atol=0)
    # ... and the new, zero-initialised skip adds nothing: FCN-16s's stride-16 scores are
    # exactly FCN-32s's scores upsampled 2x.
    assert m16["score_pool4"].abs().max() == 0
    torch.testing.assert_close(m16["fuse_pool4"], m16["upscore2"], rtol=0, atol=0)
    # Two bilinear steps (2x, 16x) equal one 32x step except near the coarse knots: the
    # predicted labels agree almost everywhere.
    agree = (m16["score"].argmax(1) == m32["score"].argmax(1)).float().mean()
    assert agree > 0.97
    # FCN-8s from FCN-16s: FCN-16s's learned upscore2 and score_pool4 come along.
    net16 = _trained_like(net16)
    net8 = init_from(fcn8s("tiny_vgg", n_classes=5), net16).eval()
    with torch.no_grad():
        m8, m16 = net8.score_maps(x), net16.score_maps(x)
    torch.testing.assert_close(m8["fuse_pool4"], m16["fuse_pool4"], rtol=0, atol=0)
    torch.testing.assert_close(m8["fuse_pool3"], m8["upscore_pool4"], rtol=0, atol=0)


def test_init_from_checks_its_arguments():
    with pytest.raises(ValueError, match="finer"):
        init_from(fcn32s("tiny_vgg", n_classes=3), fcn16s("tiny_vgg", n_classes=3))
    with pytest.raises(ValueError, match="n_classes"):
        init_from(fcn16s("tiny_vgg", n_classes=3), fcn32s("tiny_vgg", n_classes=4))
    bgr = fcn32s("tiny_vgg", n_classes=3)
    bgr.bgr = True  # weights trained on BGR inputs cannot start an RGB net
    with pytest.raises(ValueError, match="normalisation"):
        init_from(fcn16s("tiny_vgg", n_classes=3), bgr)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backbone"):
        fcn32s("resnet50")
    with pytest.raises(ValueError, match="align"):
        fcn32s("tiny_vgg", align="center")
    with pytest.raises(ValueError, match="stride 64 is not available"):
        fcn("tiny_vgg", stride=64)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fcn32s("tiny_vgg")(torch.rand(3, 32, 32))


def _with_first_stage_input(net: FCN, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """``net.score_maps(x)`` and what the trunk's first stage received: the normalised input."""
    seen = []
    first = next(iter(net.features.values()))
    hook = first.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            maps = net.score_maps(x)
    finally:
        hook.remove()
    return maps, seen[0]


def test_vgg16_caffe_fcn_sees_exactly_caffes_preprocessing():
    torch.manual_seed(0)
    net = fcn32s("vgg16_caffe", n_classes=3).eval()
    assert net.bgr
    with torch.no_grad():  # non-zero class scores, so that the logits check something
        net.score_fr.weight.normal_(0, 0.01)
        net.score_fr.bias.normal_()
    x = torch.rand(1, 3, 48, 48)  # RGB in [0, 1]; pool5 is 2 x 2
    mean_bgr = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    caffe = 255 * x[:, [2, 1, 0]] - mean_bgr  # Caffe: BGR, 0-255, minus the mean pixel
    maps, seen = _with_first_stage_input(net, x)
    torch.testing.assert_close(seen, caffe, rtol=1e-6, atol=1e-4)
    assert (seen - (255 * x - mean_bgr)).abs().max() > 1  # not in RGB order
    # The same trunk and head fed the Caffe-preprocessed image by hand give the same maps.
    with torch.no_grad():
        h = caffe
        for stage in net.features.values():
            h = stage(h)
        score_fr = net.score_fr(net.fc(h))
    torch.testing.assert_close(maps["pool5"], h, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps["score_fr"], score_fr, rtol=1e-4, atol=1e-4)
    assert score_fr.abs().max() > 0.1
    # Caffe's mean pixel, as an RGB image in [0, 1], is the zero input.
    grey = (mean_bgr.flip(1) / 255).expand(1, 3, 4, 4)
    _, seen = _with_first_stage_input(net, grey)
    torch.testing.assert_close(seen, torch.zeros(1, 3, 4, 4), rtol=0, atol=1e-4)


def test_other_backbones_keep_their_normalisation():
    # No channel flip: alexnet still gets torchvision's (x - mean) / std, the lab nets x itself.
    x = torch.rand(1, 3, 40, 40)
    alex = fcn32s("alexnet", n_classes=3).eval()
    assert not alex.bgr
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    _, seen = _with_first_stage_input(alex, x)
    torch.testing.assert_close(seen, (x - mean) / std, rtol=0, atol=0)
    tiny = fcn32s("tiny_vgg", n_classes=3).eval()
    assert not tiny.bgr
    _, seen = _with_first_stage_input(tiny, x)
    torch.testing.assert_close(seen, x, rtol=0, atol=0)
