"""Receptive fields: the paper's layer algebra, Table 1's numbers, gradients, FCN crop offsets."""

from fractions import Fraction

import pytest
import torch
from torch import nn
from torchvision.models import alexnet, googlenet, vgg16

from fcnlib.receptive_field import (
    CoordMap,
    chain_kernel_stride,
    compose,
    coord_map,
    crop_offset,
    effective_radius,
    empirical_receptive_field,
    receptive_field,
)


def _meta(builder):
    # Static analysis needs only the layer list: build on the meta device, skipping 138M inits.
    with torch.device("meta"):
        return builder(weights=None)


def _ones(module):
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(1.0)
    return module


def _bilinear(module):
    """Set a 1-channel ConvTranspose2d to the bilinear kernel, as FCN initialises upsampling."""
    k, f = module.kernel_size[0], module.stride[0]
    centre = (k - 1) / 2
    t = 1 - (torch.arange(k) - centre).abs() / f
    with torch.no_grad():
        module.weight.copy_(torch.outer(t, t).clamp(min=0))
    return module


# ---------------------------------------------------------------- the numbers of the paper


def test_vgg16_table1_receptive_field_and_stride():
    features = _meta(vgg16).features
    pool5 = receptive_field(features)
    assert (pool5[-1].name, pool5[-1].kind) == ("30", "maxpool")
    assert (pool5[-1].size, pool5[-1].stride) == (212, 32)
    fc6 = nn.Conv2d(512, 4096, 7, device="meta")  # fc6 convolutionalized: 7x7 over pool5
    rf = receptive_field([features, fc6])
    assert (rf[-1].name, rf[-1].size, rf[-1].stride) == ("1", 404, 32)  # Table 1
    # the same by the paper's rule alone: (kernel, stride) of conv1_1 .. pool5, then fc6
    block = [(3, 1), (3, 1), (3, 1), (2, 2)]
    pairs = [(3, 1), (3, 1), (2, 2), (3, 1), (3, 1), (2, 2), *block, *block, *block, (7, 1)]
    assert chain_kernel_stride(pairs) == (404, 32)


def test_alexnet_table1_receptive_field_and_stride():
    fc6 = nn.Conv2d(256, 4096, 6, device="meta")
    rf = receptive_field([_meta(alexnet).features, fc6])
    assert (rf[-1].size, rf[-1].stride) == (355, 32)  # Table 1
    assert [r.kind for r in rf].count("maxpool") == 3


def _original_googlenet_trunk(net):
    """torchvision's GoogLeNet made like the original: 5x5 branch convs, a 3x3 pool4."""
    for block in net.modules():
        if type(block).__name__ == "Inception":
            conv = block.branch3[1].conv  # torchvision has 3x3 where the original had 5x5
            block.branch3[1].conv = nn.Conv2d(conv.in_channels, conv.out_channels, 5, padding=2)
    net.maxpool4 = nn.MaxPool2d(3, 2, ceil_mode=True)
    return net


def test_googlenet_inception_blocks_count_their_widest_branch():
    from fcnlib.backbones import trunk_layers

    net = googlenet(weights=None, aux_logits=False, init_weights=False)
    trunk = trunk_layers(net)
    rf = receptive_field(trunk, input_size=224)
    assert [r.kind for r in rf].count("branches") == 9  # the nine inception blocks, one unit each
    assert (rf[-1].size, rf[-1].stride) == (379, 32)  # 3x3 branches, a 2x2 pool4
    # the support of the input gradient of the centre unit agrees, position included
    measured = empirical_receptive_field(trunk.eval(), input_size=448, n_samples=2)
    assert measured.size == (379, 379)
    centre = rf[-1].offset + measured.position[1] * rf[-1].stride
    assert (measured.bbox[1] + measured.bbox[3]) / 2 == centre
    # The original GoogLeNet (5x5 branches, 3x3 pool4) with its final 7x7 average pool (stride 1
    # when convolutionalized): the 907 of the paper's Table 1.
    original = trunk_layers(_original_googlenet_trunk(net))
    rf = receptive_field([original, nn.AvgPool2d(7, stride=1)], input_size=224)
    assert (rf[-1].size, rf[-1].stride) == (907, 32)


