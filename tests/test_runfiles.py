"""A run folder, a results file or a film someone shared is hostile input: each hostile file is built here, and the
loader (core/runfiles.py), the viewer and the command line must refuse it with a status or exit code and a message,
with bounded memory (the peak of what Python and numpy allocate, measured by tracemalloc around the call) and no
traceback."""

import io
import json
import os
import shutil
import tracemalloc
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from pneumocam.core.runfiles import (
    ParsedCache,
    RunFileError,
    nesting_depth,
    read_heatmaps_checked,
    read_json,
    read_results,
)

LOOPBACK = "http://127.0.0.1:8000"
BOUND = 300 * 2**20  # the memory any one hostile file may cost


def peak_of(call):
    """(what call returned or raised, the peak bytes traced while it ran)."""
    tracemalloc.start()
    try:
        try:
            outcome = call()
        except Exception as exc:  # noqa: BLE001 - the refusal is the outcome under test
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def sparse_file(path, size: int):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def npz_with_member(path, name: str, shape: tuple, dtype="<f4", zero_bytes: int | None = None):
    """An .npz holding one array `name` of `shape`, written as zeros streamed through deflate (a few MB on disk for
    gigabytes in memory), beside small valid paths / probs / image_size members."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    n = shape[0] if shape else 1
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            left = int(np.prod(shape)) * np.dtype(dtype).itemsize if zero_bytes is None else zero_bytes
            block = bytes(1 << 20)
            while left > 0:
                member.write(block[: min(left, len(block))])
                left -= len(block)
        for key, value in (
            ("paths", np.array([f"f{i}.png" for i in range(n)])),
            ("probs", np.full(n, 0.5, np.float32)),
            ("image_size", np.array(224)),
            ("maps", np.zeros((n, 7, 7), np.float32)),
        ):
            if key != name:
                buffer = io.BytesIO()
                np.save(buffer, value)
                archive.writestr(f"{key}.npy", buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def map_bomb(tmp_path_factory):
    """A 1 MB heatmaps.npz whose maps are one 16384 x 16384 float32 map of zeros: 1 GB once loaded."""
    return npz_with_member(tmp_path_factory.mktemp("bomb") / "heatmaps.npz", "maps", (1, 16384, 16384))


# ------------------------------------------------------------------------------------------- the loader
def test_nesting_depth_counts_by_hand():
    assert nesting_depth(1) == 0 and nesting_depth([]) == 1 and nesting_depth({"a": [1, {"b": 2}]}) == 3


def test_a_huge_sparse_results_json_is_refused_by_its_size_before_it_is_read(tmp_path):
    path = sparse_file(tmp_path / "results.json", 2**30)  # 1 GB, a few KB on disk
    refused, peak = peak_of(lambda: read_json(path))
    assert isinstance(refused, RunFileError) and "over the 32 MB" in str(refused) and peak < 2**20


@pytest.mark.parametrize("depth", [100_000, 40])
def test_deep_json_is_refused(tmp_path, depth):
    path = tmp_path / "results.json"
    path.write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(RunFileError, match="nests deeper than 32"):
        read_json(path)
    path.write_text('{"a": ' + "[" * 20 + "]" * 20 + "}")
    assert read_json(path)["a"]  # 21 deep: read


@pytest.mark.parametrize(
    "change, named",
    [
        ({"metrics": "a string"}, "metrics"),
        ({"provenance": "a string"}, "provenance"),
        ({"metrics": {"x": {}}}, "x"),
        ({"populations": "a string"}, "populations"),
        ({"populations": {"by_stratum": {"view": {"AP": {"n": "many"}}}}}, "AP"),
    ],
)
def test_results_of_the_wrong_types_are_refused_naming_the_key(tiny_run, tmp_path, change, named):
    results = json.loads((tiny_run / "results.json").read_text()) | change
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(RunFileError) as refused:
        read_results(tmp_path / "results.json")
    assert named in str(refused.value) and "\n" not in str(refused.value)


def test_a_map_bomb_is_refused_from_its_header_before_anything_is_loaded(map_bomb):
    bomb = map_bomb
    assert bomb.stat().st_size < 8 * 2**20
    refused, peak = peak_of(lambda: read_heatmaps_checked(bomb))
    assert isinstance(refused, RunFileError) and peak < 8 * 2**20
    assert "sides of 1 to 256" in str(refused) or "over 512 MB in memory" in str(refused)


@pytest.mark.parametrize(
    "name, shape, dtype, reason",
    [
        ("maps", (1, 1, 8000), "<f4", "sides of 1 to 256"),
        ("maps", (1, 0, 7), "<f4", "sides of 1 to 256"),
        ("maps", (1, 7, 7), "<U4", "floats"),
        ("image_size", (), "<f8", "one whole number"),  # NaN or any float
        ("image_size", (), "<U8", "one whole number"),
        ("image_size", (3,), "<i8", "one whole number"),
        ("probs", (1,), "<U3", "one number per film"),
    ],
)
def test_heatmaps_of_the_wrong_shape_or_type_are_refused(tmp_path, name, shape, dtype, reason):
    path = npz_with_member(tmp_path / "heatmaps.npz", name, shape, dtype)
    with pytest.raises(RunFileError, match=reason):
        read_heatmaps_checked(path)


def test_an_image_size_out_of_range_is_refused(tmp_path):
    path = tmp_path / "heatmaps.npz"
    np.savez(path, paths=np.array(["a.png"]), maps=np.zeros((1, 7, 7), np.float32), probs=np.zeros(1), image_size=99999)
    with pytest.raises(RunFileError, match="outside"):
        read_heatmaps_checked(path)


def test_parsed_files_are_parsed_once_per_version(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"a": 1}')
    calls = []
    cache = ParsedCache(size=2)

    def parse(p):
        calls.append(p)
        return read_json(p)

    assert cache.get(path, parse) == cache.get(path, parse) == {"a": 1}
    assert len(calls) == 1
    path.write_text('{"a": 22}')  # another size: another version
    assert cache.get(path, parse) == {"a": 22} and len(calls) == 2


# ------------------------------------------------------------------------------------------- the viewer
@pytest.fixture(scope="module")
def hostile(tiny_run, tiny_data, tmp_path_factory):
    """(runs folder, a good copy of the tiny run in it, a client serving it with the tiny data as its data root);
    one server for the module: each test adds its own run folders under their own names."""
    from pneumocam.serve.app import create_app

    root = tmp_path_factory.mktemp("hostile") / "runs"
    good = root / "good"
    shutil.copytree(tiny_run, good)
    app = create_app(tiny_run / "train" / "model.pt", runs=root, device="cpu", data_roots=(tiny_data,))
    with TestClient(app, base_url=LOOPBACK) as client:
        yield root, good, client


def _copy(good, root, name, results=None):
    run = root / name
    shutil.copytree(good, run)
    if results is not None:
        (run / "results.json").write_text(results if isinstance(results, str) else json.dumps(results))
    return run


def test_broken_runs_are_listed_with_their_reason_within_the_memory_bound(hostile):
    root, good, client = hostile
    results = json.loads((good / "results.json").read_text())
    _copy(good, root, "deep", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _copy(good, root, "metrics-string", results | {"metrics": "broken"})
    sparse_file(_copy(good, root, "huge") / "results.json", 2**30)
    reply, peak = peak_of(lambda: client.get("/api/runs"))
    assert reply.status_code == 200 and peak < BOUND
    listed = {r["name"]: r["error"] for r in reply.json()}
    assert listed["good"] is None
    assert "nests deeper" in listed["deep"] and "metrics" in listed["metrics-string"]
    assert "over the 32 MB" in listed["huge"]


def test_a_film_route_on_broken_files_is_a_422_never_a_500(hostile, map_bomb):
    root, good, client = hostile
    film = _films(good)[0]
    results = json.loads((good / "results.json").read_text())
    cases = {"provenance-string": results | {"provenance": "x"}}
    for name, broken in cases.items():
        _copy(good, root, name, broken)
    nan_size = _copy(good, root, "nan-size")
    stored = dict(np.load(nan_size / "heatmaps.npz"))
    np.savez(nan_size / "heatmaps.npz", **(stored | {"image_size": np.array(float("nan"))}))
    bomb = _copy(good, root, "bomb")
    shutil.copyfile(map_bomb, bomb / "heatmaps.npz")
    for name in ("provenance-string", "nan-size", "bomb"):
        reply, peak = peak_of(lambda name=name: client.get(f"/api/runs/{name}/film", params={"path": film}))
        assert reply.status_code == 422, (name, reply.text)
        assert reply.json()["detail"] and "Traceback" not in reply.text and peak < BOUND, name


def _films(run):
    import csv

    with open(run / "predictions.csv", newline="") as f:
        return [r["path"] for r in csv.DictReader(f)]


@pytest.mark.parametrize("claimed", ["//", "/", "elsewhere"])
def test_a_run_may_not_claim_a_dataset_outside_the_data_roots(hostile, tmp_path, claimed):
    """A run that names the file system's root (as '//' too), or any folder outside the server's --data-root, as
    its dataset: its listed films there are never sent."""
    root, good, client = hostile
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = elsewhere / "secret.png"
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(secret)
    name = {"//": "claims-double-slash", "/": "claims-root", "elsewhere": "claims-elsewhere"}[claimed]
    run = _copy(good, root, name)
    results = json.loads((run / "results.json").read_text())
    results["provenance"]["data"] = str(elsewhere) if claimed == "elsewhere" else claimed
    (run / "results.json").write_text(json.dumps(results))
    rows = (run / "predictions.csv").read_text().splitlines()
    rows.append(rows[1].replace(rows[1].split(",")[0], str(secret), 1))
    (run / "predictions.csv").write_text("\n".join(rows) + "\n")
    stored = dict(np.load(run / "heatmaps.npz"))
    stored["paths"] = np.concatenate([stored["paths"], [str(secret)]])
    stored["maps"] = np.concatenate([stored["maps"], stored["maps"][:1]])
    stored["probs"] = np.concatenate([stored["probs"], stored["probs"][:1]])
    np.savez(run / "heatmaps.npz", **stored)
    reply = client.get(f"/api/runs/{name}/film", params={"path": str(secret)})
    assert reply.status_code == 404
    good_film = _films(good)[0]
    assert client.get("/api/runs/good/film", params={"path": good_film}).status_code == 200  # inside the data root


def test_refusals_carry_the_protective_headers_and_a_json_body(hostile):
    _, _, client = hostile
    foreign = client.get("/api/health", headers={"host": "127.0.0.2"})
    cross = client.post("/api/predict", headers={"origin": "http://localhost:9"}, files={"file": ("a.png", b"x")})
    for reply, status in ((foreign, 400), (cross, 403)):
        assert reply.status_code == status and reply.json()["detail"]
        assert "default-src 'none'" in reply.headers["content-security-policy"]
        assert reply.headers["x-content-type-options"] == "nosniff" and reply.headers["x-frame-options"] == "DENY"
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TGA"])
def test_uploads_in_formats_outside_the_allow_list_never_reach_their_plugins(hostile, fmt):
    _, _, client = hostile
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(buffer, format=fmt)
    reply = client.post("/api/predict", files={"file": (f"film.{fmt.lower()}", buffer.getvalue())})
    assert reply.status_code == 422 and "not a readable image" in reply.json()["detail"]


def test_an_rgba_film_over_the_budget_by_its_planes_is_refused_before_decoding(hostile):
    """A 6000 x 6000 RGBA PNG is 36 MP, inside the 64 MP budget by pixels, but decodes to 4 planes of 36 M: refused
    from its header (the old reader held 650 MB for it)."""
    _, _, client = hostile
    buffer = io.BytesIO()
    Image.new("RGBA", (6000, 6000), (90, 90, 90, 255)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 2**20
    reply = client.post("/api/predict", files={"file": ("film.png", buffer.getvalue())})
    assert reply.status_code == 422 and "6000x6000 x4 channels = 144.0 MP" in reply.json()["detail"]


def test_an_eps_upload_never_starts_ghostscript(hostile, monkeypatch):
    import subprocess

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or (_ for _ in ()).throw(OSError()))
    _, _, client = hostile
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    reply = client.post("/api/predict", files={"file": ("film.eps", eps)})
    assert reply.status_code == 422 and started == []


def test_a_wildcard_allowed_host_is_refused(tiny_run):
    from pneumocam.core.errors import SettingError
    from pneumocam.serve.app import create_app

    with pytest.raises(SettingError, match="not a pattern"):
        create_app(tiny_run / "train" / "model.pt", device="cpu", extra_hosts=("*",))


def test_a_data_root_at_the_file_system_root_is_refused(tiny_run):
    from pneumocam.core.errors import PneumocamError
    from pneumocam.serve.app import create_app

    with pytest.raises(PneumocamError, match="file system's root"):
        create_app(tiny_run / "train" / "model.pt", device="cpu", data_roots=("//",))


# ------------------------------------------------------------------------------------------- the command line
def _cli(*args):
    from pneumocam.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_serve_refuses_a_port_out_of_range_without_a_traceback(tiny_run):
    result = _cli("serve", "--checkpoint", tiny_run / "train" / "model.pt", "--port", "99999")
    assert result.exit_code == 2 and "Traceback" not in result.output and "65535" in result.output


@pytest.mark.parametrize(
    "content, says",
    [(b"", "not readable JSON"), (bytes(range(256)), "not readable JSON"), (b"[" * 50_000, "nests deeper"),
     (b'{"provenance": 1, "metrics": {}}', "provenance")],
)  # fmt: skip
def test_report_on_a_broken_results_json_is_exit_2_with_the_reason(tiny_run, tmp_path, content, says):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "results.json").write_bytes(content)
    result = _cli("report", run)
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_report_never_writes_over_a_users_file(tiny_run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my own notes")
    result = _cli("report", tiny_run, "--out", mine)
    assert result.exit_code == 2 and "already holds report.html" in result.output
    assert (mine / "report.html").read_text() == "my own notes"
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x")
    result = _cli("report", tiny_run, "--out", a_file)
    assert result.exit_code == 2 and "is a file" in result.output and a_file.read_text() == "x"
    assert _cli("report", tiny_run, "--out", tmp_path / "fresh").exit_code == 0


def test_a_figure_linked_out_of_the_run_is_not_embedded(tiny_run, tmp_path):
    import base64

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    outside = tmp_path / "private.png"
    Image.fromarray(np.full((40, 40), 3, np.uint8)).save(outside)
    (run / "figures" / "heatmaps.png").unlink()
    os.symlink(outside, run / "figures" / "heatmaps.png")
    assert _cli("report", run).exit_code == 0
    html = (run / "report.html").read_text()
    assert base64.b64encode(outside.read_bytes()).decode()[:200] not in html


def test_predict_exits_2_when_no_file_could_be_read(tiny_run, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    folder = tmp_path / "a-folder.png"
    folder.mkdir()
    result = _cli("predict", "--checkpoint", tiny_run / "train" / "model.pt", broken, folder, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "none of the 2 files" in result.output and "Traceback" not in result.output


def test_stats_refuses_values_whose_squares_overflow(tmp_path):
    scores = tmp_path / "scores.csv"
    rows = [
        f"{i}.png,{label},{value}"
        for i, (label, value) in enumerate([("NORMAL", 1e308)] * 3 + [("PNEUMONIA", 1.0)] * 3)
    ]
    scores.write_text("path,label,score\n" + "\n".join(rows) + "\n")
    result = _cli("stats", scores, "--score", "score", "--n-per-class", "3")
    assert result.exit_code == 2 and "overflow" in result.output and "Cohen" not in result.output


def test_a_deflated_dicom_bomb_is_refused_before_pydicom_inflates_it(tmp_path, write_dicom):
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from pneumocam.data.readers import UnreadableImage, read_grayscale

    plain = write_dicom(tmp_path / "plain.dcm", np.zeros((4000, 4000), np.uint16))  # 32 MB of pixels
    ds = pydicom.dcmread(plain)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert (tmp_path / "deflated.dcm").stat().st_size < 2**20
    refused, peak = peak_of(lambda: read_grayscale(tmp_path / "deflated.dcm", max_pixels=1_000_000))
    assert isinstance(refused, UnreadableImage) and "deflated DICOM inflates past" in str(refused)
    assert peak < 8 * 2**20  # pydicom alone would have inflated 32 MB first
    small = write_dicom(tmp_path / "small.dcm", np.full((64, 64), 500, np.uint16))
    ds = pydicom.dcmread(small)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "small-deflated.dcm", enforce_file_format=True)
    assert read_grayscale(tmp_path / "small-deflated.dcm").shape == (64, 64)  # a deflated film within budget reads
