"""Where a number came from: library versions, time, machine."""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for package in (
        "pneumocam",
        "torch",
        "torchvision",
        "numpy",
        "scipy",
        "scikit-learn",
        "grad-cam",
        "pillow",
        "pydicom",
        "matplotlib",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def environment() -> dict[str, str]:
    import torch  # deferred: a report is rendered from a run folder without importing torch

    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "platform": platform.platform(),
        "cpu_threads": str(torch.get_num_threads()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
