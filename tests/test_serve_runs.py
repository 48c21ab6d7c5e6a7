"""The viewer's run browser against hostile and broken run folders (serve/runs.py), through the real app: links out
of a run, unreadable runs in the list, bad table values, films without maps, a dataset built of links."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pneumocam.serve.app import create_app

LOOPBACK = "http://127.0.0.1:8000"


def _rows(run):
    with open(run / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(run, rows):
    with open(run / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _moved_films(run, renames: dict, **provenance) -> dict:
    """Rename the run's films everywhere it lists them (predictions.csv, heatmaps.npz) and set provenance keys;
    returns heatmaps.npz's arrays as written."""
    results = json.loads((run / "results.json").read_text())
    results["provenance"].update(provenance)
    (run / "results.json").write_text(json.dumps(results))
    _write_rows(run, [dict(r, path=renames[r["path"]]) for r in _rows(run)])
    with np.load(run / "heatmaps.npz") as f:
        stored = {k: f[k] for k in f.files}
    stored["paths"] = np.array([renames[str(p)] for p in stored["paths"]])
    np.savez(run / "heatmaps.npz", **stored)
    return stored


@pytest.fixture
def runs(tiny_run, tmp_path, tiny_data):
    """(runs folder, one good copy of the tiny run in it, a client serving it)."""
    root = tmp_path / "runs"
    good = root / "good"
    shutil.copytree(tiny_run, good, symlinks=True)
    app = create_app(tiny_run / "train" / "model.pt", runs=root, device="cpu", data_roots=(tiny_data,))
    with TestClient(app, base_url=LOOPBACK) as client:
        yield root, good, client


def _no_server_paths(reply, *paths):
    text = reply.text
    for path in paths:
        assert str(path) not in text, text
    assert "0x" not in text and "Traceback" not in text


def test_a_link_to_any_file_is_not_served(runs, tmp_path):
    """report.html -> a secret elsewhere; a film inside the run -> a secret elsewhere (both listed)."""
    root, good, client = runs
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:secret\n")
    (good / "report.html").unlink()
    os.symlink(secret, good / "report.html")
    reply = client.get("/runs/good/report.html")
    assert reply.status_code == 404 and "secret" not in reply.text
    _no_server_paths(reply, tmp_path)

    from PIL import Image

    outside = tmp_path / "outside.png"
    Image.fromarray(np.full((64, 64), 99, np.uint8)).save(outside)
    inner = good / "inner.png"
    os.symlink(outside, inner)
    rows = _rows(good)
    added = [dict(rows[0], path=str(inner)), dict(rows[0], path=str(outside))]
    _write_rows(good, rows + added)
    with np.load(good / "heatmaps.npz") as f:
        stored = {k: f[k] for k in f.files}
    stored["paths"] = np.concatenate([stored["paths"], [str(inner), str(outside)]])
    stored["maps"] = np.concatenate([stored["maps"], stored["maps"][:2]])
    stored["probs"] = np.concatenate([stored["probs"], stored["probs"][:2]])
    np.savez(good / "heatmaps.npz", **stored)
    assert client.get("/api/runs/good/film", params={"path": rows[0]["path"]}).status_code == 200  # still works
    for path in (str(inner), str(outside)):  # listed in both files, yet it leads outside the run and its data
        assert client.get("/api/runs/good/film", params={"path": path}).status_code == 404, path


def test_the_list_shows_every_run_and_the_broken_ones_with_a_reason(runs, tmp_path):
    root, good, client = runs
    (root / "empty-json").mkdir()
    (root / "empty-json" / "results.json").write_text("{}")
    (root / "not-json").mkdir()
    (root / "not-json" / "results.json").write_text("{not json")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(good, elsewhere)
    os.symlink(elsewhere, root / "linked-out")
    no_table = root / "no-table"
    shutil.copytree(good, no_table)
    (no_table / "predictions.csv").unlink()

    reply = client.get("/api/runs")
    assert reply.status_code == 200
    listed = {r["name"]: r for r in reply.json()}
    assert set(listed) == {"good", "empty-json", "not-json", "linked-out", "no-table"}
    assert listed["good"]["error"] is None and listed["no-table"]["error"] is None
    assert "provenance" in listed["empty-json"]["error"]  # core.runfiles: the key results.json lacks
    assert "not readable JSON" in listed["not-json"]["error"]
    assert "outside the runs folder" in listed["linked-out"]["error"]
    _no_server_paths(reply, tmp_path)
    for name, status in (("no-table", 404), ("linked-out", 404), ("not-json", 404)):
        table = client.get(f"/api/runs/{name}/predictions")
        assert table.status_code == status and table.json()["detail"], name
        _no_server_paths(table, tmp_path)
    assert client.get("/api/runs/no-table/predictions").json()["detail"] == "this run has no predictions.csv"


@pytest.mark.parametrize("label", ["5", "-1", "x", ""])
def test_a_label_that_is_not_0_or_1_is_a_422_naming_the_line(runs, label):
    _, good, client = runs
    rows = _rows(good)
    rows[1]["label"] = label
    _write_rows(good, rows)
    reply = client.get("/api/runs/good/predictions")
    assert reply.status_code == 422 and "line 3" in reply.json()["detail"]


