"""Pyramid ShuffleNet V2 family: counts against ShuffleNet V2 and the paper's Table IV, the pyramid and
Vortex blocks, check() findings, odd input sizes and sampled networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasseg.blocks.shuffle import PyramidDepthwise, ShuffleBasicUnit, ShuffleDownUnit, shuffle_stage
from nasseg.blocks.vortex import VortexPooling
from nasseg.errors import ConfigError, InfeasibleArchitecture
from nasseg.models import ArchConfig, Findings, build, get_family
from nasseg.models.pyramid_shufflenet import PyramidShuffleNetConfig, feature_sizes
from nasseg.profile import count_macs, count_params
from nasseg.spaces import load_space

FAMILY = get_family("pyramid_shufflenet")

SPACE = load_space("pyramid_shufflenet")
TABLE_IV = ["shufflenetv2", "pyd-shufflenetv2", "pyd-shufflenetv2-vp", "pyramid-shufflenet"]
# Paper Table IV (millions, Cityscapes, 19 classes).
PUBLISHED_PARAMS = {
    "shufflenetv2": 1.68e6,
    "pyd-shufflenetv2": 2.10e6,
    "pyd-shufflenetv2-vp": 10.42e6,
    "pyramid-shufflenet": 2.69e6,
}
# Our counts under decisions P1-P5 (no public code exists; see docs/pyramid_shufflenet.md).
OUR_PARAMS = {
    "shufflenetv2": 1_313_655,
    "pyd-shufflenetv2": 1_646_343,
    "pyd-shufflenetv2-vp": 6_132_231,
    "pyramid-shufflenet": 2_351_559,
}
# fvcore MACs of the paper's network at Table II's 512x1024 (the paper gives no FLOPs: a regression pin).
OUR_MACS_512 = {"pyramid-shufflenet": 14_460_940_288}


def rel(ours: float, target: float) -> float:
    return (ours - target) / target


def model_of(name: str, **overrides) -> nn.Module:
    config = SPACE.baseline(name)
    return build(ArchConfig(config.family, {**config.params, **overrides}, config.num_classes))


def encoder_params(model: nn.Module) -> int:
    return sum(count_params(getattr(model, part)) for part in ("stem", "stage1", "stage2", "stage3"))


# ----- counts --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TABLE_IV)
def test_params_of_table_iv_rows(name):
    ours = count_params(model_of(name))
    assert ours == OUR_PARAMS[name]
    assert SPACE.baselines[name].published.params == PUBLISHED_PARAMS[name]


def test_paper_network_within_15_percent_of_published():
    assert abs(rel(count_params(model_of("pyramid-shufflenet")), 2.69e6)) <= 0.15


def test_table_iv_ordering_holds():
    counts = [
        count_params(model_of(n))
        for n in ("shufflenetv2", "pyd-shufflenetv2", "pyramid-shufflenet", "pyd-shufflenetv2-vp")
    ]
    assert counts == sorted(counts) and len(set(counts)) == 4


def test_encoder_matches_shufflenet_v2_and_the_reference_arithmetic():
    # torchvision ShuffleNet V2 1.0x through stage4 (reference 5.1); stride and dilation change no count.
    assert encoder_params(model_of("shufflenetv2")) == 776_420
    assert encoder_params(model_of("shufflenetv2", stage3_stride=2, stage3_dilations=[1, 1, 1])) == 776_420
    # Reference 5.4: literal pyramid reading 1,109,108; 1x1 left branch 1,106,132; sum merge 862,260.
    assert encoder_params(model_of("pyd-shufflenetv2")) == 1_109_108
    assert encoder_params(model_of("pyd-shufflenetv2", down_left_kernel=1)) == 1_106_132
    assert encoder_params(model_of("pyd-shufflenetv2", pyramid_merge="sum")) == 862_260
    # BN placement (P3) does not change the count when the outputs are concatenated.
    assert encoder_params(model_of("pyd-shufflenetv2", pyramid_bn="each")) == 1_109_108


def test_stages_match_torchvision_shufflenet_v2():
    assert [
        count_params(s) for s in (shuffle_stage(24, 116, 4), shuffle_stage(116, 232, 8), shuffle_stage(232, 464, 4))
    ] == [30_192, 244_180, 501_352]


def test_vortex_conv_weights_match_the_reference_arithmetic():
    vp = VortexPooling(464, 256, (1, 3, 9, 27), separable=True)
    branch_weights = sum(m.weight.numel() for b in vp.branches for m in b.modules() if isinstance(m, nn.Conv2d))
    assert branch_weights == 491_840  # 4 x (9 * 464 + 464 * 256), reference 5.4
    assert vp.image_pool.conv.weight.numel() == 118_784
    dense = VortexPooling(464, 256, (1, 3, 9, 27), separable=False)
    dense_weights = sum(m.weight.numel() for b in dense.branches for m in b.modules() if isinstance(m, nn.Conv2d))
    assert dense_weights == 4_276_224  # four 3x3 convs 464 -> 256: not the paper's 8.3 M (decision P1)


def test_macs_at_512x1024():
    macs = count_macs(model_of("pyramid-shufflenet"), (512, 1024))
    assert abs(rel(macs.macs, OUR_MACS_512["pyramid-shufflenet"])) <= 0.001, macs.macs
    assert abs(macs.cross_check_rel_diff) < 1e-3
    assert not macs.uncounted_ops


def test_ablation_is_table_iv_in_paper_order():
    (table,) = [a for a in SPACE.spec.ablations if a.name == "pyramid-shufflenet-table4"]
    assert table.rows == TABLE_IV


def test_every_decision_is_on_its_parameters():
    decisions = {d.id: d for d in SPACE.spec.decisions}
    assert sorted(decisions) == [f"P{i}" for i in range(1, 6)]
    for decision in decisions.values():
        for name in decision.affects:
            if name != "structure":
                assert SPACE.parameters[name].decision == decision.id or any(
                    d.id == SPACE.parameters[name].decision for d in decisions.values()
                ), name


# ----- blocks --------------------------------------------------------------------------------------
def test_pyramid_merge_is_eq_1():
    torch.manual_seed(0)
    block = PyramidDepthwise(6, (3, 5, 7), merge="hff", bn="each").eval()
    x = torch.randn(2, 6, 9, 11)
    c = [bn(dw(x)) for dw, bn in zip(block.convs, block.bns)]
    expected = torch.cat([c[0], c[0] + c[1], c[0] + c[1] + c[2]], dim=1)
    assert torch.allclose(block(x), expected, atol=1e-6)
    assert PyramidDepthwise(6, (3, 5, 7), merge="sum")(x).shape == (2, 6, 9, 11)
    assert PyramidDepthwise(6, (3, 5), stride=2, merge="concat")(x).shape == (2, 12, 5, 6)


def test_units_keep_or_halve_the_map():
    x = torch.randn(2, 24, 13, 17)
    assert ShuffleDownUnit(24, 116, 2, (3, 5, 7))(x).shape == (2, 116, 7, 9)
    assert ShuffleDownUnit(24, 116, 1, (3,), left_kernel=1)(x).shape == (2, 116, 13, 17)
    assert ShuffleBasicUnit(116, (3, 5, 7, 9), dilation=3)(torch.randn(1, 116, 7, 9)).shape == (1, 116, 7, 9)
    with pytest.raises(ConfigError, match="halves"):
        ShuffleBasicUnit(115)
    with pytest.raises(ConfigError, match="odd"):
        PyramidDepthwise(8, (3, 4))


def test_vortex_keeps_the_map_size_at_odd_sizes():
    x = torch.randn(2, 32, 23, 30)
    assert VortexPooling(32, 16, (1, 3, 9, 27))(x).shape == (2, 16, 23, 30)
    assert VortexPooling(32, 16, (1, 3, 9), separable=False, projection=False)(x).shape == (2, 64, 23, 30)
    with pytest.raises(ConfigError, match="odd size"):
        VortexPooling(32, 16, (1, 2, 4))


# ----- check and build -----------------------------------------------------------------------------
def test_baselines_are_feasible_at_camvid_and_cityscapes_sizes():
    for name in SPACE.baselines:
        params = SPACE.baseline(name).params
        for hw in ((360, 480), (361, 479), (512, 1024)):
            assert FAMILY.check(params, hw) == Findings(), (name, hw)


def test_feature_sizes_follow_table_ii():
    cfg = PyramidShuffleNetConfig()
    assert feature_sizes(cfg, (512, 1024)) == {
        "pool": (128, 256),
        "stage1": (64, 128),
        "stage2": (32, 64),
        "stage3": (32, 64),
    }
    assert feature_sizes(cfg, (360, 480))["stage3"] == (23, 30)


def test_vortex_rates_past_the_map_are_degenerate_and_rejected_on_request():
    params = SPACE.baseline("pyramid-shufflenet").params
    findings = FAMILY.check(params, (256, 384))  # Vortex acts on 16x24: 27 >= 24
    assert findings.infeasible == []
    (reason,) = findings.degenerate
    assert "vortex_rates" in reason and "[27]" in reason and "rates < 24" in reason
    assert SPACE.check(SPACE.baseline("pyramid-shufflenet"), (256, 384)) == [reason]
    with pytest.raises(InfeasibleArchitecture, match="vortex_rates"):
        SPACE.check(SPACE.baseline("pyramid-shufflenet"), (256, 384), degenerate="reject")


def test_dilations_and_kernels_past_the_map_are_degenerate():
    params = {**SPACE.baseline("shufflenetv2").params, "stage3_stride": 2, "stage3_dilations": [2, 4, 8]}
    findings = FAMILY.check(params, (96, 128))  # Stage3 map 3x4
    assert findings.infeasible == []
    assert any("stage3_dilations" in r and "dilations < 4" in r for r in findings.degenerate)
    params = {**SPACE.baseline("pyd-shufflenetv2").params, "pyramid_kernels": [3, 5, 7, 9]}
    findings = FAMILY.check(params, (40, 40))  # Stage2 map 3x3
    assert findings.infeasible == [] and any("pyramid_kernels" in r for r in findings.degenerate)
    with pytest.raises(InfeasibleArchitecture, match="pyramid_kernels"):
        SPACE.check(ArchConfig("pyramid_shufflenet", params, 19), (40, 40), degenerate="reject")


def test_check_names_bad_values_and_the_builder_refuses_them():
    base = dict(SPACE.baseline("pyramid-shufflenet").params)
    cases = {
        "width_multiplier": {"width_multiplier": 0.75},
        "vortex_rates": {"vortex_rates": [1, 2, 4]},
        "stage_repeats": {"stage_repeats": [4, 0, 4]},
        "head_stride": {"head_stride": 32},
        "down_left_kernel": {"down_left_kernel": 5},
        "unknown parameter": {"depth": 3},
    }
    for name, change in cases.items():
        params = {**base, **change}
        findings = FAMILY.check(params, (360, 480))
        reasons = findings.infeasible
        assert reasons and any(name in r for r in reasons) and findings.degenerate == [], (name, findings)
        with pytest.raises(ConfigError, match=name):
            FAMILY.build(params, 19)
    assert any("smaller than the encoder's output stride" in r for r in FAMILY.check(base, (12, 40)).infeasible)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"stage3_stride": 2, "head_stride": 16}, {"head_stride": 8, "vortex_projection": False, "head_kernel": 1}],
    ids=["paper", "stride32", "head8"],
)
def test_logits_have_the_input_size_at_odd_sizes(overrides):
    model = model_of("pyramid-shufflenet", **overrides).eval()
    with torch.no_grad():
        for hw in ((97, 131), (64, 96)):
            assert model(torch.randn(1, 3, *hw)).shape == (1, 19, *hw)


def test_sampled_architectures_build_and_run():
    drawn = SPACE.sample_feasible(6, seed=3, attempts_per_sample=1)
    assert all(all(r for r in reasons) for reasons in drawn.rejections)
    built = 0
    for config in drawn.configs:
        assert SPACE.validate(config.params) == dict(config.params)
        model = build(config).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 64, 96)).shape == (1, SPACE.spec.num_classes, 64, 96)
        built += 1
    assert built >= 4
