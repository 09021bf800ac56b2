"""EJPNet family: counts pinned to the EdgeNets / FastFCN reference and to the EJPNet paper reading,
check() naming the parameter at fault, exportable adaptive pooling, and sampled points that run."""

from __future__ import annotations

import optuna
import pytest
import torch
import torch.nn.functional as F

from nasseg.blocks.eesp import EESP, espnetv2_dilations
from nasseg.blocks.efficient_pyramid_pool import adaptive_avg_pool2d
from nasseg.blocks.jpu import JPU
from nasseg.errors import ConfigError, InfeasibleArchitecture
from nasseg.models import ArchConfig, Findings, build
from nasseg.models.ejpnet import EESPEncoder, EJPNetSpec, check, espnetv2_widths
from nasseg.profile import count_macs, count_params
from nasseg.spaces import load_space

SPACE = load_space("ejpnet")

# shared/reference/architectures.md 2.6: EdgeNets ESPNetv2Segmentation, C=20, conv MACs at 1024x512.
ESPNETV2 = {
    "espnetv2-s0.5": (80_342, 597.56e6),
    "espnetv2-s1": (234_010, 1_086.59e6),
    "espnetv2-s1.5": (468_362, 1_714.57e6),
    "espnetv2-s2": (789_242, 2_699.05e6),
}


def params_of(name: str, **changes) -> dict:
    return {**SPACE.baseline(name).params, **changes}


@pytest.mark.parametrize("name", list(ESPNETV2))
def test_espnetv2_params_within_1_percent(name):
    ours = count_params(build(SPACE.baseline(name)))
    target = ESPNETV2[name][0]
    assert abs(ours - target) / target < 0.01, (ours, target)


@pytest.mark.parametrize("name", list(ESPNETV2))
def test_espnetv2_conv_macs_within_3_percent(name):
    ours = count_macs(build(SPACE.baseline(name)), (512, 1024)).conv_macs
    target = ESPNETV2[name][1]
    assert abs(ours - target) / target < 0.03, (ours, target)


@pytest.mark.parametrize("scale, reference", [(0.5, 62_354), (1.0, 207_158), (1.5, 434_886), (2.0, 745_686)])
def test_encoder_equals_reference_minus_the_unused_prelus(scale, reference):
    """EdgeNets builds a final PReLU in each strided EESP that it never calls; we leave it out."""
    spec = EJPNetSpec.parse(params_of("espnetv2-s1", width_scale=scale))
    c = espnetv2_widths(scale)
    unused = (c[1] - c[0]) + c[1] + c[2]  # the strided EESP widths of levels 2, 3, 4
    assert count_params(EESPEncoder(spec)) == reference - unused


def test_widths_follow_the_espnetv2_rule():
    assert espnetv2_widths(0.5) == [16, 32, 64, 128, 256]
    assert espnetv2_widths(1.25) == [32, 80, 160, 320, 640]
    assert espnetv2_widths(2.0) == [32, 128, 256, 512, 1024]


def test_r_lim_dilations():
    assert espnetv2_dilations(13) == [1, 2, 3, 4]
    assert espnetv2_dilations(7) == [1, 1, 2, 3]
    assert espnetv2_dilations(5) == [1, 1, 1, 2]


@pytest.mark.parametrize("width, expected", [(128, 7_136), (256, 24_512), (512, 89_984)])
def test_eesp_unit_params(width, expected):
    assert count_params(EESP(width, width, [1, 2, 3, 4], groups=4)) == expected


