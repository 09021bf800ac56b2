"""The devices a latency can be for: six Jetsons (with specs and power modes), the host CPU, a local GPU.

Every Jetson fact comes from ``shared/reference/jetson.md`` section 1 and carries its source tag
([S1]..[S27], keyed at the end of that file). A dagger (†) marks figures that reference derives as
cores × clock × ops/clock; "not verified" is kept where the reference says so, because a predictor
fitted on these numbers should know which ones are soft.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

from nasseg.errors import UnknownPowerMode, UnknownTarget

TargetKind = Literal["jetson", "host-cpu", "cuda"]


@dataclass(frozen=True)
class PowerMode:
    """One nvpmodel mode and the caps that matter for GPU latency.

    ``gpu_max_mhz`` is None where the reference does not give the cap (the mode exists, its clock is unknown).
    """

    name: str
    nvpmodel_id: int | None
    gpu_max_mhz: float | None
    source: str
    tpcs_active: int | None = None  # None: all TPCs on
    emc_max_mhz: float | None = None
    mem_bandwidth_gbs: float | None = None  # only where the mode changes it (Orin Nano Super)
    factory_default: bool = False
    note: str = ""


@dataclass(frozen=True)
class GpuSpec:
    """The integrated GPU of a Jetson module. Peaks are dense (no structured sparsity)."""

    arch: str
    compute_capability: str
    sms: int
    cuda_cores: int
    tensor_cores: int
    tpcs: int | None  # texture processing clusters, where a power mode gates them (Orin); else None
    max_clock_mhz: float
    fp32_tflops: float
    fp16_tflops: float
    int8_tops: float | None  # None: no fast INT8 path on this GPU
    mem_bandwidth_gbs: float
    l2_kb: int
    memory: str
    dla: str
    sources: dict[str, str]  # field name -> source tag(s) and caveats


# The newest opset nasseg exports: Resize with half_pixel / align_corners and every op the families use.
EXPORT_OPSET = 17
# The newest ONNX opset the ONNX parser of each TensorRT release reads, by (major, minor), as the
# operator matrix on that release's branch of onnx-tensorrt states it (docs/operators.md, e.g. branch
# release/8.2-GA: "TensorRT 8.2 supports operators up to Opset 13"; release/10.0: "the inclusive range
# of opset 9 to opset 20"). A release between two rows parses at least what the older row does.
TENSORRT_MAX_OPSET: dict[tuple[int, int], int] = {
    (8, 0): 13,
    (8, 2): 13,
    (8, 4): 13,
    (8, 5): 17,
    (8, 6): 17,
    (10, 0): 20,
}
TENSORRT_OPSET_SOURCE = "github.com/onnx/onnx-tensorrt docs/operators.md on the release's branch"


def tensorrt_release(version: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT version as packages ("8.2.1.8") or trtexec's tag ("8201", "100300") write it."""
    text = str(version).strip()
    if text.isdigit() and len(text) >= 4:
        number = int(text)
        return (number // 10000, number // 100 % 100) if number >= 100000 else (number // 1000, number // 100 % 10)
    found = re.match(r"(\d+)\.(\d+)", text)
    if not found:
        raise UnknownTarget(f"{version!r} is not a TensorRT version")
    return int(found.group(1)), int(found.group(2))


def max_onnx_opset(tensorrt: str) -> int:
    """The newest ONNX opset that TensorRT ``tensorrt``'s parser reads (TENSORRT_MAX_OPSET)."""
    release = tensorrt_release(tensorrt)
    known = [r for r in TENSORRT_MAX_OPSET if r <= release]
    if not known:
        oldest = ".".join(map(str, min(TENSORRT_MAX_OPSET)))
        raise UnknownTarget(f"TensorRT {tensorrt} predates {oldest}, the oldest release whose ONNX opsets nasseg knows")
    return TENSORRT_MAX_OPSET[max(known)]


def onnx_opset(tensorrt: str) -> int:
    """The opset nasseg exports for TensorRT ``tensorrt``: its own, unless that parser stops earlier."""
    return min(EXPORT_OPSET, max_onnx_opset(tensorrt))


@dataclass(frozen=True)
class Software:
    """Newest JetPack the board supports and the TensorRT / CUDA it ships."""

    jetpack: str
    tensorrt: str
    cuda: str
    source: str

    @property
    def onnx_opset(self) -> int:
        """The ONNX opset nasseg exports for this TensorRT."""
        return onnx_opset(self.tensorrt)


@dataclass(frozen=True)
class Target:
    name: str
    kind: TargetKind
    description: str
    precisions: tuple[str, ...]  # what a measurement or estimate may use, the default first
    gpu: GpuSpec | None = None
    software: Software | None = None
    power_modes: tuple[PowerMode, ...] = ()
    max_power_mode: str | None = None  # the mode benchmarks pin (nvpmodel -m 0 / MAXN): the default for latency
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_jetson(self) -> bool:
        return self.kind == "jetson"

    @property
    def default_precision(self) -> str:
        return self.precisions[0]

    def power_mode(self, name: str | None = None) -> PowerMode:
        """The named power mode, or the max-performance one when ``name`` is None."""
        if not self.power_modes:
            raise UnknownPowerMode(f"target {self.name!r} has no power modes")
        wanted = name or self.max_power_mode
        for mode in self.power_modes:
            if mode.name.lower() == str(wanted).lower():
                return mode
        valid = ", ".join(m.name for m in self.power_modes)
        raise UnknownPowerMode(f"{self.name} has no power mode {name!r}; its modes are: {valid}")

    def gpu_throughput_scale(self, mode_name: str | None = None) -> float:
        """GPU compute throughput in a mode relative to the spec peaks: clock cap × share of TPCs on.

        Raises when the reference does not give the mode's clock, rather than guessing.
        """
        if self.gpu is None:
            raise UnknownPowerMode(f"target {self.name!r} has no Jetson GPU spec")
        mode = self.power_mode(mode_name)
        if mode.gpu_max_mhz is None:
            raise UnknownPowerMode(
                f"{self.name} power mode {mode.name!r}: its GPU clock cap is not known ({mode.note or mode.source}); "
                f"use {self.max_power_mode!r} or a mode with a known clock"
            )
        tpc_share = mode.tpcs_active / self.gpu.tpcs if mode.tpcs_active and self.gpu.tpcs else 1.0
        return mode.gpu_max_mhz / self.gpu.max_clock_mhz * tpc_share

    def memory_bytes(self) -> int | None:
        """The memory a network's activations must fit in: a Jetson's DRAM (shared by CPU and GPU, from
        its spec's ``memory``, "8 GB ..." read as GiB as DRAM is sized), this machine's physical memory
        for host-cpu, the local GPU's for cuda; None where it cannot be known here."""
        if self.gpu is not None:
            found = re.match(r"\s*(\d+(?:\.\d+)?)\s*GB", self.gpu.memory)
            return int(float(found.group(1)) * 2**30) if found else None
        if self.kind == "host-cpu":
            try:
                return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (AttributeError, ValueError, OSError):  # not a POSIX system that reports it
                return None
        import torch  # cuda: only where a GPU is attached

        return int(torch.cuda.get_device_properties(0).total_memory) if torch.cuda.is_available() else None

    def mem_bandwidth_gbs(self, mode_name: str | None = None) -> float:
        """Memory bandwidth in a mode (the spec value unless the mode changes the memory clock's cap)."""
        if self.gpu is None:
            raise UnknownPowerMode(f"target {self.name!r} has no Jetson GPU spec")
        mode = self.power_mode(mode_name)
        return mode.mem_bandwidth_gbs or self.gpu.mem_bandwidth_gbs


_JP46 = Software("4.6.x", "8.2.1", "10.2", "[S1][S17]")
_JP51 = Software("5.1.x", "8.5.2", "11.4", "[S1][S18] (S18 is a weak source; standard NVIDIA release info)")
_JP6 = Software("6.1/6.2", "10.3", "12.6", "[S19][S20] (JetPack 5.x also possible)")

_DERIVED = "† cores × clock × ops/clock (jetson.md §1.1)"

_NANO = Target(
    name="jetson-nano",
    kind="jetson",
    description="Jetson Nano 4GB (Maxwell GM20B, 128 CUDA cores)",
    precisions=("fp16", "fp32"),
    gpu=GpuSpec(
        arch="Maxwell GM20B",
        compute_capability="5.3",
        sms=1,
        cuda_cores=128,
        tensor_cores=0,
        tpcs=None,
        max_clock_mhz=921.6,
        fp32_tflops=0.236,
        fp16_tflops=0.472,
        int8_tops=None,
        mem_bandwidth_gbs=25.6,
        l2_kb=256,
        memory="4 GB 64-bit LPDDR4",
        dla="none",
        sources={
            "arch": "[S3]",
            "sms": "[S3][S1]",
            "cuda_cores": "[S3][S1]",
            "max_clock_mhz": "[S2][S1] (deviceQuery 922 MHz [S3])",
            "fp32_tflops": _DERIVED,
            "fp16_tflops": "vendor headline [S1] (CUDA-core fp16x2)",
            "int8_tops": "no INT8 path on SM 5.3; NVIDIA benchmarks run Nano at FP16 [S2]",
            "mem_bandwidth_gbs": "[S1][S12]",
            "l2_kb": "[S3]",
        },
    ),
    software=_JP46,
    power_modes=(
        PowerMode("MAXN", 0, 921.6, "[S2][S21]", note="10W; jetson_benchmarks uses power_mode 0"),
        PowerMode("5W", 1, 640.0, "jetson.md §1.2 (no source)", note="~640 MHz, not verified; 2 CPU cores"),
    ),
    max_power_mode="MAXN",
)

_TX2 = Target(
    name="jetson-tx2",
    kind="jetson",
    description="Jetson TX2 (Pascal GP10B, 256 CUDA cores)",
    precisions=("fp16", "fp32"),
    gpu=GpuSpec(
        arch="Pascal GP10B",
        compute_capability="6.2",
        sms=2,
        cuda_cores=256,
        tensor_cores=0,
        tpcs=None,
        max_clock_mhz=1300.5,
        fp32_tflops=0.666,
        fp16_tflops=1.33,
        int8_tops=None,
        mem_bandwidth_gbs=58.4,
        l2_kb=512,
        memory="8 GB 128-bit LPDDR4",
        dla="none",
        sources={
            "arch": "[S4][S27]",
            "sms": "[S4]",
            "cuda_cores": "[S4]",
            "max_clock_mhz": "Max-N [S2][S9]",
            "fp32_tflops": _DERIVED,
            "fp16_tflops": _DERIVED + " (fp16x2)",
            "int8_tops": "no fast INT8 path (NVIDIA runs TX2 at FP16 [S2]); not verified verbatim",
            "mem_bandwidth_gbs": "[S13] (≈59.7 GB/s † from 128-bit @ 1866 MHz, not verified)",
            "l2_kb": "not verified",
        },
    ),
    software=_JP46,
    power_modes=(
        PowerMode("Max-N", 0, 1300.5, "[S9]", note="Denver2 ×2 + A57 ×4 @ 2.0 GHz"),
        PowerMode("Max-Q", 1, 850.0, "[S9]", note="A57 ×4 @ 1.2 GHz"),
        PowerMode("Max-P Core-All", 2, 1120.0, "[S9]"),
        PowerMode("Max-P ARM", 3, 1120.0, "[S9][S2]", note="NVIDIA's TX2 benchmark uses mode 3 + 1.12 GHz GPU"),
        PowerMode("Max-P Denver", 4, 1120.0, "[S9]"),
    ),
    max_power_mode="Max-N",
)

_XAVIER_NX = Target(
    name="jetson-xavier-nx",
    kind="jetson",
    description="Jetson Xavier NX 8GB (Volta, 384 CUDA cores, 48 tensor cores)",
    precisions=("fp16", "fp32", "int8"),
    gpu=GpuSpec(
        arch="Volta",
        compute_capability="7.2",
        sms=6,
        cuda_cores=384,
        tensor_cores=48,
        tpcs=None,
        max_clock_mhz=1100.0,
        fp32_tflops=0.845,
        fp16_tflops=6.76,
        int8_tops=13.5,
        mem_bandwidth_gbs=51.2,
        l2_kb=512,
        memory="8 GB 128-bit LPDDR4x",
        dla="2 × NVDLA v1 @ 1.1 GHz [S11]",
        sources={
            "arch": "[S5]",
            "sms": "[S5]",
            "cuda_cores": "[S5]",
            "tensor_cores": "[S5]",
            "max_clock_mhz": "[S5][S1]",
            "fp32_tflops": _DERIVED,
            "fp16_tflops": _DERIVED + " (tensor cores, 1024 FLOP/clk/SM)",
            "int8_tops": _DERIVED + " (board total 21 TOPS incl. 2 DLA [S5][S1])",
            "mem_bandwidth_gbs": "† datasheet EMC max 1600 MHz [S5] (Ultralytics table says 59.7 GB/s [S1])",
            "l2_kb": "not verified",
        },
    ),
    software=_JP51,
    power_modes=(
        PowerMode("20W", None, 1100.0, "[S23]"),
        PowerMode("15W", None, 1100.0, "[S23]"),
        PowerMode("10W", None, None, "[S23]", note="GPU cap lower than 1100 MHz, value not verified"),
        PowerMode("MAXN", None, 1100.0, "[S23]", note="add-on mode: GPU 1100 MHz, 2 DLA 1100 MHz"),
    ),
    max_power_mode="MAXN",
)

_AGX_XAVIER = Target(
    name="jetson-agx-xavier",
    kind="jetson",
    description="Jetson AGX Xavier 32GB (Volta, 512 CUDA cores, 64 tensor cores)",
    precisions=("fp16", "fp32", "int8"),
    gpu=GpuSpec(
        arch="Volta",
        compute_capability="7.2",
        sms=8,
        cuda_cores=512,
        tensor_cores=64,
        tpcs=None,
        max_clock_mhz=1377.0,
        fp32_tflops=1.41,
        fp16_tflops=11.3,
        int8_tops=22.6,
        mem_bandwidth_gbs=136.5,
        l2_kb=512,
        memory="32 GB 256-bit LPDDR4x",
        dla="2 × NVDLA v1 @ 1.4 GHz [S11]",
        sources={
            "arch": "[S1]",
            "sms": "[S1]",
            "cuda_cores": "[S1]",
            "tensor_cores": "[S1]",
            "max_clock_mhz": "[S1][S2]",
            "fp32_tflops": _DERIVED + " (wikichip 1.3 [S10])",
            "fp16_tflops": _DERIVED + " (tensor cores; wikichip's 20 TOPS [S10] does not fit the arithmetic)",
            "int8_tops": _DERIVED + " (board total 32 TOPS incl. 2 DLA [S1])",
            "mem_bandwidth_gbs": "[S1] (137 GB/s [S14])",
            "l2_kb": "not verified",
        },
    ),
    software=_JP51,
    power_modes=(
        PowerMode(
            "MAXN", 0, 1377.0, "[S2]", note="jetson_benchmarks --gpu_freq 1377000000 --power_mode 0; DLA 1395.2 MHz"
        ),
        PowerMode("10W", None, None, "[S22]", note="GPU cap lower than MAXN; the retrieved table is truncated"),
        PowerMode("15W", None, None, "[S22]", note="GPU cap lower than MAXN; the retrieved table is truncated"),
        PowerMode("30W", None, None, "[S22]", note="GPU cap lower than MAXN; the retrieved table is truncated"),
    ),
    max_power_mode="MAXN",
)

_ORIN_NANO = Target(
    name="jetson-orin-nano",
    kind="jetson",
    description="Jetson Orin Nano 8GB (Ampere GA10B, 1024 CUDA cores, 32 tensor cores; Super modes with JetPack 6.1+)",
    precisions=("fp16", "fp32", "int8"),
    gpu=GpuSpec(
        arch="Ampere GA10B",
        compute_capability="8.7",
        sms=8,
        cuda_cores=1024,
        tensor_cores=32,
        tpcs=4,
        max_clock_mhz=625.0,
        fp32_tflops=1.28,
        fp16_tflops=10.2,
        int8_tops=20.4,
        mem_bandwidth_gbs=68.0,
        l2_kb=2048,
        memory="8 GB 128-bit LPDDR5",
        dla="none (fused off) [S7]",
        sources={
            "arch": "[S6][S7]",
            "sms": "[S6][S1]",
            "cuda_cores": "[S6][S1]",
            "tensor_cores": "[S6]",
            "max_clock_mhz": "[S6] (original module; Super: 1020 MHz [S1][S7], see power modes)",
            "fp32_tflops": _DERIVED,
            "fp16_tflops": _DERIVED + " (tensor cores, 2043 FLOP/clk/SM)",
            "int8_tops": _DERIVED + " dense (40.9 sparse = vendor 40 TOPS [S6])",
            "mem_bandwidth_gbs": "[S7][S15] (Super: 102 GB/s)",
            "l2_kb": "Orin NX deviceQuery [S16]",
            "tpcs": "[S24] (4 TPCs, mask-gated in 7W mode)",
        },
    ),
    software=_JP6,
    power_modes=(
        PowerMode(
            "15W", 0, 625.0, "[S24]", factory_default=True, note="JetPack 5 / 6.0 (original module); GPU cap -1 = max"
        ),
        PowerMode("7W", 1, 408.0, "[S24]", tpcs_active=2, emc_max_mhz=2133.0, note="JetPack 5 / 6.0; TPC mask 252"),
        PowerMode(
            "15W-super", 0, 612.0, "[S25]", emc_max_mhz=2133.0, mem_bandwidth_gbs=68.0, note="JetPack 6.1+ (Super)"
        ),
        PowerMode(
            "25W-super",
            1,
            918.0,
            "[S25]",
            emc_max_mhz=3199.0,
            mem_bandwidth_gbs=102.0,
            note="JetPack 6.1+ (Super), the Super's default mode",
        ),
        PowerMode(
            "MAXN_SUPER",
            2,
            1020.0,
            "[S25][S1][S7]",
            mem_bandwidth_gbs=102.0,
            note="JetPack 6.1+ (Super); clocks uncapped",
        ),
    ),
    max_power_mode="15W",
    notes=(
        "The original module tops out at 625 MHz (15W); JetPack 6.1+ unlocks the Super modes up to 1020 MHz. "
        "Pick the power mode matching the board's JetPack.",
    ),
)

_AGX_ORIN = Target(
    name="jetson-agx-orin",
    kind="jetson",
    description="Jetson AGX Orin 64GB (Ampere GA10B, 2048 CUDA cores, 64 tensor cores)",
    precisions=("fp16", "fp32", "int8"),
    gpu=GpuSpec(
        arch="Ampere GA10B",
        compute_capability="8.7",
        sms=16,
        cuda_cores=2048,
        tensor_cores=64,
        tpcs=8,
        max_clock_mhz=1300.5,
        fp32_tflops=5.3,
        fp16_tflops=42.5,
        int8_tops=85.0,
        mem_bandwidth_gbs=204.8,
        l2_kb=4096,
        memory="64 GB 256-bit LPDDR5",
        dla="2 × NVDLA v2 @ 1.6 GHz [S11]",
        sources={
            "arch": "[S1]",
            "sms": "[S1][S8]",
            "cuda_cores": "[S1][S8]",
            "tensor_cores": "[S1][S8]",
            "max_clock_mhz": "[S1][S2]",
            "fp32_tflops": "[S8]",
            "fp16_tflops": _DERIVED + " (85 sparse)",
            "int8_tops": "[S8] GPU dense (170 sparse); board total 275 TOPS incl. DLA",
            "mem_bandwidth_gbs": "[S1]",
            "l2_kb": "[S8]",
            "tpcs": "[S26] (8 TPCs, mask-gated in 15W/30W)",
        },
    ),
    software=_JP6,
    power_modes=(
        PowerMode("MAXN", 0, 1300.5, "[S26]", note="clocks uncapped, all 8 TPCs"),
        PowerMode("15W", 1, 408.0, "[S26]", tpcs_active=3, emc_max_mhz=2133.0, note="TPC mask 248; DLA 614 MHz"),
        PowerMode(
            "30W",
            2,
            612.0,
            "[S26]",
            tpcs_active=4,
            factory_default=True,
            note="TPC mask 240; DLA 1369.6 MHz; about 0.24× MAXN GPU throughput",
        ),
        PowerMode("50W", 3, 816.0, "[S26]", note="8 TPCs; DLA 1369.6 MHz"),
    ),
    max_power_mode="MAXN",
    notes=("The factory default is 30W (4 of 8 TPCs at 612 MHz): published figures without a mode can be 4× off.",),
)

_HOST_CPU = Target(
    name="host-cpu",
    kind="host-cpu",
    description="this machine's CPU (measured with torch or onnxruntime)",
    precisions=("fp32",),
)

_CUDA = Target(
    name="cuda",
    kind="cuda",
    description="a CUDA GPU attached to this machine (measured with torch or onnxruntime)",
    precisions=("fp32", "fp16"),
)

_TARGETS: dict[str, Target] = {
    t.name: t for t in (_NANO, _TX2, _XAVIER_NX, _AGX_XAVIER, _ORIN_NANO, _AGX_ORIN, _HOST_CPU, _CUDA)
}


def target_names() -> list[str]:
    """All registered target names: the six Jetsons, then host-cpu and cuda."""
    return list(_TARGETS)


def get_target(name: str) -> Target:
    """The target called ``name``; an unknown name raises ``UnknownTarget`` listing the valid ones."""
    try:
        return _TARGETS[name]
    except KeyError:
        raise UnknownTarget(f"unknown target {name!r}; valid targets: {', '.join(_TARGETS)}") from None
