"""JetSeg: counts pinned against the paper and the authors' code, feasibility checks, sampled architectures.

Targets: shared/reference/architectures.md section 4 (the authors' code, with the dilation-0 convs patched
to dilation 1, J1) and the paper's Table 1. The generic checks (every baseline trains, exports to ONNX and
gives logits of the input size) live in tests/test_zoo.py.
"""

from __future__ import annotations

import optuna
import pytest
import torch

from nasseg.blocks.attention import ECA, SAM, eca_kernel_size
from nasseg.blocks.jetconv import JetConv, mean_divisor_groups
from nasseg.blocks.regseg_decoder import RegSegDecoder
from nasseg.errors import ConfigError, InfeasibleArchitecture
from nasseg.models import ArchConfig, Findings, build
from nasseg.models.jetseg import build as build_jetseg
from nasseg.models.jetseg import check, feature_map_sizes
from nasseg.profile import count_macs, count_params
from nasseg.spaces import load_space

SPACE = load_space("jetseg")
NANO = dict(SPACE.baseline("jetseg-nano").params)

A3, A5, A7 = "3x1+1x3", "5x1+1x5", "7x1+1x7"
# The authors' six kernel combinations (--jsc, architectures.md 4.4), repeated entries collapsed as their
# ModuleDict does, and their decoder-head indices as stage positions (index 1 and None are 'middle').
JSC: dict[int, dict] = {
    0: dict(
        stage0_kernels=[A7, "1x1", A5, "3x3"],
        stage1_residual_kernels=[A7, "3x3"],
        stage1_kernels=["3x3", A5, "1x1", A7],
        stage2_residual_kernels=[A5, "3x3"],
        stage2_kernels=["3x3", A5],
        stage3_residual_kernels=["3x3"],
        shallow_head_at="last",
        mid_head_at="last",
        deep_head_at="last",
    ),
    1: dict(
        stage0_kernels=[A7],
        stage1_residual_kernels=["7x7"],
        stage1_kernels=["3x3", A5, A7],
        stage2_residual_kernels=[A5],
        stage2_kernels=[A3, "5x5"],
        stage3_residual_kernels=[A3],
        shallow_head_at="first",
        mid_head_at="middle",
        deep_head_at="middle",
    ),
    2: dict(
        stage0_kernels=["7x7"],
        stage1_residual_kernels=["7x7"],
        stage1_kernels=[A3, "5x5", "7x7"],
        stage2_residual_kernels=["5x5"],
        stage2_kernels=[A3, "5x5"],
        stage3_residual_kernels=["3x3"],
        shallow_head_at="first",
        mid_head_at="last",
        deep_head_at="last",
    ),
    3: dict(
        stage0_kernels=[A7],
        stage1_residual_kernels=[A7],
        stage1_kernels=["3x3", A5, A7],
        stage2_residual_kernels=[A5],
        stage2_kernels=["3x3", A5],
        stage3_residual_kernels=["3x3"],
        shallow_head_at="first",
        mid_head_at="middle",
        deep_head_at="last",
    ),
    4: dict(
        stage0_kernels=[A7],
        stage1_residual_kernels=["7x7"],
        stage1_kernels=[A3, A5, A7],
        stage2_residual_kernels=["5x5"],
        stage2_kernels=[A3, A5],
        stage3_residual_kernels=["3x3"],
        shallow_head_at="first",
        mid_head_at="last",
        deep_head_at="last",
    ),
    5: dict(
        stage0_kernels=["7x7"],
        stage1_residual_kernels=["7x7"],
        stage1_kernels=["3x3", "5x5", "7x7"],
        stage2_residual_kernels=["5x5"],
        stage2_kernels=[A3, A5],
        stage3_residual_kernels=["3x3"],
        shallow_head_at="first",
        mid_head_at="first",
        deep_head_at="last",
    ),
}
CAMVID = [720, 960]  # (H, W) of the authors' camvid preset, 960x720


def point(config: str = "nano", design: list[int] | None = None, jsc: int = 0, **overrides) -> dict:
    params = {**NANO, "config": config, "design_input": design or [512, 512], **JSC[jsc], **overrides}
    return SPACE.validate(params)  # every pinned configuration is a point of the search space


def rel(ours: float, target: float) -> float:
    return abs(ours - target) / target


# ----- parameter counts ----------------------------------------------------------------------------
def test_nano_params_match_the_paper_and_the_authors_code():
    ours = count_params(build(SPACE.baseline("jetseg-nano")))
    assert ours == 32_140  # architectures.md 4.6, layer by layer
    assert rel(ours, 30_000) <= 0.10  # Table 1: "0.00003 G" (~30 K)


