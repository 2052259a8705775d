"""From classifier to FCN: convolutionalization, the skip nets, alignment, staged init; RGB-D
early and late fusion; the dilated (stride-8) trunk and its shift-and-stitch identities."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from fcnlib import receptive_field as rf
from fcnlib.backbones import build_classifier
from fcnlib.models import (
    FCN,
    LateFusion,
    convolutionalize,
    dilate_to_stride,
    expand_input,
    fcn,
    fcn8s,
    fcn16s,
    fcn32s,
    init_from,
)
from fcnlib.rarefy import exact_region, rarefy
from fcnlib.upsample import shift_and_stitch

F64 = torch.float64


def _randomise_bn(net: nn.Module) -> nn.Module:
    # Non-trivial running statistics, so that eval-mode BN is not the identity.
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net


@pytest.mark.parametrize(
    "name",
    ["tiny_vgg", "tiny_vgg_wide", "alexnet", pytest.param("vgg16", marks=pytest.mark.slow),
     "googlenet"],
)  # fmt: skip
def test_convolutionalized_net_equals_its_classifier(name):
    torch.manual_seed(0)
    clf = _randomise_bn(build_classifier(name)).eval()
    conv = convolutionalize(clf).eval()
    size = 96 if name.startswith("tiny") else 224
    x = torch.rand(2, 3, size, size)
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    with torch.no_grad():
        logits, heat = clf(x), conv(x)
    assert heat.shape == (2, logits.shape[1], 1, 1)
    torch.testing.assert_close(heat.flatten(1), logits, rtol=1e-4, atol=1e-4)
    # The classifier is left untouched: its layers were copied, not moved or shared.
    with torch.no_grad():
        for p in conv.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())
    assert not {id(p) for p in clf.parameters()} & {id(p) for p in conv.parameters()}


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


# Geometry only: these nets are built on the meta device (shapes, no weights in memory), so the
# big backbones cost milliseconds.
META = torch.device("meta")


def test_caffe_crop_offsets_are_the_official_ones():
    # The official Caffe FCN-VGG16 nets crop at these offsets; ours are computed, not typed.
    with META:
        assert fcn32s("vgg16", align="caffe", pretrained=False).crop_offsets == {"upscore": 19}
        assert fcn16s("vgg16", align="caffe", pretrained=False).crop_offsets == {
            "score_pool4": 5,
            "upscore16": 27,
        }
        assert fcn8s("vgg16", align="caffe", pretrained=False).crop_offsets == {
            "score_pool4": 5,
            "score_pool3": 9,
            "upscore8": 31,
        }
        # The official FCN-AlexNet upsamples with a 63-wide kernel so that its crop is whole.
        alex = fcn32s("alexnet", align="caffe", pretrained=False)
    assert alex.upscore.kernel_size == (63, 63)
    assert alex.crop_offsets == {"upscore": 18}


def test_same_alignment_needs_no_crops_on_vgg_and_keeps_every_size():
    with META:
        for name in ("tiny_vgg", "vgg16", "alexnet", "googlenet"):
            net = fcn8s(name, pretrained=False)
            if name in ("tiny_vgg", "vgg16"):  # strides tile the image: every map in register
                assert set(net.crop_offsets.values()) == {0}, name
            # and on the meta device the shapes still come out: (N, C, H, W) as the input's
            assert net(torch.zeros(1, 3, 45, 70)).shape == (1, net.n_classes, 45, 70), name


def test_caffe_alignment_refuses_maps_out_of_register():
    with META, pytest.raises(ValueError, match="out of register"):
        fcn8s("alexnet", align="caffe", pretrained=False)


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
    # another backbone with the same layer names: refused, not 9 of 63 tensors copied
    wide = fcn16s("tiny_vgg_wide", n_classes=3)
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    with pytest.raises(ValueError, match=r"different layers: 53 of the coarser net's 63 tensors"):
        init_from(wide, fcn32s("tiny_vgg", n_classes=3))
    assert all(torch.equal(v, before[k]) for k, v in wide.state_dict().items())  # untouched


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


@pytest.mark.slow
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


# ----------------------------------------------------------------------------------------------
# RGB-D: early fusion
# ----------------------------------------------------------------------------------------------


def _conv1(net: FCN) -> nn.Conv2d:
    return next(m for m in net.features.modules() if isinstance(m, nn.Conv2d))


def _rgb_net(name: str, normalisation: str) -> FCN:
    """A float64 FCN-16s with non-zero score layers; 'caffe' mocks Caffe's BGR normalisation."""
    torch.manual_seed(0)
    net = fcn16s(name, n_classes=4)
    if normalisation == "caffe":
        net.mean = torch.tensor([0.41, 0.46, 0.49]).view(1, 3, 1, 1)
        net.std = torch.tensor([1 / 255] * 3).view(1, 3, 1, 1)
        net.bgr = True
    return _randomise_bn(_trained_like(net)).eval().double()