class _Parallel(nn.Module):
    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return sum(b(x) for b in self.branches)


def test_parallel_blocks_with_a_branches_list():
    block = _Parallel(
        nn.Conv2d(2, 2, 1),
        nn.Conv2d(2, 2, 5, padding=2),
        nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)),
        nn.Identity(),
    )
    net = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.MaxPool2d(2), block)
    rf = receptive_field(net)
    assert [(r.kind, r.size, r.stride, r.offset) for r in rf][-1] == ("branches", 12, 2, 0.5)
    assert coord_map(net) == coord_map([net[0], net[1], nn.Conv2d(2, 2, 5, padding=2)])
    measured = empirical_receptive_field(_ones(net), input_size=24)
    assert measured.size == (12, 12)
    # branches that put unit j at different places cannot be concatenated: say so
    shifted = nn.Sequential(_Parallel(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3)))
    with pytest.raises(ValueError, match="out of register"):
        receptive_field(shifted)


def test_offsets_of_single_layers():
    def offset(layer):
        return receptive_field([layer])[-1].offset

    assert offset(nn.Conv2d(1, 1, 3, padding=1)) == 0
    assert offset(nn.MaxPool2d(2, 2)) == 0.5
    assert offset(nn.Conv2d(3, 64, 3, padding=100)) == -99  # FCN's conv1_1
    assert offset(nn.Conv2d(1, 1, 3, padding=2, dilation=2)) == 0
    assert offset(nn.Conv2d(1, 1, 5, padding="same")) == 0
    assert offset(nn.ZeroPad2d((3, 0, 1, 0))) == -3


def test_compose_rule():
    assert compose((2, 2), (3, 1)) == (4, 2)
    assert compose((5, 3), (3, 2)) == (3 + 4 * 2, 6)
    assert chain_kernel_stride([]) == (1, 1)
    assert chain_kernel_stride([(3, 2), (5, 3)]) == compose((5, 3), (3, 2))


def test_compose_rule_on_real_layers():
    # f_ks o g_k's' = (f o g)_{k' + (k-1)s', ss'} for g = 3x3/2 and f = 5x5/3, no nonlinearity
    net = _ones(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 5, stride=3)))
    kernel, stride = compose((5, 3), (3, 2))
    units = [empirical_receptive_field(net, input_size=40, position=(2, x)) for x in (1, 2)]
    for unit in units:
        assert unit.size == (kernel, kernel)
        assert bool(unit.support[unit.bbox[0] :, unit.bbox[1] :][:kernel, :kernel].all())
    assert units[1].bbox[1] - units[0].bbox[1] == stride
    rf = receptive_field(net)[-1]
    assert (rf.size, rf.stride) == (kernel, stride)


# ---------------------------------------------------------------- analytic vs empirical

NETS = {
    "conv-avgpool-dilated": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.AvgPool2d(2),
        nn.Conv2d(3, 3, 3, padding=1),
        nn.Conv2d(3, 2, 3, padding=2, dilation=2),
    ),
    "maxpool-relu": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 3, 3),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(3, 2, 3, dilation=2),
    ),
    "tuple-kernels": lambda: nn.Sequential(
        nn.Conv2d(2, 3, (3, 5), stride=(1, 2), padding=(1, 0)),
        nn.AvgPool2d((2, 3), stride=(2, 1)),
        nn.Conv2d(3, 2, (1, 3), dilation=(1, 3)),
    ),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_analytic_matches_empirical(name):
    torch.manual_seed(0)
    net = NETS[name]()
    emp = empirical_receptive_field(net, input_size=(40, 44), n_samples=16)
    height, width = receptive_field(net, axis=-2)[-1], receptive_field(net, axis=-1)[-1]
    top, left, bottom, right = emp.bbox
    assert top > 0 and left > 0 and bottom < 39 and right < 43, "field must not touch the border"
    assert emp.size == (height.size, width.size)
    y, x = emp.position
    assert (top + bottom) / 2 == height.offset + y * height.stride
    assert (left + right) / 2 == width.offset + x * width.stride


