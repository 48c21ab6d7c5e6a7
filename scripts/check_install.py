"""Check the installed pneumocam as a user gets it: where it is installed from (a wheel or the source tree), and
that the viewer's static files are in the installed package, the same files as the source tree's.

    python scripts/check_install.py        # exits 1 with the reason when a file is missing or differs
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import sys
from pathlib import Path

SOURCE_STATIC = Path(__file__).resolve().parents[1] / "src" / "pneumocam" / "serve" / "static"


def install_kind() -> str:
    """'editable' when pip installed the source tree in place, else 'wheel' (PEP 610's direct_url.json)."""
    direct = importlib.metadata.distribution("pneumocam").read_text("direct_url.json")
    editable = bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))
    return "editable" if editable else "wheel"


def main() -> int:
    static = importlib.resources.files("pneumocam.serve") / "static"
    installed = {entry.name: entry.read_bytes() for entry in static.iterdir() if entry.is_file()}
    expected = sorted(p.name for p in SOURCE_STATIC.iterdir() if p.is_file()) if SOURCE_STATIC.is_dir() else []
    problems = [f"missing from the installed package: {name}" for name in expected if name not in installed]
    problems += [
        f"differs from the source tree: {name}"
        for name in expected
        if name in installed and installed[name] != (SOURCE_STATIC / name).read_bytes()
    ]
    if not installed:
        problems.append("the installed package has no viewer static files")
    import pneumocam

    print(f"pneumocam {pneumocam.__version__}: {install_kind()} install at {Path(pneumocam.__file__).parent}")
    print(f"viewer static files in the package: {', '.join(sorted(installed)) or 'none'}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
