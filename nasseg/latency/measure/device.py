"""What this machine is: CPU name, whether it is a Jetson (and which), its power mode, software versions."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import torch

_DEVICE_TREE_MODEL = Path("/proc/device-tree/model")

# Substrings of the device-tree model string, most specific first ("Orin Nano" before "Nano").
_JETSON_MODELS = (
    ("orin nano", "jetson-orin-nano"),
    ("agx orin", "jetson-agx-orin"),
    ("xavier nx", "jetson-xavier-nx"),
    ("agx", "jetson-agx-xavier"),  # some L4T releases name the AGX Xavier just "Jetson-AGX"
    ("tx2", "jetson-tx2"),
    ("nano", "jetson-nano"),
)


def cpu_name() -> str:
    """The CPU's model name, with its CPUID family and model where /proc/cpuinfo has them.

    Virtual machines often show a generic name ("Intel(R) Xeon(R) Processor") for different
    generations; the family and model tell them apart, and timings do not transfer between them.
    """
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        return platform.processor() or platform.machine()
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def cpu_device(threads: int) -> str:
    """How a CPU measurement names its device: the CPU and the threads it was allowed."""
    return f"{cpu_name()} ({threads} thread{'s' if threads > 1 else ''})"


def jetson_model() -> str | None:
    """The board's model string (e.g. 'NVIDIA Jetson AGX Orin Developer Kit'), None off a Jetson."""
    try:
        model = _DEVICE_TREE_MODEL.read_text().strip("\x00\n ")
    except OSError:
        return None
    return model if "jetson" in model.lower() else None


def jetson_target_of(model: str) -> str | None:
    """The registry name for a device-tree model string, None if it is not one of ours."""
    lowered = model.lower()
    return next((name for key, name in _JETSON_MODELS if key in lowered), None)


def parse_nvpmodel(output: str) -> str | None:
    """The mode name from ``nvpmodel -q`` output ('NV Power Mode: MAXN' -> 'MAXN')."""
    match = re.search(r"NV Power Mode:\s*(\S+)", output)
    return match.group(1) if match else None


def power_mode() -> str | None:
    """The active nvpmodel mode, None where nvpmodel is absent or does not answer."""
    nvpmodel = shutil.which("nvpmodel")
    if nvpmodel is None:
        return None
    try:
        done = subprocess.run([nvpmodel, "-q"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_nvpmodel(done.stdout)


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def software_versions(*extra_packages: str) -> dict[str, str]:
    """Python, torch (with its CUDA / cuDNN where built with them), nasseg and the named packages."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    if torch.version.cuda:
        versions["cuda"] = torch.version.cuda
        if torch.backends.cudnn.is_available():
            versions["cudnn"] = str(torch.backends.cudnn.version())
    for name in ("nasseg", *extra_packages):
        version = package_version(name)
        if version:
            versions[name] = version
    if (jetpack := _jetpack_release()) is not None:
        versions["l4t"] = jetpack
    return versions


def _jetpack_release() -> str | None:
    """The L4T release line of a Jetson (e.g. '# R35 (release), REVISION: 3.1'), None elsewhere."""
    try:
        return Path("/etc/nv_tegra_release").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