def test_tuple_kernels_depend_on_axis():
    conv = nn.Conv2d(1, 1, (3, 7), stride=(1, 2), padding=(0, 3))
    (h,), (w,) = receptive_field(conv, axis=-2), receptive_field(conv, axis=-1)
    assert (h.size, h.stride, h.offset) == (3, 1, 1)
    assert (w.size, w.stride, w.offset) == (7, 2, 0)
    with pytest.raises(ValueError, match="axis must be"):
        receptive_field(conv, axis=1)


@pytest.mark.parametrize(("k", "s", "p"), [(4, 2, 1), (3, 2, 1), (5, 3, 1), (16, 8, 4)])
def test_transposed_conv_against_gradients(k, s, p):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ConvTranspose2d(1, 1, k, s, p))
    rf = receptive_field(net, axis=-1)[-1]
    assert rf.stride == 1 / s
    # one unit of each of the s output phases: the widest support is the analytic size, and the
    # supports' centres average to the analytic centres (each phase is off by a fraction)
    xs = range(4 * s, 5 * s)
    units = [
        empirical_receptive_field(net, input_size=8, position=(4 * s, x), n_samples=1) for x in xs
    ]
    assert all(u.bbox[1] > 0 and u.bbox[3] < 7 for u in units), "field must not touch the border"
    assert max(u.size[1] for u in units) == rf.size
    measured = sum((u.bbox[1] + u.bbox[3]) / 2 for u in units) / s
    assert measured == pytest.approx(sum(rf.offset + x * rf.stride for x in xs) / s)


@pytest.mark.parametrize("f", [2, 4])
def test_bilinear_upsampling_is_centred_where_the_offset_says(f):
    up = _bilinear(nn.ConvTranspose2d(1, 1, 2 * f, f, f // 2, bias=False))
    rf = receptive_field(up)[-1]
    assert rf.size == 2  # each output interpolates two neighbours
    for x in range(3 * f, 4 * f):
        grad = empirical_receptive_field(up, input_size=6, position=(3 * f, x), n_samples=1).grad
        assert not grad[:, [0, -1]].any(), "field must not touch the border"
        centre = (grad.sum(0) * torch.arange(6)).sum() / grad.sum(0).sum()
        assert float(centre) == pytest.approx(rf.offset + x * rf.stride)
        assert rf.offset + x * rf.stride == pytest.approx((x + 0.5) / f - 0.5)  # align_corners


def test_ceil_mode_changes_sizes_not_geometry():
    floor = receptive_field([nn.Conv2d(1, 1, 3), nn.MaxPool2d(2)])
    ceil = receptive_field([nn.Conv2d(1, 1, 3), nn.MaxPool2d(2, ceil_mode=True)])
    assert floor == ceil


def test_empirical_leaves_the_module_as_it_was():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout2d(0.5), nn.Conv2d(2, 1, 3)
    )
    net.train()
    net[2].eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    emp = empirical_receptive_field(net, input_size=11)
    assert emp.size == (5, 5)  # measured in eval mode: no dropout, running stats untouched
    assert float(emp.grad.max()) == 1.0
    assert [m.training for m in net] == [True, True, False, True]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in net.parameters())


def test_effective_field_is_smaller_and_grows_slower_than_theoretical():
    delta = torch.zeros(5, 5)
    delta[2, 2] = 1
    assert effective_radius(delta) == 0
    assert effective_radius(torch.ones(3, 3), mass=1.0) == pytest.approx(2**0.5)

    ratios = []
    for depth in (4, 16):
        net = _ones(nn.Sequential(*[nn.Conv2d(1, 1, 3, bias=False) for _ in range(depth)]))
        emp = empirical_receptive_field(net, input_size=2 * depth + 1, n_samples=1)
        size = receptive_field(net)[-1].size
        assert emp.size == (size, size)
        ratios.append(effective_radius(emp.grad, mass=0.9) / (size / 2))
    assert ratios[0] < 1
    assert ratios[1] < 0.6 * ratios[0]  # ~ sqrt(depth) vs depth (Luo et al. 2016)


