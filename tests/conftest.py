import os
from pathlib import Path

import numpy as np
import pytest

# ../shared/data beside the repository; PNEUMOCAM_SHARED_DATA points elsewhere (the CI-switch test uses it).
SHARED = Path(os.environ.get("PNEUMOCAM_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
KERMANY = SHARED / "kermany224"
LUNG_MASKS = SHARED / "kermany224-lungmasks"
FULLRES = SHARED / "kermany-fullres-sample"

os.environ.setdefault("PNEUMOCAM_NO_PROGRESS", "1")


def pytest_runtest_setup(item):
    """Tests marked shared_data skip without ../shared/data, unless CI requires it (then they fail)."""
    if "shared_data" not in item.keywords or KERMANY.is_dir():
        return
    if os.environ.get("PNEUMOCAM_REQUIRE_SHARED") == "1":
        pytest.fail(f"PNEUMOCAM_REQUIRE_SHARED=1 but the shared data is missing at {SHARED}")
    pytest.skip(f"needs the shared data at {SHARED} (absent on this machine)")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Image caches go to a per-session temporary folder, never into the user's home or shared data."""
    monkeypatch.setenv("PNEUMOCAM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch-home"))


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory):
    """A small phantom dataset in the Kermany layout (train/val/test), 64 px."""
    from pneumocam.data.phantoms import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantoms"), {"train": 24, "val": 6, "test": 8}, size=64, seed=3)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
