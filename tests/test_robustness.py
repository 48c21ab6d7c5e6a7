"""Messy folders as users have them: every case completes with skips listed, or stops with one clear message."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from pneumocam.core.outputs import atomic_write_bytes, is_complete, write_skipped
from pneumocam.data import discover, load_images


def film(path, value=120, size=40):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "messy"
    normal, pneu = root / "test" / "NORMAL", root / "test" / "PNEUMONIA"
    film(normal / "IM-0001-0001.png")
    film(normal / "name with spaces.png")
    film(normal / "ünïcödé-名前.png")
    film(normal / "deep" / "nested" / "IM-0002-0001.png")
    (normal / "empty.jpeg").write_bytes(b"")
    (normal / "page.jpeg").write_text("<html>not an image</html>")
    (normal / "._IM-0001-0001.png").write_bytes(b"\0\0")  # macOS resource fork
    (normal / ".DS_Store").write_bytes(b"\0")
    (normal / "Thumbs.db").write_bytes(b"\0")
    os.symlink(normal / "IM-0001-0001.png", normal / "link-to-film.png")
    os.symlink(normal / "loop.png", normal / "loop.png")
    os.symlink(tmp_path / "nowhere.png", normal / "dangling.png")
    os.symlink(normal, normal / "deep" / "folder-loop")  # a link back up: must not be followed
    raw = os.fsencode(str(normal)) + b"/bad-\xff\xfe-name.png"
    film(pneu / "person1_virus_1.png")
    with open(raw, "wb") as f:
        Image.fromarray(np.full((40, 40), 90, dtype=np.uint8)).save(f, format="PNG")
    (root / "test" / "COVID").mkdir()
    film(root / "test" / "COVID" / "x.png")
    return root


def test_messy_folder_reads_good_files_and_lists_every_skip(messy, tmp_path):
    index = discover(messy)
    assert index.ignored_hidden == 3 and any(f.endswith("COVID") for f in index.unknown_folders)
    loaded = load_images(index.split("test"), 32, use_cache=False)
    names = {os.path.basename(p) for p in loaded.paths}
    assert {
        "IM-0001-0001.png",
        "name with spaces.png",
        "ünïcödé-名前.png",
        "IM-0002-0001.png",
        "link-to-film.png",
        "person1_virus_1.png",
    } <= names
    assert any(n.startswith("bad-") for n in names)  # non-UTF-8 bytes in the name still read
    reasons = {os.path.basename(s.path): s.reason for s in loaded.skipped}
    assert reasons == {
        "empty.jpeg": "empty file (0 bytes)",
        "page.jpeg": reasons["page.jpeg"],
        "loop.png": "symbolic link loop",
        "dangling.png": "file not found (a broken link?)",
    }
    assert reasons["page.jpeg"].startswith("not a readable image")
    write_skipped(tmp_path / "skipped.csv", loaded.skipped)
    assert (tmp_path / "skipped.csv").read_text().count("\n") == 5


def test_one_image_in_a_class_is_enough_to_discover(tmp_path):
    film(tmp_path / "d" / "test" / "NORMAL" / "a.png")
    film(tmp_path / "d" / "test" / "PNEUMONIA" / "b.png")
    assert discover(tmp_path / "d").counts() == {"test": {"NORMAL": 1, "PNEUMONIA": 1}}


def test_non_utf8_paths_survive_csv_and_json_outputs(tmp_path):
    from pneumocam.core.outputs import write_json
    from pneumocam.data import Skipped

    weird = os.fsdecode(b"/data/bad-\xff.png")
    write_skipped(tmp_path / "s.csv", [Skipped(weird, "reason")])
    write_json(tmp_path / "s.json", {"path": weird})
    assert "bad-\\udcff.png" in (tmp_path / "s.csv").read_text(encoding="utf-8")
    assert (tmp_path / "s.json").read_text(encoding="utf-8").count("\\udcff") == 1


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("previous result")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new result that does not fit")
    assert target.read_text() == "previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


def first_epoch_done(runs, pattern: str, state: str, timeout: float = 120):
    """The run folder, once a background command has saved its first epoch's state there."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        folders = list(runs.glob(pattern))
        if folders and (folders[0] / state).exists():
            return folders[0]
        time.sleep(0.05)
    raise AssertionError("training never finished an epoch")


def test_sigterm_is_handled_as_ctrl_c_with_the_resume_command(tmp_path, capsys):
    """SIGTERM during a command (a job killed by a scheduler) ends it like Ctrl-C: exit status 130, the folder named
    with its --resume command, no traceback. The whole path, a training subprocess interrupted by SIGINT and resumed,
    is test_an_interrupted_run_exits_130_and_resumes_in_one_command below; train's resume gives the same weights
    (test_train.py). Here the signal is sent to this process from inside the action."""
    import typer

    from pneumocam.cli.app import _interruptible

    folder = tmp_path / "train-1"

    def action():
        started.append(folder)
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not stop the action")

    started: list = []
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(typer.Exit) as stopped:
        _interruptible(started, action, "train")
    assert stopped.value.exit_code == 130 and signal.getsignal(signal.SIGTERM) == previous  # handler restored
    err = capsys.readouterr().err  # the command on one line, whatever the console's width
    assert "marked incomplete" in err and f"pneumocam train --resume {folder}" in err and "Traceback" not in err