# ---------------------------------------------------------------- coordinate maps, FCN crops


def test_coord_map_algebra():
    pool = CoordMap(Fraction(1, 2), Fraction(-1, 4))
    up = CoordMap(2, Fraction(1, 2))
    assert pool.then(up) == up @ pool == CoordMap(1, 0)
    assert pool.inverse()(pool(3.0)) == 3.0
    assert pool.then(pool.inverse()) == CoordMap.identity()
    assert CoordMap(1 / 3, 0).scale == Fraction(1, 3)
    with pytest.raises(ValueError, match="positive"):
        CoordMap(0, 1)


@pytest.mark.parametrize(
    "layers",
    [
        [nn.Conv2d(1, 1, 3, padding=100), nn.MaxPool2d(2), nn.Conv2d(1, 1, 7)],
        [nn.Conv2d(1, 1, 3, stride=3), nn.ConvTranspose2d(1, 1, 4, 2, 1), nn.AvgPool2d(3)],
        [nn.ConvTranspose2d(1, 1, 64, 32), nn.Conv2d(1, 1, 5, dilation=3, padding=4)],
    ],
)
def test_coord_map_agrees_with_receptive_field(layers):
    rf, m = receptive_field(layers)[-1], coord_map(layers)
    assert rf.stride == 1 / m.scale
    assert rf.offset == -m.shift / m.scale  # output unit 0 sits at input coordinate `offset`


def _vgg_stage(n_convs, *, first_padding=1, c=2):
    layers = []
    for i in range(n_convs):
        layers += [nn.Conv2d(c, c, 3, padding=first_padding if i == 0 else 1), nn.ReLU()]
    return [*layers, nn.MaxPool2d(2, 2, ceil_mode=True)]  # Caffe pools round up


def _fcn_vgg16(c=2):
    """The official Caffe FCN geometry (conv1_1 padded by 100), at c channels."""
    pool3 = _vgg_stage(2, first_padding=100, c=c) + _vgg_stage(2, c=c) + _vgg_stage(3, c=c)
    pool4 = pool3 + _vgg_stage(3, c=c)
    pool5 = pool4 + _vgg_stage(3, c=c)
    score_fr = [*pool5, nn.Conv2d(c, c, 7), nn.ReLU(), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)]
    return pool3, pool4, score_fr


def _up(k, s, c=2):
    return nn.ConvTranspose2d(c, c, k, s, bias=False)


def test_fcn_crop_offsets_match_the_official_caffe_nets():
    pool3, pool4, score_fr = _fcn_vgg16()
    data = CoordMap.identity()
    score_fr_map = coord_map(score_fr)

    upscore = score_fr_map.then(coord_map(_up(64, 32)))  # FCN-32s
    assert crop_offset(upscore, data) == 19

    upscore2 = score_fr_map.then(coord_map(_up(4, 2)))  # FCN-16s
    score_pool4 = coord_map([*pool4, nn.Conv2d(2, 2, 1)])
    assert crop_offset(score_pool4, upscore2) == 5
    assert crop_offset(upscore2.then(coord_map(_up(32, 16))), data) == 27

    upscore_pool4 = upscore2.then(coord_map(_up(4, 2)))  # FCN-8s: fuse_pool4 has upscore2's map
    score_pool3 = coord_map([*pool3, nn.Conv2d(2, 2, 1)])
    assert crop_offset(score_pool3, upscore_pool4) == 9
    assert crop_offset(upscore_pool4.then(coord_map(_up(16, 8))), data) == 31


@pytest.mark.parametrize("size", [64, 75])
def test_fcn32s_crop_gives_back_the_input_size(size):
    _, _, score_fr = _fcn_vgg16(c=1)
    net = nn.Sequential(*score_fr, _up(64, 32, c=1))
    offset = crop_offset(coord_map(net), CoordMap.identity())
    with torch.no_grad():
        out = net(torch.zeros(1, 1, size, size))  # (1, 1, 32 * (n + 1), ...) for n score rows
    assert out.shape[-1] >= offset + size
    assert out[..., offset : offset + size, offset : offset + size].shape[-2:] == (size, size)