@pytest.mark.parametrize(
    "width, channels, expected", [(64, (64, 128, 256), 316_544), (128, (128, 256, 512), 1_247_488)]
)
def test_jpu_params_match_fastfcn(width, channels, expected):
    jpu = JPU(channels, width, (1, 2, 4, 8))
    assert count_params(jpu) == expected == 9 * width * sum(channels) + 12 * width**2 + 146 * width
    feats = [torch.randn(1, c, 23 // 2**i + 1, 31 // 2**i + 1) for i, c in enumerate(channels)]
    assert jpu(*feats).shape == (1, 4 * width, *feats[0].shape[-2:])


def test_ejpnet_reading_is_near_the_published_figures():
    """V4/V7: 1352 read as thousands, 517 M as conv MACs at 512x256 (see the space file)."""
    model = build(SPACE.baseline("ejpnet"))
    params = count_params(model)
    assert params == 1_309_802
    assert abs(params - 1.352e6) / 1.352e6 < 0.05
    macs = count_macs(model, (256, 512)).conv_macs
    assert abs(macs - 517e6) / 517e6 < 0.05, macs


@pytest.mark.parametrize(
    "hw, out", [((32, 64), (16, 32)), ((33, 65), (17, 33)), ((45, 60), (5, 6)), ((12, 15), (18, 23))]
)
def test_exportable_adaptive_pool_equals_torch(hw, out):
    x = torch.randn(2, 3, *hw)
    torch.testing.assert_close(adaptive_avg_pool2d(x, out), F.adaptive_avg_pool2d(x, out), rtol=0, atol=1e-6)


def test_baselines_are_feasible_at_their_sizes():
    for name in SPACE.baselines:
        for hw in [(360, 480), (512, 1024), (361, 479)]:
            assert check(SPACE.baseline(name).params, hw) == Findings(), (name, hw)


def test_three_branch_units_need_divisible_widths():
    # s=1: widths 128 / 256 are not divisible by the 3 branches of {4,5,6}.
    params = params_of("ejpnet", width_scale=1.0)
    findings = check(params, (360, 480))
    reasons = findings.infeasible
    assert findings.degenerate == []
    assert any(r.startswith("eesp1_dilations=[4, 5, 6]") for r in reasons), reasons
    assert any(r.startswith("eesp2_dilations=[6, 7, 8]") for r in reasons), reasons
    with pytest.raises(ConfigError, match="eesp1_dilations"):
        build(ArchConfig("ejpnet", params, 11))


def test_groups_must_divide_branch_widths():
    reasons = check(params_of("espnetv2-s1", width_scale=0.75), (360, 480)).infeasible
    assert any("eesp_groups=4" in r and "level2 downsampler" in r for r in reasons), reasons


def test_dilations_larger_than_the_map_are_degenerate_and_rejected_on_request():
    # At 64x96 the stride-32 map is 2x3 and the stride-8 map 8x12.
    findings = check(params_of("ejpnet"), (64, 96))
    reasons = findings.degenerate
    assert findings.infeasible == []
    assert any(r.startswith("eesp3_dilations=[1, 3, 6, 8]: dilation 8 >= 3") for r in reasons), reasons
    assert any(r.startswith("eesp2_dilations=[6, 7, 8]") for r in reasons), reasons
    findings = check(params_of("ejpnet", jpu_dilations=[1, 2, 4, 8]), (32, 48))
    assert findings.infeasible == []
    assert any(r.startswith("jpu_dilations=[1, 2, 4, 8]") for r in findings.degenerate), findings
    config = ArchConfig("ejpnet", params_of("ejpnet"), 11)
    assert SPACE.check(config, (64, 96)) == reasons
    with pytest.raises(InfeasibleArchitecture, match="eesp3_dilations"):
        SPACE.check(config, (64, 96), degenerate="reject")


def test_space_rejects_infeasible_samples_with_reasons():
    trial = optuna.trial.FixedTrial(SPACE.encode(params_of("ejpnet", width_scale=1.0)))
    with pytest.raises(InfeasibleArchitecture, match="eesp1_dilations"):
        SPACE.sample(trial)


def test_pc_feeds_the_input_reinforcement():
    model = build(SPACE.baseline("ejpnet"))
    reinforce = model.encoder.downsamplers[0].reinforce
    assert model.encoder.pc.out_channels == 1 and reinforce.project[0][0].in_channels == 1
    rgb = build(ArchConfig("ejpnet", params_of("ejpnet", ir_source="image"), 30))
    assert rgb.encoder.downsamplers[0].reinforce.project[0][0].in_channels == 3
    with torch.no_grad():  # the RGB image, not the 1-channel PC output, reaches the reinforcement
        for net in (model.eval(), rgb.eval()):
            assert net(torch.randn(1, 3, 64, 96)).shape == (1, 30, 64, 96)


@pytest.mark.parametrize("name", ["ejpnet", "espnetv2-s0.5"])
def test_odd_small_input_gives_logits_of_input_size(name):
    config = SPACE.baseline(name)
    with torch.no_grad():
        out = build(config).eval()(torch.randn(1, 3, 97, 131))
    assert out.shape == (1, config.num_classes, 97, 131)


def test_sampled_architectures_build_and_run():
    drawn = SPACE.sample_feasible(10, seed=3, attempts_per_sample=1)
    assert all(drawn.rejections)
    built = 0
    for config in drawn.configs:
        model = build(config).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 64, 96))
        assert out.shape == (1, config.num_classes, 64, 96)
        built += 1
    assert built >= 4