@pytest.mark.parametrize(("baseline", "target"), [("jetseg-agx", 358_085), ("jetseg-workstation", 1_302_969)])
def test_agx_and_workstation_params_match_the_authors_code(baseline, target):
    ours = count_params(build(SPACE.baseline(baseline)))
    assert rel(ours, target) <= 0.01
    assert ours == target


# architectures.md 4.7: every mode x jsc the authors' code builds, 32 classes.
OFFICIAL_PARAMS = {
    ("nano", (512, 512)): [32_140, 32_448, 34_361, 31_632, 32_016, 31_945],
    ("nano", (720, 960)): [34_578, 34_694, 36_799, 34_070, 34_454, 34_383],
    ("agx", (720, 960)): [358_085, 338_025, 365_042, 354_249, 360_457, 354_066],
    ("workstation", (720, 960)): [1_302_969, 1_230_141, 1_316_838, 1_295_357, 1_307_773, 1_278_502],
}


@pytest.mark.parametrize("key", list(OFFICIAL_PARAMS), ids=lambda k: f"{k[0]}-{k[1][0]}x{k[1][1]}")
def test_every_kernel_combination_matches_the_authors_code(key):
    config, design = key
    ours = [count_params(build_jetseg(point(config, list(design), jsc), 32)) for jsc in range(6)]
    assert ours == OFFICIAL_PARAMS[key]


def test_class_count_and_design_input_change_params_as_in_the_authors_code():
    assert count_params(build_jetseg(point(jsc=0), 11)) == 30_775
    assert count_params(build_jetseg(point(jsc=2), 11)) == 32_996
    assert count_params(build_jetseg(point(design=[1024, 2048]), 32)) == 37_016  # 8 feature-map sizes


def test_feature_map_lists():
    assert [s[1] for s in feature_map_sizes([512, 512])] == [512, 256, 128, 64, 32, 16]
    assert feature_map_sizes([720, 960]) == [
        (720, 960),
        (360, 480),
        (180, 240),
        (90, 120),
        (45, 60),
        (23, 30),
        (12, 15),
    ]
    assert len(feature_map_sizes([1024, 2048])) == 8


# ----- multiply-accumulates ------------------------------------------------------------------------
def test_nano_macs_match_the_paper_and_the_authors_code():
    macs = count_macs(build(SPACE.baseline("jetseg-nano")), (512, 512))
    assert rel(macs.macs, 1.125e9) <= 0.10  # Table 1, the paper's eq. 2
    assert rel(macs.macs, 1.115e9) <= 0.01  # eq. 2 as the authors' hooks count it
    # thop (1.100 G on the authors' code) charges conv MACs, including the discarded deep branch that runs
    # eagerly (torch's flop counter sees it; fvcore's trace prunes it), plus 2 per BN output.
    thop_like = macs.flop_counter_macs + 2 * macs.by_operator["batch_norm"]
    assert rel(thop_like, 1.100e9) <= 0.01


@pytest.mark.parametrize(("baseline", "target"), [("jetseg-agx", 37.74e9), ("jetseg-workstation", 145.2e9)])
def test_agx_and_workstation_macs_match_the_authors_count(baseline, target):
    macs = count_macs(build(SPACE.baseline(baseline)), (720, 960))
    assert rel(macs.macs, target) <= 0.01  # eq. 2 as the authors' hooks count it, jsc 0, 960x720


# ----- blocks --------------------------------------------------------------------------------------
def test_group_rule_and_eca_kernel():
    pairs = {(8, 16): 4, (16, 16): 8, (16, 32): 8, (32, 32): 8, (64, 64): 16, (64, 48): 8, (48, 48): 12, (3, 8): 1}
    assert {p: mean_divisor_groups(*p) for p in pairs} == pairs
    assert [eca_kernel_size(c) for c in (16, 48, 64, 128, 512)] == [3, 3, 3, 5, 5]
    assert count_params(ECA(64)) == 3 and count_params(SAM(32)) == 32


def test_jetconv_modes_and_asymmetric_dilation_keep_the_size():
    x = torch.randn(1, 16, 13, 17)
    seq = JetConv(16, 16, ["3x3", A5, A7], residual=True, pair_dilation={5: 2, 7: 3})
    par = JetConv(16, 32, ["3x3", A5, A7], stride=2, mode="parallel", pair_dilation={5: 2, 7: 3})
    assert seq(x).shape == x.shape and par(x).shape == (1, 32, 7, 9)
    # Same depthwise weights; the parallel 1x1 sees the three branches concatenated (48 -> 32, 8 groups).
    assert count_params(seq) == 16 * (9 + 10 + 14) + 16 * 16 // 8
    assert count_params(par) == 16 * (9 + 10 + 14) + 48 * 32 // 8


