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


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def tree_state() -> str:
    """HEAD and every change to the tree, untracked files included (what a measurement ran on)."""
    try:
        return _git("rev-parse", "HEAD").strip() + "\n" + _git("status", "--porcelain", "--untracked-files=all")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def commit() -> str:
    """HEAD (+uncommitted changes, untracked files included), or PNEUMOCAM_RECORD_COMMIT when set: a copy of the tree
    elsewhere (the device tool's) can carry another checkout's .git, whose HEAD is not the tree that ran."""
    if os.environ.get("PNEUMOCAM_RECORD_COMMIT"):
        return os.environ["PNEUMOCAM_RECORD_COMMIT"]
    state = tree_state()
    if state == "unknown":
        return state
    head, _, changes = state.partition("\n")
    return head + ("+uncommitted changes" if changes.strip() else "")


def stamp() -> dict:
    """Commit, tree, machine, date and command, taken when measuring starts: write_record(stamped=...) keeps them and
    refuses to write when the tree changed while the measurement ran."""
    return {
        "commit": commit(),
        "tree": tree_state(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", *sys.argv]),
    }


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


def write_record(
    name: str, figures: dict, note: str = "", out: Path | None = None, stamped: dict | None = None
) -> Path:
    """benchmarks/results/NAME.json (or OUT/NAME.json): figures + command + commit + machine + date. stamped: what
    stamp() said when the measurement started (then kept, and the record refused if the tree changed since);
    without it the record is stamped now and says so."""
    if stamped is not None and tree_state() != stamped["tree"]:
        raise SystemExit(
            f"not writing {name}: the tree changed while it was measured (commit or files differ from its start)"
        )
    found = stamped or stamp()
    record = {
        "name": name,
        "figures": figures,
        "command": found["command"],
        "commit": found["commit"],
        "machine": found["machine"],
        "date": found["date"],
        "stamped": "when the measurement started" if stamped is not None else "when the record was written",
        "note": note,
    }
    folder = RESULTS if out is None else Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