@pytest.mark.parametrize(
    ("name", "normalisation"),
    [("tiny_vgg", "none"), ("tiny_vgg", "caffe"), ("alexnet", "imagenet")],
)
def test_early_fusion_with_zero_depth_filters_is_the_rgb_net(name, normalisation):
    net3 = _rgb_net(name, normalisation)
    net4 = expand_input(net3, 4)  # init="mean"
    assert (net3.in_channels, net4.in_channels) == (3, 4)
    w3, w4 = _conv1(net3).weight, _conv1(net4).weight
    assert w3.shape[1] == 3 and w4.shape[1] == 4  # net3 is left as it was
    assert torch.equal(w4[:, :3], w3)  # the RGB filters, exactly
    assert_close(w4[:, 3], w3.mean(1), rtol=0, atol=0)  # depth: the mean RGB filter
    assert torch.equal(_conv1(net4).bias, _conv1(net3).bias)
    assert _conv1(net4).padding == _conv1(net3).padding
    g = torch.Generator().manual_seed(2)
    rgb = torch.rand(2, 3, 37, 45, generator=g, dtype=F64)
    depth = torch.rand(2, 1, 37, 45, generator=g, dtype=F64)
    rgbd = torch.cat([rgb, depth], dim=1)
    # The extra channel passes the normalisation as given (mean 0, std 1, no BGR flip).
    _, seen3 = _with_first_stage_input(net3, rgb)
    maps4, seen4 = _with_first_stage_input(net4, rgbd)
    assert_close(seen4, torch.cat([seen3, depth], dim=1), rtol=0, atol=0)
    # With the default init depth changes the scores ...
    with torch.no_grad():
        out3 = net3(rgb)
    assert (maps4["score"] - out3).abs().max() > 1e-3
    # ... and with the depth filters at zero the RGB-D net is the RGB net: equal up to the
    # order of summation in conv1 (float64 rounding).
    with torch.no_grad():
        _conv1(net4).weight[:, 3] = 0
        out4 = net4(rgbd)
    assert_close(out4, out3, rtol=1e-10, atol=1e-10)
    zeros = expand_input(net3, 4, init="zeros")
    assert _conv1(zeros).weight[:, 3].abs().max() == 0
    with torch.no_grad():
        assert_close(zeros(rgbd), out3, rtol=1e-10, atol=1e-10)