def test_crop_offset_errors_say_what_is_wrong():
    ref = CoordMap(Fraction(1, 2), 0)
    with pytest.raises(ValueError, match="different resolutions"):
        crop_offset(CoordMap(1, 0), ref)
    with pytest.raises(ValueError, match="not a whole number"):
        crop_offset(CoordMap(Fraction(1, 2), Fraction(1, 4)), ref)
    with pytest.raises(ValueError, match=r"crop the reference instead \(offset 3\)"):
        crop_offset(CoordMap(Fraction(1, 2), -3), ref)


# ---------------------------------------------------------------- chains, tracing, errors


class Backwards(nn.Module):
    """A chain whose layers are registered in a different order than they run."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(4, 2, 1)
        self.pool = nn.MaxPool2d(2)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.head(self.pool(self.body(x)))


def test_non_sequential_modules_are_traced_in_execution_order():
    net = Backwards()
    with pytest.raises(RuntimeError, match="in_channels=C"):  # guessed from `head`, the first conv
        receptive_field(net, input_size=(8, 10))
    rf = receptive_field(net, input_size=(8, 10), in_channels=3)
    assert [(r.name, r.kind) for r in rf] == [
        ("body.0", "conv"),
        ("pool", "maxpool"),
        ("head", "conv"),
    ]
    same = receptive_field([net.body, net.pool, net.head])
    assert [(r.size, r.stride, r.offset) for r in rf] == [
        (r.size, r.stride, r.offset) for r in same
    ]
    assert net.training  # tracing runs in eval mode and restores


def test_missing_input_size_for_non_sequential():
    with pytest.raises(ValueError, match="input_size"):
        receptive_field(Backwards())


def test_linear_asks_to_convolutionalize():
    with pytest.raises(ValueError, match=r"'2' \(Linear\).*[Cc]onvolutionalize"):
        receptive_field(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4, 2)))


def test_traced_torchvision_vgg_stops_at_adaptive_pool():
    with pytest.raises(ValueError, match=r"'avgpool' \(AdaptiveAvgPool2d\).*fixed"):
        receptive_field(_meta(vgg16), input_size=32)


def test_unknown_modules_raise_unless_declared_pointwise():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    layers = [nn.Conv2d(1, 1, 3), Square(), nn.Upsample(scale_factor=2)]
    with pytest.raises(ValueError, match=r"pointwise=\(Square,\)"):
        receptive_field(layers)
    with pytest.raises(ValueError, match="Upsample"):
        receptive_field(layers, pointwise=(Square,))
    assert len(receptive_field(layers[:2], pointwise=(Square,))) == 1


def test_pointwise_only_chain_is_the_identity():
    layers = [nn.ReLU(), nn.BatchNorm2d(3), nn.Dropout(), nn.LocalResponseNorm(5), nn.Softmax(1)]
    assert receptive_field(layers) == []
    assert coord_map(layers) == CoordMap.identity()


def test_crop_offset_pads_and_rounds_only_when_asked():
    """The one crop rule: FCN's skips and final crop use it with padding and rounding allowed."""
    inside = CoordMap(Fraction(1), Fraction(-3))  # starts 3 units inside the reference
    with pytest.raises(ValueError, match="inside the reference"):
        crop_offset(inside, CoordMap.identity())
    assert crop_offset(inside, CoordMap.identity(), allow_padding=True) == -3
    quarter = CoordMap(Fraction(1), Fraction(13, 4))
    with pytest.raises(ValueError, match="not a whole number"):
        crop_offset(quarter, CoordMap.identity())
    assert crop_offset(quarter, CoordMap.identity(), rounding=True) == 3
    with pytest.raises(ValueError, match="different resolutions"):
        crop_offset(CoordMap(Fraction(1, 2), Fraction(0)), CoordMap.identity(), rounding=True)