def test_a_film_without_a_stored_map_is_a_404(runs):
    _, good, client = runs
    with np.load(good / "heatmaps.npz") as f:
        stored = {k: f[k] for k in f.files}
    first = str(stored["paths"][0])
    keep = np.array([str(p) != first for p in stored["paths"]])
    stored.update(paths=stored["paths"][keep], maps=stored["maps"][keep], probs=stored["probs"][keep])
    np.savez(good / "heatmaps.npz", **stored)
    reply = client.get("/api/runs/good/film", params={"path": first})
    assert reply.status_code == 404 and reply.json()["detail"] == "this run stored no map for this film"


def test_nul_bytes_and_odd_names_are_4xx(runs):
    _, good, client = runs
    for name in ("good%00", "go%00od", "%0a", "a" * 300):
        reply = client.get(f"/api/runs/{name}/predictions")
        assert reply.status_code == 404, name
    path = _rows(good)[0]["path"]
    for odd in (path + "\0", "\0", path + "\n.png"):
        assert client.get("/api/runs/good/film", params={"path": odd}).status_code == 404


def test_a_dataset_built_of_links_can_be_browsed(tiny_run, tmp_path):
    """Every film of the run's dataset is a link to a file elsewhere (a common way to make splits)."""
    originals = {row["path"] for row in _rows(tiny_run)}
    linked = tmp_path / "linked-data"
    root = tmp_path / "runs"
    run = root / "run"
    shutil.copytree(tiny_run, run)
    data = json.loads((tiny_run / "results.json").read_text())["provenance"]["data"]
    renames = {}
    for original in originals:
        target = linked / os.path.relpath(original, data)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(original, target)
        renames[original] = str(target)
    stored = _moved_films(run, renames, data=str(linked))
    app = create_app(run / "train" / "model.pt", runs=root, device="cpu", data_roots=(linked,))
    with TestClient(app, base_url=LOOPBACK) as client:
        film = str(stored["paths"][0])
        reply = client.get("/api/runs/run/film", params={"path": film})
        assert reply.status_code == 200, reply.text
        assert reply.json()["probability"] == pytest.approx(float(stored["probs"][0]))


def test_a_film_belongs_to_a_manifest_dataset_only_when_the_manifest_lists_it(tmp_path):
    from pneumocam.serve.runs import in_dataset

    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\na.png,NORMAL,train\nb.png,PNEUMONIA,train\n")
    assert in_dataset(str(tmp_path / "a.png"), str(manifest)) and in_dataset(str(tmp_path / "b.png"), str(manifest))
    assert not in_dataset(str(tmp_path / "c.png"), str(manifest))  # beside the manifest, but not listed
    assert not in_dataset("/etc/passwd", str(manifest))
    assert in_dataset(str(tmp_path / "d" / "x.png"), str(tmp_path / "d"))  # a folder: inside it
    assert not in_dataset(str(tmp_path / "d" / ".." / "c.png"), str(tmp_path / "d"))
    assert not in_dataset("/etc/passwd", "/")  # a run that names the root as its dataset names nothing
    assert in_dataset(f"{tmp_path}/s/cxr-0.tar::k.png", f"{tmp_path}/s/cxr-{{0..9}}.tar")
    assert not in_dataset(f"{tmp_path}/other/cxr-0.tar::k.png", f"{tmp_path}/s/cxr-{{0..9}}.tar")


def test_a_run_given_relative_paths_is_read_from_where_it_ran(tiny_run, tmp_path, monkeypatch, tiny_data):
    """A run made with a relative --data (as the README's commands are) lists relative film paths; it records its
    working directory, and the viewer opens the films from there, whatever folder the server started in; a run that
    did not record one is not read relative to the server's folder."""
    recorded = json.loads((tiny_run / "results.json").read_text())["provenance"]["working_directory"]
    assert os.path.isabs(recorded) and os.path.isdir(recorded)
    start = tmp_path / "where-it-ran"
    start.mkdir()
    root = tmp_path / "runs"
    run = root / "run"
    shutil.copytree(tiny_run, run)
    relative = {row["path"]: os.path.relpath(row["path"], start) for row in _rows(tiny_run)}
    assert all(p.startswith("..") for p in relative.values())  # the paths really are relative to `start`
    data = json.loads((run / "results.json").read_text())["provenance"]["data"]
    stored = _moved_films(run, relative, data=os.path.relpath(data, start), working_directory=str(start))
    results = json.loads((run / "results.json").read_text())
    elsewhere = tmp_path / "server-started-here"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    film = str(stored["paths"][0])
    app = create_app(tiny_run / "train" / "model.pt", runs=root, device="cpu", data_roots=(tiny_data,))
    with TestClient(app, base_url=LOOPBACK) as client:
        reply = client.get("/api/runs/run/film", params={"path": film})
        assert reply.status_code == 200, reply.text
        assert reply.json()["probability"] == pytest.approx(float(stored["probs"][0]))
        del results["provenance"]["working_directory"]
        (run / "results.json").write_text(json.dumps(results))
        assert client.get("/api/runs/run/film", params={"path": film}).status_code == 404