def test_expand_input_explains_bad_arguments_and_inputs():
    net3 = fcn32s("tiny_vgg", n_classes=3)
    net5 = expand_input(net3, 5)  # e.g. RGB + HHA's ... any number of extra channels
    assert net5.in_channels == 5 and net5(torch.rand(1, 5, 20, 20)).shape == (1, 3, 20, 20)
    with pytest.raises(ValueError, match="channels must be an int >= the 3"):
        expand_input(net3, 2)
    with pytest.raises(ValueError, match="init"):
        expand_input(net3, 4, init="random")
    with pytest.raises(ValueError, match=r"expected images \(N, 4, H, W\) \(RGB, then 1 extra"):
        expand_input(net3, 4)(torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*expand_input"):
        net3(torch.rand(1, 4, 20, 20))


def test_init_from_between_rgbd_nets_and_refusing_a_channel_mismatch():
    torch.manual_seed(0)
    net32 = _trained_like(expand_input(fcn32s("tiny_vgg", n_classes=5))).eval()
    net16 = init_from(expand_input(fcn16s("tiny_vgg", n_classes=5), init="zeros"), net32).eval()
    assert torch.equal(_conv1(net16).weight, _conv1(net32).weight)  # depth filters included
    x = torch.rand(2, 4, 64, 96)
    with torch.no_grad():
        m32, m16 = net32.score_maps(x), net16.score_maps(x)
    assert_close(m16["score_fr"], m32["score_fr"], rtol=0, atol=0)
    assert_close(m16["fuse_pool4"], m16["upscore2"], rtol=0, atol=0)
    rgb16 = fcn16s("tiny_vgg", n_classes=5)
    with pytest.raises(ValueError, match=r"same input channels: got 3 \(finer\) and 4"):
        init_from(rgb16, net32)
    with pytest.raises(ValueError, match=r"expand_input\(net, 4\)"):
        init_from(net16, fcn32s("tiny_vgg", n_classes=5))


# ----------------------------------------------------------------------------------------------
# RGB-D: late fusion
# ----------------------------------------------------------------------------------------------


def test_late_fusion_sums_the_two_nets_scores():
    torch.manual_seed(0)
    rgb_net = _trained_like(fcn32s("tiny_vgg", n_classes=4)).eval()
    hha_net = _trained_like(fcn16s("tiny_vgg", n_classes=4)).eval()  # another net, other weights
    fused = LateFusion(rgb_net, hha_net).eval()
    x = torch.rand(2, 6, 40, 52)  # RGB, then HHA (3 channels): fed as they are
    with torch.no_grad():
        out = fused(x)
        expected = rgb_net(x[:, :3]) + hha_net(x[:, 3:])
    assert out.shape == (2, 4, 40, 52)
    assert_close(out, expected, rtol=0, atol=0)
    assert hha_net(x[:, 3:]).abs().max() > 1e-3  # both streams contribute
    # One depth channel for a 3-channel depth net: repeated, a grey image of depth.
    rgbd = torch.rand(2, 4, 40, 52)
    with torch.no_grad():
        expected = rgb_net(rgbd[:, :3]) + hha_net(rgbd[:, 3:].repeat(1, 3, 1, 1))
        assert_close(fused(rgbd), expected, rtol=0, atol=0)
    # Trained end to end: the loss reaches both streams.
    fused.train()
    fused(rgbd).sum().backward()
    assert rgb_net.score_fr.weight.grad.abs().sum() > 0
    assert hha_net.score_fr.weight.grad.abs().sum() > 0


def test_late_fusion_explains_bad_arguments():
    rgb_net = fcn32s("tiny_vgg", n_classes=4)
    with pytest.raises(ValueError, match="same classes"):
        LateFusion(rgb_net, fcn32s("tiny_vgg", n_classes=5))
    with pytest.raises(ValueError, match="RGB net must take 3 channels"):
        LateFusion(expand_input(rgb_net), rgb_net)
    fused = LateFusion(rgb_net, fcn32s("tiny_vgg", n_classes=4))
    with pytest.raises(ValueError, match="takes 3 channel"):
        fused(torch.rand(1, 5, 20, 20))  # two extra channels for a 3-channel depth net
    with pytest.raises(ValueError, match=r"\(N, 3 \+ k, H, W\)"):
        fused(torch.rand(1, 3, 20, 20))


# ----------------------------------------------------------------------------------------------
# Dilation: FCN-32s's head on a stride-8 trunk
# ----------------------------------------------------------------------------------------------


def _dilations(net: FCN) -> list[tuple[str, int]]:
    tail = nn.ModuleDict({"pool4": net.features.pool4, "pool5": net.features.pool5, "fc": net.fc})
    return [
        (type(m).__name__, m.dilation if isinstance(m.dilation, int) else m.dilation[0])
        for m in tail.modules()
        if isinstance(m, nn.Conv2d | nn.MaxPool2d)
    ]


def _last_rf(net: FCN) -> rf.LayerRF:
    """Receptive field of score_fr's units, in input pixels."""
    return rf.receptive_field([*net.features.values(), net.fc, net.score_fr])[-1]


def _phase_zero_equals_fcn32s(net32: FCN, dilated: FCN, x: torch.Tensor, **tol) -> None:
    with torch.no_grad():
        m32, m8 = net32.score_maps(x), dilated.score_maps(x)
    assert m8["score_fr"].shape[-2:] == m8["pool3"].shape[-2:] == m32["pool3"].shape[-2:]
    assert m8["score"].shape == (x.shape[0], net32.n_classes, *x.shape[-2:])
    # The paper's identity, with no border exception for 2x2 pools (see the test below).
    assert_close(m8["pool5"][..., ::4, ::4], m32["pool5"], **tol)
    assert_close(m8["score_fr"][..., ::4, ::4], m32["score_fr"], **tol)
    assert m32["score_fr"].abs().max() > 1e-3


def test_dilated_tiny_vgg_keeps_receptive_fields_and_weights():
    net32 = fcn32s("tiny_vgg", n_classes=5)
    net8 = dilate_to_stride(net32)
    assert (net8.stride, net8.dilation, net8.skip_strides) == (8, 4, [])
    # conv4 as it was and pool4 stops downsampling; conv5 and pool5 read every 2nd unit,
    # fc6 and fc7 every 4th.
    assert _dilations(net8) == [
        ("Conv2d", 1), ("Conv2d", 1), ("MaxPool2d", 1), ("Conv2d", 2), ("Conv2d", 2),
        ("MaxPool2d", 2), ("Conv2d", 4), ("Conv2d", 4),
    ]  # fmt: skip
    assert _dilations(net32) == [(kind, 1) for kind, _ in _dilations(net8)]  # left as it was
    r32, r8 = _last_rf(net32), _last_rf(net8)
    assert (r8.size, r8.offset) == (r32.size, r32.offset) == (214, 15.5)  # units see the same
    assert (r32.stride, r8.stride) == (32, 8)
    # Same parameters, same names and shapes: FCN-32s's weights load as they are.
    shapes = {k: v.shape for k, v in net32.state_dict().items() if not k.startswith("upscore")}
    assert {k: v.shape for k, v in net8.state_dict().items() if k != "upscore8.weight"} == shapes
    # Units sit where FCN-32s's do (15.5 + 8 m), 12 pixels in from where the 8x upsampling
    # expects a stride-8 map to start (3.5): the computed final crop says so.
    assert net8.crop_offsets == {"upscore8": -12}
    assert not net8.upscore8.weight.requires_grad
    assert dilate_to_stride(net32, learnable_final=True).upscore8.weight.requires_grad
    net16 = dilate_to_stride(net32, 16)
    assert (net16.stride, net16.dilation, net16.crop_offsets) == (16, 2, {"upscore16": -8})
    rgbd8 = dilate_to_stride(expand_input(net32))  # the two surgeries compose
    assert rgbd8(torch.rand(1, 4, 30, 41)).shape == (1, 5, 30, 41)


@pytest.mark.parametrize("hw", [(96, 128), (100, 37), (37, 53), (8, 8), (1, 1)])
def test_dilated_scores_every_4th_unit_are_fcn32s_scores(hw):
    # Filter rarefaction: unit 4j of the stride-8 map reads exactly what FCN-32s's unit j
    # reads. With 2x2 pools and 'same' convolutions this holds at every unit, borders included,
    # for any size: FCN-32s's padding (and its ceil-mode partial windows) sits at unit
    # ceil(n/4) of a stride-32 map, position 4 ceil(n/4) >= n of the stride-8 map, where the
    # dilated net pads too (zeros before convolutions, -inf before pools).
    torch.manual_seed(0)
    net32 = _randomise_bn(_trained_like(fcn32s("tiny_vgg", n_classes=5))).eval().double()
    x = torch.rand(2, 3, *hw, dtype=F64)
    net8 = dilate_to_stride(net32)
    _phase_zero_equals_fcn32s(net32, net8, x, rtol=0, atol=1e-10)
    with torch.no_grad():  # output stride 8: the map tiles the image in 8 x 8 cells
        assert net8.score_maps(x)["score_fr"].shape[-2:] == tuple(math.ceil(n / 8) for n in hw)


def test_dilated_scores_elsewhere_are_shift_and_stitch_on_the_exact_region():
    # The other 15 phases of the stride-8 map are shift-and-stitch of FCN-32s's last stages
    # (pool4 .. score_fr, output stride 4 over the pool3 map): exactly, for every unit whose
    # receptive field stays inside rows/columns d .. n-1, d its phase, the region
    # fcnlib.upsample.exact_region describes (its input must be a multiple of 4: here 32 x 36).
    torch.manual_seed(0)
    net32 = _randomise_bn(_trained_like(fcn32s("tiny_vgg", n_classes=3))).eval().double()
    net8 = dilate_to_stride(net32)
    x = torch.rand(2, 3, 256, 288, dtype=F64)
    tail32 = nn.Sequential(net32.features.pool4, net32.features.pool5, net32.fc, net32.score_fr)
    with torch.no_grad():
        maps = net8.score_maps(x)
        stitched = shift_and_stitch(tail32, maps["pool3"], 4)
    dense = maps["score_fr"]  # (2, 3, 32, 36)
    last = rf.receptive_field(list(tail32))[-1]  # in pool3 units: rows m - above .. m + below
    above, below = (last.size - 1) / 2 - last.offset, (last.size - 1) / 2 + last.offset
    axes = []
    for n in dense.shape[-2:]:
        m = torch.arange(n)
        axes.append((m % 4 == 0) | ((m - above >= m % 4) & (m + below <= n - 1)))
    region = axes[0][:, None] & axes[1][None, :]
    assert (region & ((torch.arange(32) % 4 != 0)[:, None])).any()  # not only phase 0
    assert_close(dense[..., region], stitched[..., region], rtol=0, atol=1e-10)
    assert (dense - stitched)[..., ~region].abs().max() > 1e-6  # the border effect is real


def test_rarefy_shift_and_stitch_and_dilate_to_stride_agree_in_float64():
    # One rarefaction (fcnlib.rarefy.rarefy_layer) behind both: FCN-32s's stages after pool3,
    # rarefied by fcnlib.rarefy.rarefy, give the dilated net's stride-8 scores at every unit,
    # and equal shift-and-stitch of the same stages on the region exact_region names.
    torch.manual_seed(0)
    net32 = _randomise_bn(_trained_like(fcn32s("tiny_vgg", n_classes=3))).eval().double()
    net8 = dilate_to_stride(net32)
    x = torch.rand(2, 3, 128, 160, dtype=F64)  # pool3: 16 x 20, multiples of 4
    # the same stages as a chain rarefy takes: fc6's zero padding inside the convolution, and
    # floor-mode pools (on sizes that are multiples of 4 the same as FCN-32s's ceil mode)
    tail = copy.deepcopy(nn.Sequential(net32.features.pool4, net32.features.pool5,
                                       *net32.fc[1:], net32.score_fr))  # fmt: skip
    tail[2].padding = net32.fc[0].padding[::2]  # ZeroPad2d (l, r, t, b) -> (t, l)
    for pool in (m for m in tail.modules() if isinstance(m, nn.MaxPool2d)):
        pool.ceil_mode = False
    with torch.no_grad():
        maps = net8.score_maps(x)
        rarefied = rarefy(tail)(maps["pool3"])
        stitched = shift_and_stitch(tail, maps["pool3"], 4)
    assert_close(rarefied, maps["score_fr"], rtol=0, atol=1e-10)  # everywhere
    region = exact_region(tail, tuple(maps["pool3"].shape[-2:]))
    assert_close(stitched[..., region], rarefied[..., region], rtol=0, atol=1e-10)
    assert 0 < region.float().mean() < 1  # the border is excluded, and it matters:
    assert (stitched - rarefied)[..., ~region].abs().max() > 1e-6


def test_dilated_alexnet_is_exact_where_no_pool_window_is_padding_only():
    # AlexNet's 3x3 / 2 pools, padded 1 and in ceil mode, map an even size n to n/2 + 1: the
    # last window holds one pixel and padding. The dilated pool keeps size n, so that unit
    # (position n) is padding for the dilated net: the identity holds at every unit when the
    # pooled maps have odd sizes (stride-8 map n = 1 mod 4), and only away from the far border
    # otherwise.
    torch.manual_seed(0)
    net32 = _trained_like(fcn32s("alexnet", n_classes=3)).eval().double()
    net8 = dilate_to_stride(net32)
    x = torch.rand(1, 3, 33, 64, dtype=F64)  # stride-8 map 5 x 9
    _phase_zero_equals_fcn32s(net32, net8, x, rtol=1e-10, atol=1e-10)
    r32, r8 = _last_rf(net32), _last_rf(net8)
    assert (r8.size, r8.offset, r8.stride) == (r32.size, r32.offset, 8)
    with torch.no_grad():  # stride-8 map 6 x 9: FCN-32s has an extra row of units ...
        x = torch.rand(1, 3, 40, 64, dtype=F64)
        every4th = net8.score_maps(x)["score_fr"][..., ::4, ::4]  # (1, 3, 2, 3)
        s32 = net32.score_maps(x)["score_fr"]  # (1, 3, 3, 3)
    assert s32.shape[-2] == every4th.shape[-2] + 1
    # ... which its 6 x 6 fc6 reads from every unit of so small a map.
    assert (every4th - s32[..., :2, :]).abs().max() > 1e-6


@pytest.fixture(scope="module")
def vgg16_32s() -> FCN:
    torch.manual_seed(0)
    return _trained_like(fcn32s("vgg16", n_classes=3)).eval()


@pytest.mark.slow
def test_dilated_vgg16(vgg16_32s):
    net8 = dilate_to_stride(vgg16_32s)
    assert _dilations(net8) == [("Conv2d", 1)] * 3 + [("MaxPool2d", 1)] + [  # conv4, pool4
        ("Conv2d", 2), ("Conv2d", 2), ("Conv2d", 2), ("MaxPool2d", 2),  # conv5, pool5
        ("Conv2d", 4), ("Conv2d", 4),  # fc6, fc7
    ]  # fmt: skip
    assert net8.fc[1].kernel_size == (7, 7) and net8.fc[1].padding == (0, 0)
    assert net8.fc[0].padding == (12, 12, 12, 12)  # fc6's 'same' padding 3, rarefied by 4
    r32, r8 = _last_rf(vgg16_32s), _last_rf(net8)
    assert (r8.size, r8.offset) == (r32.size, r32.offset) == (404, 15.5)
    assert (r32.stride, r8.stride) == (32, 8)
    assert net8.crop_offsets == {"upscore8": -12}
    x = torch.rand(1, 3, 72, 40)  # stride-8 map 9 x 5, stride-32 map 3 x 2
    _phase_zero_equals_fcn32s(vgg16_32s, net8, x, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        assert net8.score_maps(x)["score_fr"].shape[-2:] == (9, 5)


def test_dilate_to_stride_refuses_what_it_does_not_support():
    with pytest.raises(ValueError, match="align='same' only"):
        dilate_to_stride(fcn32s("tiny_vgg", align="caffe"))
    with pytest.raises(ValueError, match="undilated FCN-32s"):
        dilate_to_stride(fcn16s("tiny_vgg"))
    with pytest.raises(ValueError, match="undilated FCN-32s"):
        dilate_to_stride(dilate_to_stride(fcn32s("tiny_vgg")), 4)
    with pytest.raises(ValueError, match=r"stride 12 is not available.*\[4, 8, 16, 32\]"):
        dilate_to_stride(fcn32s("tiny_vgg"), 12)


def test_init_from_loads_fcn32s_weights_into_a_dilated_net():
    torch.manual_seed(0)
    trained = _randomise_bn(_trained_like(fcn32s("tiny_vgg", n_classes=4))).eval()
    fresh = init_from(dilate_to_stride(fcn32s("tiny_vgg", n_classes=4)), trained).eval()
    x = torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        assert_close(fresh(x), dilate_to_stride(trained).eval()(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# Bad inputs: refused by name, or converted; never a silent wrong result
# ----------------------------------------------------------------------------------------------


def test_integer_images_are_refused_with_how_to_convert():
    # ImageNet's mean and std, as on the torchvision backbones: in uint8 they became 0 (NaNs)
    net = FCN(build_classifier("tiny_vgg"), n_classes=3, stride=8,
              mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)).eval()  # fmt: skip
    image = torch.randint(0, 256, (1, 3, 24, 24), dtype=torch.uint8)
    for x in (image, image.long()):
        with pytest.raises(ValueError, match=r"float images, RGB in \[0, 1\].*x\.float\(\) / 255"):
            net(x)
    with torch.no_grad():
        assert net(image.float() / 255).isfinite().all()


def test_other_float_precisions_run_in_the_weights_dtype():
    torch.manual_seed(0)
    net = _trained_like(fcn8s("tiny_vgg", n_classes=3)).eval()
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        reference = net(x)
        for dtype in (torch.float16, torch.bfloat16, torch.float64):  # crashed in conv1 before
            out = net(x.to(dtype))
            assert out.dtype == torch.float32
            assert_close(out, net(x.to(dtype).float()), rtol=0, atol=0)  # just a cast first
        with torch.autocast("cpu", dtype=torch.bfloat16):  # convs still in the autocast dtype
            assert net(x.double()).dtype == torch.bfloat16
        net64 = net.double()  # float64 throughout, for identity checks
        out64 = net64(x.double())
        assert out64.dtype == torch.float64 and net64.mean.dtype == torch.float64
        assert_close(out64.float(), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride", [2, 1, 64, 8.0, True])
def test_unsupported_strides_are_a_value_error_naming_the_allowed_ones(stride):
    with pytest.raises(ValueError, match=r"takes strides \[32, 16, 8, 4\]"):
        fcn("tiny_vgg", stride=stride)


def test_strides_follow_the_backbones_stages():
    with pytest.raises(
        ValueError, match=r"takes strides \[32, 16, 8\] \(FCN-32s, FCN-16s, FCN-8s\)"
    ):
        fcn("googlenet", stride=4)  # its first stage ends at stride 8