def test_regseg_decoder_expresses_regseg_itself():
    # RegSeg: heads 128/128/8 on /16, /8, /4; 3x3 fuse and final convs of 64; merge at /8.
    decoder = RegSegDecoder((320, 256, 48), (128, 128, 8), 19, 64, 64, 3, 3, merge_at="mid", deep="fuse")
    out = decoder(torch.randn(1, 320, 4, 6), torch.randn(1, 256, 8, 11), torch.randn(1, 48, 15, 22))
    assert out.shape == (1, 19, 15, 22)


# ----- variants, odd sizes, feasibility ------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        dict(deep_head="fuse"),
        dict(jetconv_mode="parallel", activation="tanhexp", groups="dense"),
        dict(decoder_merge="mid", decoder_kernel=3, activation="relu", groups="gcd"),
        dict(stage1_attention="eca", stage2_attention="cbam", stage3_attention="none", pair3_dilation=2, jsc=1),
    ],
    ids=["fuse-deep", "parallel-tanhexp-dense", "regseg-merge-relu-gcd", "attention-swap-jsc1"],
)
def test_variants_give_logits_of_any_input_size(overrides):
    overrides = dict(overrides)
    jsc = overrides.pop("jsc", 0)
    for config in ("nano", "agx"):
        model = build_jetseg(point(config, CAMVID, jsc, **overrides), 11).eval()
        with torch.no_grad():
            for hw in ((61, 97), (96, 64)):
                assert model(torch.randn(1, 3, *hw)).shape == (1, 11, *hw)


def test_dropping_the_deep_head_leaves_no_dead_parameter():
    params = {k: v for k, v in point().items() if not k.startswith("stage3") and k != "deep_head_at"}
    params["deep_head"] = "drop"
    torch.manual_seed(0)
    model = build_jetseg(SPACE.validate(params), 11).train()
    assert count_params(model) == 32_140 - 11_164 - (32 - 11) * (64 + 1)  # J3: dead blocks and head removed
    model(torch.randn(2, 3, 64, 96)).square().mean().backward()
    # Every parameter is on the path to the output. (A zero gradient is not the test: CBAM's
    # one-unit channel MLP can start with a dead ReLU under some initialisations.)
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_baselines_are_feasible_at_the_inputs_they_must_run_at():
    for name in SPACE.baselines:
        for hw in ((360, 480), (512, 1024), (361, 479), (512, 512)):
            assert check(SPACE.baseline(name).params, hw) == Findings(), (name, hw)


def test_a_dilation_wider_than_the_feature_map_is_degenerate_and_names_the_parameter():
    params = point(design=[1024, 2048], stage3_residual_kernels=["3x3", A5], pair5_dilation=3)
    findings = check(params, (360, 480))  # the last stage runs on a 3x4 map there
    reasons = findings.degenerate
    assert findings.infeasible == []
    assert reasons and all("pair5_dilation=3" in r and "stage3_residual_kernels" in r for r in reasons)
    assert check(params, (1024, 2048)) == Findings()
    config = ArchConfig("jetseg", params, 11)
    assert SPACE.check(config, (360, 480)) == reasons
    with pytest.raises(InfeasibleArchitecture, match="pair5_dilation"):
        SPACE.check(config, (360, 480), degenerate="reject")
    with pytest.raises(InfeasibleArchitecture, match="pair5_dilation"):
        SPACE.sample(optuna.trial.FixedTrial(SPACE.encode(params)))


def test_invalid_values_are_reported_by_check_and_refused_by_build():
    bad = {
        "stage2_kernels": ["3x3", "3x3"],
        "stage1_kernels": ["4x4"],
        "design_input": [128, 128],
        "config": "tx2",
    }
    for name, value in bad.items():
        params = {**point(), name: value}
        findings = check(params, (360, 480))
        reasons = findings.infeasible
        assert len(reasons) == 1 and name in reasons[0] and findings.degenerate == [], findings
        with pytest.raises(ConfigError, match=name):
            build_jetseg(params, 11)


def test_sampled_architectures_build_and_run():
    drawn = SPACE.sample_feasible(6, seed=3, attempts_per_sample=1)
    assert all(all("dilation" in r for r in reasons) for reasons in drawn.rejections)
    built = 0
    for config in drawn.configs:
        model = build(config).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 64, 96)).shape == (1, 11, 64, 96)
        built += 1
    assert built >= 4
