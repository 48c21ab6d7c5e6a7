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
if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test's two workers on two cores: one compute thread each, also in the subprocesses they start. Two each
    # oversubscribe the cores: a DenseNet121 Grad-CAM pass ran 26x slower beside a second busy process (0.8 s -> 21 s).
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
# Tests compare runs and commands to each other at 1e-6 and check that training is deterministic: `auto` means fp32
# here (also in the subprocesses they start). tests/test_precision.py checks what auto picks without it, and bf16.
os.environ.setdefault("PNEUMOCAM_AUTO_PRECISION", "fp32")


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

    return write_phantom_dataset(
        tmp_path_factory.mktemp("phantoms"), {"train": 24, "val": 6, "test": 8}, size=64, seed=3
    )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def make_dicom(path, pixels, photometric="MONOCHROME2", with_pixels=True, **extra):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    for key, value in extra.items():
        setattr(ds, key, value)
    if with_pixels:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def write_dicom():
    """write_dicom(path, pixels, photometric, **tags): a 16-bit (12 stored) CR DICOM file written with pydicom."""
    return make_dicom


def tiny_experiment(phantom_data, **overrides):
    """A few-second experiment on the phantom set: frozen, random init, 64 px, 2 epochs, small draws."""
    from pneumocam.pipeline.experiment import ExperimentConfig
    from pneumocam.train.config import TrainConfig

    train = TrainConfig(
        data=str(phantom_data.images),
        mode="frozen",
        weights="none",
        image_size=64,
        epochs=2,
        batch_size=16,
        val_source="dataset",
        seed=2,
        use_cache=False,
    )
    values = dict(
        train=train,
        eval_split="test",
        n_per_class=5,
        n_draws=50,
        bootstrap=50,
        grid_per_class=2,
        masks={"lesion": str(phantom_data.lesion_masks), "lungs": str(phantom_data.lung_masks)},
        synthetic=True,
    )
    return ExperimentConfig(**(values | overrides))


@pytest.fixture(scope="session")
def tiny_config(phantom_data):
    """tiny_config(**overrides) -> the tiny experiment's ExperimentConfig on the phantom set."""
    return lambda **overrides: tiny_experiment(phantom_data, **overrides)


@pytest.fixture(scope="session")
def tiny_run(tiny_config, tmp_path_factory):
    """One finished tiny run folder, shared by the tests that only read it."""
    from pneumocam.pipeline.experiment import run_experiment

    # Every film in the statistics: a guard fitted on 48 phantoms flags a machine-dependent few of the 16 test films,
    # which would leave the tests that read this run at the mercy of that count (leaving flagged films out is
    # tested on hand-made verdicts in test_experiment.py).
    return run_experiment(tiny_config(include_ood=True), runs_dir=tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def tiny_data(tiny_run):
    """The dataset folder the tiny run recorded: what a viewer serving its films is given as --data-root."""
    import json

    return Path(json.loads((tiny_run / "results.json").read_text())["provenance"]["data"])


@pytest.fixture(scope="session")
def tiny_checkpoint(phantom_data, tmp_path_factory):
    """A training folder: frozen head on random features, 32 px, one epoch, selected on the phantom val split."""
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    config = TrainConfig(
        data=str(phantom_data.images),
        mode="frozen",
        weights="none",
        image_size=32,
        epochs=1,
        batch_size=16,
        val_source="dataset",
        seed=1,
        use_cache=False,
    )
    return fit(config, runs_dir=tmp_path_factory.mktemp("runs"))


def _start_serve(*args: str):
    """(process, base URL) of `pneumocam serve ARGS` started as from a terminal on a free loopback port, once it
    answers /api/health. A job started in the background (CI scripts, nohup) inherits SIGINT ignored: restored."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "pneumocam", "serve", "--port", str(port), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return process, base


@pytest.fixture
def start_serve():
    """start_serve(*args) -> (process, base URL): `pneumocam serve` as users start it (see _start_serve)."""
    return _start_serve


@pytest.fixture(scope="module")
def start_serve_once():
    """The same, for module-scoped fixtures."""
    return _start_serve