def test_a_run_lists_skipped_files_in_skipped_csv_and_the_escaped_report(phantom_data, tmp_path):
    import shutil

    from pneumocam.pipeline.experiment import ExperimentConfig, run_experiment
    from pneumocam.train.config import TrainConfig

    root = tmp_path / "data"
    shutil.copytree(phantom_data.images, root)
    (root / "test" / "NORMAL" / "<img src=x onerror=alert(1)>.png").write_bytes(b"")
    (root / "test" / "PNEUMONIA" / "truncated.jpeg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    config = ExperimentConfig(
        train=TrainConfig(
            data=str(root), weights="none", image_size=64, epochs=1, val_source="dataset", use_cache=False
        ),
        n_per_class=5,
        n_draws=20,
        bootstrap=20,
        trust_images=0,
        regions=False,
    )
    run = run_experiment(config, runs_dir=tmp_path / "runs")
    skipped = (run / "skipped.csv").read_text()
    assert "<img src=x onerror=alert(1)>.png,empty file (0 bytes)" in skipped and "truncated.jpeg" in skipped
    html = (run / "report.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html and "<img src=x" not in html


def _valid_film(fmt: str, tmp_path) -> bytes:
    """A small valid film in one of the formats the reader opens."""
    pixels = (np.arange(64 * 80).reshape(64, 80) % 251).astype(np.uint8)
    if fmt == "DICOM":
        from pydicom.dataset import FileDataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(tmp_path / "v.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, generate_uid(), "CR"
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 64, 80, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = pixels.tobytes()
        ds.save_as(tmp_path / "v.dcm", enforce_file_format=True)
        return (tmp_path / "v.dcm").read_bytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's warning on fuzzed TIFF headers: expected here
@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow and pydicom warn on some mutated headers: expected here
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP", "DICOM"])
def test_mutated_films_never_crash_the_reader_and_the_fuzz_reaches_the_decoders(tmp_path, fmt):
    """Valid films with bytes flipped and tails cut: each read gives a film or UnreadableImage with a reason, and
    the examples are counted: some must still decode (the fuzz reaches past the header into the decoder) and some
    must be refused (it reaches the error paths)."""
    from hypothesis import given, settings
    from hypothesis import strategies as hs

    from pneumocam.data import UnreadableImage, read_grayscale

    valid = _valid_film(fmt, tmp_path)
    path = tmp_path / ("fuzz.dcm" if fmt == "DICOM" else f"fuzz.{fmt.lower()}")
    reached = {"decoded": 0, "refused": 0}

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)  # the same examples every run
    @given(
        hs.lists(hs.tuples(hs.integers(0, len(valid) - 1), hs.integers(0, 255)), max_size=3),
        hs.just(len(valid)) | hs.integers(len(valid) // 2, len(valid)),  # whole or cut
    )
    def check(flips, keep):
        mutated = bytearray(valid[:keep])
        for where, value in flips:
            if where < len(mutated):
                mutated[where] = value
        path.write_bytes(bytes(mutated))
        try:
            gray = read_grayscale(path)
        except UnreadableImage as exc:
            assert str(exc)
            reached["refused"] += 1
        else:
            assert gray.dtype == np.uint8 and gray.ndim == 2
            reached["decoded"] += 1

    check()
    assert reached["decoded"] >= 3 and reached["refused"] >= 3, reached


def test_every_torch_load_in_the_package_is_weights_only():
    import pathlib
    import re

    source = pathlib.Path(__file__).resolve().parents[1] / "src" / "pneumocam"
    calls = [
        (f.name, m.group(0)) for f in source.rglob("*.py") for m in re.finditer(r"torch\.load\([^)]*\)", f.read_text())
    ]
    assert calls and all("weights_only=True" in call for _, call in calls), calls


@pytest.mark.parametrize("signum", [signal.SIGINT])
def test_an_interrupted_run_exits_130_and_resumes_in_one_command(phantom_data, tmp_path, signum):
    env = os.environ | {"PNEUMOCAM_NO_PROGRESS": "1"}
    command = [
        sys.executable,
        "-m",
        "pneumocam.cli",
        "run",
        "--data",
        str(phantom_data.images),
        "--out",
        str(tmp_path / "runs"),
        "--weights",
        "none",
        "--mode",
        "full",
        "--image-size",
        "32",
        "--epochs",
        "12",  # the signal lands mid-training (>= 3 s of epochs left even on a fast machine); resuming runs the rest
        "--batch-size",
        "8",
        "--val-source",
        "dataset",
        "--max-per-class",
        "8",
        "--n-per-class",
        "4",
        "--n-draws",
        "20",
        "--trust-images",
        "0",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    run = first_epoch_done(tmp_path / "runs", "run-*", "train/checkpoints/last.pt")
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "marked incomplete" in output and "Traceback" not in output
    assert f"pneumocam run --resume {run}" in output  # on one line, whatever the console's width
    assert not is_complete(run) and not (run / "report.html").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "pneumocam.cli", "run", "--resume", str(run)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert is_complete(run) and is_complete(run / "train") and (run / "report.html").is_file()
    assert "resuming" in resumed.stdout
    history = json.loads((run / "train" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 13))
