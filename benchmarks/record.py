"""A benchmark's result record: its figures with the exact command, the commit, the machine and the date, written
as one small JSON file under benchmarks/results/ (committed: the README's figures come from these)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2")
                return [f for f in line.split(":", 1)[1].split() if f in wanted]
    except OSError:
        pass
    return []


def commit() -> str:
    """HEAD (+uncommitted changes), or PNEUMOCAM_RECORD_COMMIT when set: a copy of the tree elsewhere (the device
    tool's) can carry another checkout's .git, whose HEAD is not the tree that ran."""
    if os.environ.get("PNEUMOCAM_RECORD_COMMIT"):
        return os.environ["PNEUMOCAM_RECORD_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, check=True)  # fmt: skip
        return head.stdout.strip() + ("+uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    import torch

    return {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_record(name: str, figures: dict, note: str = "", out: Path | None = None) -> Path:
    """benchmarks/results/NAME.json (or OUT/NAME.json): figures + command + commit + machine + date."""
    record = {
        "name": name,
        "figures": figures,
        "command": " ".join(["python", *sys.argv]),
        "commit": commit(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "note": note,
    }
    folder = RESULTS if out is None else Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
