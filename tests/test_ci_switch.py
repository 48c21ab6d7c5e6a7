"""Without ../shared/data the marked tests skip with a reason; under PNEUMOCAM_REQUIRE_SHARED=1 (CI) they fail."""

import os
import subprocess
import sys
from pathlib import Path


def run_marked_tests(tmp_path, require: bool):
    env = os.environ | {
        "PNEUMOCAM_SHARED_DATA": str(tmp_path / "absent"),
        "PNEUMOCAM_REQUIRE_SHARED": "1" if require else "0",
    }
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/test_data_shared.py",
            "-k",
            "discovery_counts",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_shared_data_skips_with_a_reason(tmp_path):
    result = run_marked_tests(tmp_path, require=False)
    assert result.returncode == 0 and "1 skipped" in result.stdout and "needs the shared data" in result.stdout


def test_ci_turns_the_skip_into_a_failure(tmp_path):
    result = run_marked_tests(tmp_path, require=True)
    assert result.returncode != 0 and "PNEUMOCAM_REQUIRE_SHARED=1 but the shared data is missing" in result.stdout
