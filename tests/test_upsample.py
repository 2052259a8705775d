"""Tests for fcnlib.upsample: the bilinear kernel and its interpolate identity (with the border),
shift-and-stitch against its definition, the shift-and-stitch = rarefaction identity, FLOPs."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from fcnlib.upsample import (
    BilinearUpsample,
    bilinear_kernel,
    bilinear_weight,
    compare_costs,
    exact_region,
    flops,
    init_bilinear_,
    rarefy,
    shift_and_stitch,
    upsample_params,
)

F64 = torch.float64
EXACT = {"rtol": 0.0, "atol": 1e-12}
FACTORS = [2, 3, 4, 8, 16, 32]


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- bilinear kernel


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 9, 64])
def test_kernel_matches_the_formula(size):
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    expected = torch.tensor(
        [
            [(1 - abs(i - centre) / factor) * (1 - abs(j - centre) / factor) for j in range(size)]
            for i in range(size)
        ],
        dtype=F64,
    )
    assert_close(bilinear_kernel(size, dtype=F64), expected, **EXACT)
    assert bilinear_kernel(size).dtype == torch.float32


def test_kernel_known_values():
    assert_close(bilinear_kernel(1), torch.ones(1, 1))
    half = torch.tensor([0.5, 1.0, 0.5])
    assert_close(bilinear_kernel(3), torch.outer(half, half))
    quarter = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert_close(bilinear_kernel(4), torch.outer(quarter, quarter))


@pytest.mark.parametrize("factor", FACTORS)
def test_kernel_taps_sum_to_one_at_every_phase(factor):
    # why a constant stays constant: each output phase's taps, factor apart, sum to 1
    size, *_ = upsample_params(factor)
    tent = bilinear_kernel(size, dtype=F64).diagonal().sqrt()  # the kernel is outer(tent, tent)
    for phase in range(factor):
        assert tent[phase::factor].sum().item() == pytest.approx(1.0, abs=1e-12)


def test_weight_has_the_kernel_on_the_channel_diagonal():
    w = bilinear_weight(3, 3, 4)
    assert w.shape == (3, 3, 4, 4)
    for i in range(3):
        for j in range(3):
            assert_close(w[i, j], bilinear_kernel(4) if i == j else torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"in_channels must equal out_channels.*1x1"):
        bilinear_weight(3, 21, 4)
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        bilinear_kernel(0)


# -------------------------------------------------------------------------- BilinearUpsample


def test_upsample_params_known_values():
    assert upsample_params(1) == (1, 1, 0)
    assert upsample_params(2) == (4, 2, 1)
    assert upsample_params(3) == (5, 3, 1)
    assert upsample_params(32) == (64, 32, 16)
    with pytest.raises(ValueError, match="factor must be an int >= 1"):
        upsample_params(0)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 7, 8, 16, 32])
def test_upsample_maps_n_to_n_times_factor(factor):
    up = BilinearUpsample(2, factor)
    for h, w in [(1, 1), (2, 3), (5, 4)]:
        assert up(torch.rand(1, 2, h, w)).shape == (1, 2, h * factor, w * factor)


def test_fixed_upsampling_is_frozen_and_depthwise():
    up = BilinearUpsample(3, 4, bias=True)
    assert up.groups == 3 and up.weight.shape == (3, 1, 8, 8)
    assert not any(p.requires_grad for p in up.parameters())
    assert_close(up.weight[:, 0], bilinear_kernel(8).expand(3, 8, 8))
    assert_close(up.bias, torch.zeros(3))


def test_learnable_upsampling_starts_bilinear_and_can_learn_to_mix_channels():
    fixed = BilinearUpsample(3, 2, dtype=F64)
    learn = BilinearUpsample(3, 2, learnable=True, dtype=F64)
    assert learn.groups == 1 and learn.weight.shape == (3, 3, 4, 4)
    assert all(p.requires_grad for p in learn.parameters())
    x = randn(2, 3, 5, 4)
    assert_close(learn(x), fixed(x), **EXACT)
    learn(x)[:, 0].sum().backward()  # output channel 0 depends on input channels 1, 2 too
    assert learn.weight.grad[1, 0].abs().sum() > 0 and learn.weight.grad[2, 0].abs().sum() > 0


def test_random_init_is_learnable_only():
    torch.manual_seed(0)
    up = BilinearUpsample(3, 2, learnable=True, init="random")
    assert up.weight.requires_grad
    assert not torch.allclose(up.weight, bilinear_weight(3, 3, 4))
    with pytest.raises(ValueError, match="learnable=True"):
        BilinearUpsample(3, 2, init="random")
    with pytest.raises(ValueError, match="'bilinear' or 'random'"):
        BilinearUpsample(3, 2, init="nearest")


def test_wrong_channel_count_is_explained():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(1, 21, 4, 4\)"):
        BilinearUpsample(3, 2)(torch.rand(1, 21, 4, 4))


@pytest.mark.parametrize("groups", [1, 4])
def test_init_bilinear_in_place(groups):
    conv = nn.ConvTranspose2d(4, 4, 5, stride=3, padding=1, groups=groups, dtype=F64)
    assert init_bilinear_(conv) is conv
    assert_close(conv.bias, torch.zeros(4, dtype=F64))
    reference = BilinearUpsample(4, 3, learnable=groups == 1, dtype=F64)
    assert_close(conv.weight, reference.weight, **EXACT)


def test_init_bilinear_rejects_what_it_cannot_initialise():
    with pytest.raises(TypeError, match="ConvTranspose2d, got Conv2d"):
        init_bilinear_(nn.Conv2d(2, 2, 4))
    with pytest.raises(ValueError, match="square kernel"):
        init_bilinear_(nn.ConvTranspose2d(2, 2, (4, 2)))
    with pytest.raises(ValueError, match="in_channels must equal out_channels"):
        init_bilinear_(nn.ConvTranspose2d(2, 3, 4))
    with pytest.raises(ValueError, match="groups=2"):
        init_bilinear_(nn.ConvTranspose2d(4, 4, 4, groups=2))


# ---------------------------------------------------- the identity with F.interpolate, border


def coverage(n, factor):
    """Deconvolution of a row of n ones: 1 inside, 1 - |s| where s (source row) leaves [0, n-1]."""
    s = (torch.arange(n * factor, dtype=F64) + 0.5) / factor - 0.5
    return 1 - (-s).clamp(min=0) - (s - (n - 1)).clamp(min=0)


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("size", [(5, 6), (4, 3)])
def test_deconvolution_equals_interpolate_in_the_interior(factor, size):
    h, w = size
    x = randn(2, 3, h, w)
    deconv = BilinearUpsample(3, factor, dtype=F64)(x)
    interp = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    p = factor // 2  # interior: rows p .. h*f - 1 - p, where the source row s is in [0, h - 1]
    inner = (..., slice(p, h * factor - p), slice(p, w * factor - p))
    assert_close(deconv[inner], interp[inner], **EXACT)
    # and not one row further: the border rows differ
    assert (deconv[..., p - 1, p:-p] - interp[..., p - 1, p:-p]).abs().min() > 1e-9
    assert (deconv[..., p:-p, -p] - interp[..., p:-p, -p]).abs().min() > 1e-9


@pytest.mark.parametrize("factor", [1, *FACTORS])
@pytest.mark.parametrize("size", [(1, 1), (2, 5), (5, 4)])
def test_deconvolution_is_interpolate_times_zero_padded_coverage_everywhere(factor, size):
    # interpolate clamps to the edge row; the deconvolution meets a zero beyond it instead
    h, w = size
    x = randn(1, 2, h, w)
    deconv = BilinearUpsample(2, factor, dtype=F64)(x)
    interp = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    weight = torch.outer(coverage(h, factor), coverage(w, factor))
    assert_close(deconv, interp * weight, **EXACT)


@pytest.mark.parametrize("factor", FACTORS)
def test_constant_input_border_is_a_known_fraction(factor):
    deconv = BilinearUpsample(1, factor, dtype=F64)(torch.full((1, 1, 3, 3), 7.0, dtype=F64))
    # row o < f // 2 samples s = (o + 0.5) / f - 0.5 < 0: the edge pixel with weight 1 + s
    top = torch.tensor([0.5 + (o + 0.5) / factor for o in range(factor // 2)], dtype=F64)
    p = factor // 2
    assert_close(deconv[0, 0, :p, 3 * factor // 2], 7 * top, **EXACT)
    assert_close(deconv[0, 0, -p:, 3 * factor // 2], 7 * top.flip(0), **EXACT)
    assert_close(deconv[0, 0, 0, 0], 7 * top[0] ** 2, **EXACT)
    assert_close(deconv[0, 0, p:-p, p:-p], torch.full_like(deconv[0, 0, p:-p, p:-p], 7), **EXACT)
    if factor == 2:  # a number to remember: the corner of a 2x upsampled constant is 9/16 of it
        assert deconv[0, 0, 0, 0].item() == pytest.approx(7 * 9 / 16)


# --------------------------------------------------------------------------- shift-and-stitch


def stitch_by_definition(net, x, f):
    """dense[..., i*f + dy, j*f + dx] = net(x shifted up dy, left dx)[..., i, j], by hand."""
    n, _, h, w = x.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    big = torch.zeros(n, x.shape[1], hp + f, wp + f, dtype=x.dtype)
    big[..., :h, :w] = x
    shifts = [(dy, dx) for dy in range(f) for dx in range(f)]
    outs = net(torch.cat([big[..., dy : dy + hp, dx : dx + wp] for dy, dx in shifts])).split(n)
    dense = outs[0].new_zeros(n, outs[0].shape[1], hp, wp)
    for (dy, dx), out in zip(shifts, outs, strict=True):
        dense[..., dy::f, dx::f] = out
    return dense[..., :h, :w]


def conv(c_in, c_out, k=3, *, stride=1, padding=None):
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2 if padding is None else padding)


@pytest.mark.parametrize("f", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("size", [(10, 13), (12, 20), (1, 7)])
def test_a_subsampling_net_gets_every_pixel_back(f, size):
    x = torch.arange(size[0] * size[1], dtype=F64).view(1, 1, *size)
    assert torch.equal(shift_and_stitch(nn.AvgPool2d(1, stride=f), x, f), x)


@pytest.mark.parametrize("f", [2, 3, 4])
@pytest.mark.parametrize("size", [(12, 12), (9, 14)])
def test_shift_and_stitch_follows_its_definition(f, size):
    torch.manual_seed(0)
    net = nn.Sequential(conv(2, 4), nn.ReLU(), conv(4, 3, stride=f, padding=1)).double()
    x = randn(2, 2, *size)
    dense = shift_and_stitch(net, x, f)
    assert dense.shape == (2, 3, *size)
    assert_close(dense, stitch_by_definition(net, x, f), **EXACT)


def test_looping_over_shifts_gives_the_same_as_batching_them():
    torch.manual_seed(0)
    net = nn.Sequential(conv(2, 4), nn.ReLU(), nn.MaxPool2d(3, 3), conv(4, 3)).double()
    x = randn(2, 2, 7, 8)
    assert_close(shift_and_stitch(net, x, 3, batch_shifts=False), shift_and_stitch(net, x, 3))


def test_phase_zero_is_the_plain_net():
    torch.manual_seed(0)
    net = nn.Sequential(conv(2, 4), nn.ReLU(), nn.MaxPool2d(2), conv(4, 3)).double()
    x = randn(1, 2, 8, 10)
    assert_close(shift_and_stitch(net, x, 2)[..., ::2, ::2], net(x), **EXACT)


def test_shift_and_stitch_explains_bad_input():
    with pytest.raises(ValueError, match="output stride of exactly f"):
        shift_and_stitch(nn.MaxPool2d(2), torch.rand(1, 1, 8, 8), 4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        shift_and_stitch(nn.MaxPool2d(2), torch.rand(1, 8, 8), 2)
    with pytest.raises(ValueError, match="f must be an int >= 1"):
        shift_and_stitch(nn.MaxPool2d(2), torch.rand(1, 1, 8, 8), 0)


# ------------------------------------------------------------- rarefaction: the same dense net


def make_net(name):
    torch.manual_seed(0)
    nets = {
        "pool": (nn.Sequential(conv(2, 4), nn.ReLU(), nn.MaxPool2d(2, 2), conv(4, 4), nn.ReLU(),
                               conv(4, 3, 1)), 2),
        "two_pools": (nn.Sequential(conv(2, 4), nn.ReLU(), nn.MaxPool2d(2), conv(4, 4), nn.ReLU(),
                                    nn.MaxPool2d(2), conv(4, 3, 1)), 4),
        "strided_conv": (nn.Sequential(conv(2, 4), nn.ReLU(), conv(4, 4, stride=2), nn.ReLU(),
                                       conv(4, 3, 1)), 2),
        "avg_pool": (nn.Sequential(conv(2, 4), nn.ReLU(), nn.AvgPool2d(2), conv(4, 4), nn.ReLU(),
                                   conv(4, 3, 1)), 2),
        "odd_pool": (nn.Sequential(conv(2, 4), nn.ReLU(), nn.MaxPool2d(3, 2, 1), conv(4, 4),
                                   nn.ReLU(), conv(4, 3, 1)), 2),
        "avg_no_pad_count": (nn.Sequential(conv(2, 4), nn.ReLU(),
                                           nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                                           conv(4, 3)), 2),
        "stride_3_nested": (nn.Sequential(conv(2, 4), nn.Sequential(nn.ReLU(), conv(4, 4, 5)),
                                          nn.MaxPool2d(3), conv(4, 4), nn.BatchNorm2d(4).eval(),
                                          conv(4, 3, 4, stride=2, padding=1)), 6),
        # Chapter 4's backbone in small: batch norm, and a dilated conv after two pools
        "dilated_bn": (nn.Sequential(conv(2, 4, 1), nn.BatchNorm2d(4).eval(), nn.ReLU(),
                                     nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=2, dilation=2),
                                     nn.ReLU(), conv(4, 3, 1)), 2),
    }  # fmt: skip
    net, f = nets[name]
    return net.double(), f


NETS = ["pool", "two_pools", "strided_conv", "avg_pool", "odd_pool", "avg_no_pad_count",
        "stride_3_nested", "dilated_bn"]  # fmt: skip


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("cells", [(6, 5), (4, 7)])
def test_shift_and_stitch_equals_the_rarefied_net_on_the_exact_region(name, cells):
    net, f = make_net(name)
    size = (cells[0] * f, cells[1] * f)
    x = randn(2, 2, *size)
    stitched, rarefied = shift_and_stitch(net, x, f), rarefy(net)(x)
    assert rarefied.shape == stitched.shape == (2, 3, *size)
    region = exact_region(net, size)
    phase_zero = torch.zeros(size, dtype=torch.bool)
    phase_zero[::f, ::f] = True
    assert region[phase_zero].all()
    assert (region & ~phase_zero).any()  # the claim covers shifted copies, not only the plain net
    assert_close(stitched[..., region], rarefied[..., region], rtol=0, atol=1e-10)
    assert (stitched - rarefied)[..., ~region].abs().max() > 1e-6  # the border effect is real


@pytest.mark.parametrize("name", ["strided_conv", "avg_pool"])
def test_for_linear_nets_the_region_is_also_necessary(name):
    net, f = make_net(name)
    linear = nn.Sequential(*(m for m in net if not isinstance(m, nn.ReLU)))
    x = randn(1, 2, 6 * f, 5 * f)
    differs = (shift_and_stitch(linear, x, f) - rarefy(linear)(x)).abs().amin(dim=(0, 1)) > 1e-9
    assert torch.equal(differs, ~exact_region(linear, x.shape[-2:]))


def test_the_region_is_where_the_receptive_field_stays_on_both_images():
    # conv 3x3 + max pool 2: output pixel m sees input rows m - 1 .. m + 2
    net = nn.Sequential(conv(1, 1), nn.MaxPool2d(2))
    rows = exact_region(net, (8, 10))[:, 0]
    # even rows (phase 0) always; odd rows need rows m-1 .. m+2 inside 1 .. 7
    assert rows.tolist() == [True, False, True, True, True, True, True, False]


@pytest.mark.parametrize("name", ["pool", "two_pools"])
def test_sizes_that_are_not_multiples_of_f(name):
    net, f = make_net(name)
    x = randn(1, 2, 5 * f + 1, 4 * f + f - 1)
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, -w % f, 0, -h % f))  # what shift-and-stitch does first
    region = exact_region(net, padded.shape[-2:])[:h, :w]
    stitched, rarefied = shift_and_stitch(net, x, f), rarefy(net)(padded)[..., :h, :w]
    assert_close(stitched[..., region], rarefied[..., region], rtol=0, atol=1e-10)


def test_rarefied_net_keeps_weights_and_dilates_later_filters():
    net, _ = make_net("two_pools")
    rare = rarefy(net)
    convs = [m for m in rare if isinstance(m, nn.Conv2d)]
    assert [c.dilation for c in convs] == [(1, 1), (2, 2), (4, 4)]
    assert [c.padding for c in convs] == [(1, 1), (2, 2), (0, 0)]
    assert all(c.stride == (1, 1) for c in rare if hasattr(c, "stride"))
    for a, b in zip(net.parameters(), rare.parameters(), strict=True):
        assert torch.equal(a, b) and a is not b  # same values, a deep copy
    assert rare(randn(1, 2, 13, 7)).shape == (1, 3, 13, 7)  # input resolution, any size


def test_without_downsampling_rarefy_changes_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(conv(2, 4), nn.ReLU(), conv(4, 3, 5)).double()
    x = randn(1, 2, 9, 11)
    assert_close(rarefy(net)(x), net(x), **EXACT)
    assert exact_region(net, (9, 11)).all()


def test_rarefy_explains_what_it_cannot_do():
    with pytest.raises(TypeError, match=r"nn\.Sequential, got Conv2d"):
        rarefy(conv(1, 1))
    with pytest.raises(TypeError, match=r"layer '1' \(Upsample\).*MaxPool2d"):
        rarefy(nn.Sequential(conv(1, 1), nn.Upsample(scale_factor=2)))
    with pytest.raises(ValueError, match=r"layer '0'.*2 <= 2p <= 2"):
        rarefy(nn.Sequential(conv(1, 1, padding=0)))  # a valid conv shrinks the map
    with pytest.raises(ValueError, match="ceil_mode"):
        rarefy(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)))
    with pytest.raises(ValueError, match="padding as int"):
        rarefy(nn.Sequential(nn.Conv2d(1, 1, 3, padding="same")))
    with pytest.raises(ValueError, match="not a multiple of the output stride 2"):
        exact_region(nn.Sequential(nn.MaxPool2d(2)), (7, 8))


# --------------------------------------------------------------------------------------- cost


def test_flops_of_a_convolution():
    assert flops(nn.Conv2d(3, 8, 3, padding=1), torch.rand(2, 3, 10, 12)) == 2 * 2 * 8 * 27 * 120


@pytest.mark.parametrize(
    ("name", "batch_shifts"),
    [("pool", True), ("pool", False), ("two_pools", True), ("stride_3_nested", True)],
)
def test_shift_and_stitch_costs_f_squared_passes(name, batch_shifts):
    net, f = make_net(name)
    x = randn(1, 2, 2 * f, 3 * f)

    def stitched(t):
        return shift_and_stitch(net, t, f, batch_shifts=batch_shifts)

    assert flops(stitched, x) == f**2 * flops(net, x) > 0


def test_compare_costs_reports_flops_and_times():
    net, f = make_net("two_pools")
    costs = compare_costs(net, randn(1, 2, 13, 17), f, repeats=1)
    assert set(costs) == {
        "shift_and_stitch_flops",
        "coarse_flops",
        "bilinear_flops",
        "flop_ratio",
        "shift_and_stitch_seconds",
        "coarse_bilinear_seconds",
        "time_ratio",
    }
    assert costs["shift_and_stitch_flops"] == f**2 * costs["coarse_flops"]
    assert costs["bilinear_flops"] > 0
    expected = costs["shift_and_stitch_flops"] / (costs["coarse_flops"] + costs["bilinear_flops"])
    assert costs["flop_ratio"] == pytest.approx(expected)
    assert costs["shift_and_stitch_seconds"] > 0 and costs["coarse_bilinear_seconds"] > 0
