"""pneumocam serve: every endpoint and error status with FastAPI's test client, concurrent answers, path checks."""

import io
import json
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from pneumocam.serve.app import create_app

LOOPBACK = "http://127.0.0.1:8000"  # the server answers only requests addressed to its own names


@pytest.fixture(scope="module")
def served(tiny_run, tiny_data):
    """(client, run folder): the tiny run's model served with its runs folder."""
    app = create_app(
        tiny_run / "train" / "model.pt", runs=tiny_run.parent, device="cpu", max_upload_mb=1, data_roots=(tiny_data,)
    )
    with TestClient(app, base_url=LOOPBACK) as client:
        yield client, tiny_run


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _films(phantom_data, n):
    return sorted((phantom_data.images / "test").rglob("*.png"))[:n]


def test_health_and_openapi(served):
    client, _ = served
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["model"]["random_init"] is True
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/health", "/api/runs", "/api/runs/{run}/predictions"} <= set(spec["paths"])


def test_predict_equals_the_predict_command(served, phantom_data, tmp_path):
    """The API's probability for a film is the one `pneumocam predict` writes for the same file."""
    import csv

    from typer.testing import CliRunner

    from pneumocam.cli.app import app

    client, run = served
    film = _films(phantom_data, 1)[0]
    answer = client.post("/api/predict", files={"file": (film.name, film.read_bytes(), "image/png")}).json()
    result = CliRunner().invoke(
        app, ["predict", "--checkpoint", str(run / "train" / "model.pt"), "--out", str(tmp_path), str(film)]
    )
    assert result.exit_code == 0, result.output
    with open(next(tmp_path.glob("*/predictions.csv")), newline="") as f:
        row = next(csv.DictReader(f))
    assert answer["probability"] == pytest.approx(float(row["prob_pneumonia"]), abs=2e-6)
    assert answer["prediction"] == ("PNEUMONIA" if answer["probability"] >= answer["threshold"] else "NORMAL")
    assert set(answer["regions"]["shares"]) == {"lungs", "diaphragm", "body_other", "outside_body"}
    assert sum(answer["regions"]["shares"].values()) == pytest.approx(1.0, abs=1e-6)  # a partition of the film
    for key in ("overlay_png_base64", "film_png_base64", "heatmap_png_base64", "contours_png_base64"):
        import base64

        assert Image.open(io.BytesIO(base64.b64decode(answer[key]))).size[0] > 0


def test_error_statuses(served):
    client, _ = served
    bad = client.post("/api/predict", files={"file": ("x.png", b"not an image", "image/png")})
    assert bad.status_code == 422 and "unreadable image" in bad.json()["detail"]
    big = client.post("/api/predict", files={"file": ("big.png", b"0" * (2 * 1024 * 1024), "image/png")})
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    method = client.post(
        "/api/predict", files={"file": ("a.png", _png(np.zeros((80, 80), np.uint8)), "image/png")}, data={"method": "x"}
    )
    assert method.status_code == 422
    assert client.get("/api/runs/no-such-run/predictions").status_code == 404
    ok = client.post("/api/predict", files={"file": ("a.png", _png(np.full((80, 80), 7, np.uint8)), "image/png")})
    assert ok.status_code == 200 and ok.json()["ood_reason"] == "near-blank image"  # the server is still up


def test_runs_and_their_table(served):
    client, run = served
    runs = client.get("/api/runs").json()
    assert [r["name"] for r in runs] == [run.name]
    rows = client.get(f"/api/runs/{run.name}/predictions").json()
    with open(run / "predictions.csv") as f:
        assert len(rows) == sum(1 for _ in f) - 1
    row = rows[0]
    assert row["correct"] == (row["label"] == row["prediction"])
    film = client.get(f"/api/runs/{run.name}/film", params={"path": row["path"]})
    assert film.status_code == 200 and film.json()["film_png_base64"]
    assert client.get(f"/runs/{run.name}/report.html").status_code == 200


def test_paths_outside_a_run_are_404(served, tmp_path):
    client, run = served
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png(np.zeros((80, 80), np.uint8)))
    link = run / "link-out.png"
    os.symlink(outside, link)
    try:
        for path in (
            "../../etc/passwd",
            "/etc/passwd",
            str(outside),
            str(link),
            str(run / "results.json"),
            "%2e%2e/%2e%2e/etc/passwd",
        ):
            assert client.get(f"/api/runs/{run.name}/film", params={"path": path}).status_code == 404, path
        for name in ("..", "%2e%2e", "..%2F..%2Fetc", run.name + "/../x"):
            assert client.get(f"/api/runs/{name}/predictions").status_code == 404, name
    finally:
        link.unlink()


def test_concurrent_requests_get_their_own_answers(served, phantom_data):
    """8 threads x 5 requests give each film the answer it gets alone."""
    client, _ = served
    films = _films(phantom_data, 8)

    def ask(film: Path) -> float:
        reply = client.post("/api/predict", files={"file": (film.name, film.read_bytes(), "image/png")})
        assert reply.status_code == 200, reply.text
        return reply.json()["probability"]

    alone = {film: ask(film) for film in films}
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, films * 5))
    assert together == pytest.approx([alone[f] for f in films * 5], abs=1e-6)
    assert client.app.state.service.batches_run < len(films) + 40  # some requests shared a batch


def test_fuzzed_requests_never_get_a_500(served):
    """Uploads that are valid films with bytes flipped or cut, or noise; film paths that are the run's own with
    characters changed, or noise: never a 5xx, and the examples are counted: some must be answered (200, so the fuzz
    reaches the model and the run's maps) and some refused."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    client, run = served
    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 80).reshape(64, 80) % 251).astype(np.uint8)).save(buffer, format="PNG")
    valid = buffer.getvalue()
    films = [r["path"] for r in client.get(f"/api/runs/{run.name}/predictions").json()]
    answered = {"predict": Counter(), "film": Counter()}
    contents = st.just(valid) | st.binary(max_size=2048) | st.builds(
        lambda keep, at, value: (valid[:keep][:at] + bytes([value]) + valid[:keep][at + 1 :]),
        st.integers(len(valid) // 2, len(valid)), st.integers(0, len(valid) - 1), st.integers(0, 255),
    )  # fmt: skip
    paths = st.sampled_from(films) | st.text(max_size=40) | st.builds(
        lambda film, at, c: film[:at] + c + film[at + 1 :], st.sampled_from(films), st.integers(0, 80), st.characters()
    )  # fmt: skip

    @settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(contents, st.text(max_size=40), paths)
    def check(content, name, path):
        predicted = client.post("/api/predict", files={"file": (name or "f.png", content, "image/png")}).status_code
        shown = client.get(f"/api/runs/{run.name}/film", params={"path": path}).status_code
        listed = client.get("/api/runs/" + json.dumps(name)[1:-1] + "/predictions").status_code
        assert predicted < 500 and shown < 500 and listed < 500
        answered["predict"][predicted // 100] += 1
        answered["film"][shown // 100] += 1

    check()
    for kind, found in answered.items():
        assert found[2] >= 3 and found[4] >= 3, (kind, found)


def test_jet_is_matplotlibs_colour_map():
    """The table lookup gives the colours matplotlib's jet gives for the same map scaled to its maximum."""
    from matplotlib import colormaps

    from pneumocam.explain.overlays import jet

    heat = np.random.default_rng(0).gamma(2.0, size=(37, 41))
    heat[3, 5] = heat.max()  # the maximum maps to 1.0, the table's last entry
    expected = colormaps["jet"](heat / heat.max(), bytes=True)
    assert np.array_equal(jet(heat), expected)


def test_a_lone_request_does_not_wait_for_the_batching_window(tiny_run, phantom_data):
    """With nobody else uploading, the batcher runs a request at once: a 60 s window is never waited for."""
    import time

    from pneumocam.serve.service import ModelService

    service = ModelService(tiny_run / "train" / "model.pt", device="cpu", window_ms=60_000)
    film = _films(phantom_data, 1)[0]
    service.answer(film.read_bytes(), film.name)  # warm-up
    began = time.perf_counter()
    answer = service.answer(film.read_bytes(), film.name)
    assert time.perf_counter() - began < 20 and service.batches_run == 2
    assert answer["prediction"] in ("NORMAL", "PNEUMONIA")


@pytest.mark.parametrize("focus", ["body", "lungs"])
def test_a_focused_model_is_served_as_the_predict_command_sees_it(phantom_data, tmp_path, focus):
    """--focus in model.pt: the API focuses each upload with the body and lungs it estimated once, and its
    probability is the one `pneumocam predict` (which focuses films itself) writes for the same file."""
    import csv

    from typer.testing import CliRunner

    from pneumocam.cli.app import app
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    config = TrainConfig(
        data=str(phantom_data.images), mode="frozen", weights="none", image_size=64, epochs=1, batch_size=16,
        val_source="dataset", seed=1, use_cache=False, focus=focus,
    )  # fmt: skip
    checkpoint = fit(config, runs_dir=tmp_path / "runs") / "model.pt"
    films = _films(phantom_data, 3)
    with TestClient(create_app(checkpoint, device="cpu"), base_url=LOOPBACK) as client:
        answers = [
            client.post("/api/predict", files={"file": (f.name, f.read_bytes(), "image/png")}).json() for f in films
        ]
    result = CliRunner().invoke(
        app, ["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "p"), *map(str, films)]
    )
    assert result.exit_code == 0, result.output
    with open(next((tmp_path / "p").glob("*/predictions.csv")), newline="") as f:
        written = {Path(r["path"]).name: float(r["prob_pneumonia"]) for r in csv.DictReader(f)}
    assert [a["probability"] for a in answers] == pytest.approx([written[f.name] for f in films], abs=2e-6)
    assert all(a["model"]["focus"] == focus for a in answers)


def test_the_serve_command_answers_and_stops_on_ctrl_c(tiny_run, phantom_data, start_serve):
    """`pneumocam serve` as users start it (HTTP in a second thread, the model in the main one): it answers as the
    in-process app does, and Ctrl+C (SIGINT) ends it cleanly."""
    import signal

    import httpx

    checkpoint = tiny_run / "train" / "model.pt"
    process, base = start_serve("--checkpoint", checkpoint)
    try:
        film = _films(phantom_data, 1)[0]
        upload = {"file": (film.name, film.read_bytes(), "image/png")}
        answer = httpx.post(f"{base}/api/predict", files=upload, timeout=60).json()
        with TestClient(create_app(checkpoint, device="cpu"), base_url=LOOPBACK) as client:
            expected = client.post("/api/predict", files=upload).json()
        assert answer["probability"] == pytest.approx(expected["probability"], abs=1e-6)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_odd_upload_names_are_read_as_plain_uploads(served):
    """A NUL byte, a shard-member name ("a.tar::zz"), a path: only a plain suffix of the name is used."""
    client, _ = served
    film = _png((np.arange(80 * 80).reshape(80, 80) % 200).astype(np.uint8))
    for name in ("a\0b.png", "a.tar::zz", "../../etc/passwd", "x.png\0.dcm", "a.tar::a.png"):
        reply = client.post("/api/predict", files={"file": (name, film, "image/png")})
        assert reply.status_code == 200, (name, reply.text)


def test_error_bodies_name_the_problem_not_the_servers_files(served, tmp_path):
    import tempfile

    client, run = served
    for content in (b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"GIF89a" + b"\0" * 20):
        reply = client.post("/api/predict", files={"file": ("x.png", content, "image/png")})
        assert reply.status_code == 422 and reply.json()["detail"].startswith("unreadable image")
        assert tempfile.gettempdir() not in reply.text and " at 0x" not in reply.text, reply.text
    invalid = client.post("/api/predict", data={"method": "gradcam"})  # no file at all
    assert invalid.status_code == 422 and "file" in invalid.json()["detail"] and "0x" not in invalid.text


def test_a_film_over_the_pixel_budget_is_refused_before_decoding(tiny_run):
    """The budget is read from the header: a 300 x 300 PNG against a 10,000-pixel budget."""
    app = create_app(tiny_run / "train" / "model.pt", device="cpu", max_pixels=10_000)
    with TestClient(app, base_url=LOOPBACK) as client:
        big = client.post("/api/predict", files={"file": ("a.png", _png(np.zeros((300, 300), np.uint8)), "image/png")})
        assert big.status_code == 422 and "too large: 300x300 = 0.1 MP" in big.json()["detail"]
        small = client.post("/api/predict", files={"file": ("a.png", _png(np.zeros((90, 90), np.uint8)), "image/png")})
        assert small.status_code == 200


def test_slow_methods_are_off_unless_allowed_and_a_late_request_is_cancelled(tiny_run):
    """scorecam is refused by default; allowed, with a 0.5 s budget, it is answered 503 and its forward passes stop
    (a full ScoreCAM of layer4's 2048 channels in batches of 16 runs 128 of them), and the next request is served."""
    checkpoint = tiny_run / "train" / "model.pt"
    film = _png((np.arange(64 * 64).reshape(64, 64) % 200).astype(np.uint8))
    with TestClient(create_app(checkpoint, device="cpu"), base_url=LOOPBACK) as client:
        reply = client.post("/api/predict", files={"file": ("a.png", film, "image/png")}, data={"method": "scorecam"})
        assert reply.status_code == 422 and "--allow-slow-methods" in reply.json()["detail"]
        assert "scorecam" not in client.get("/api/health").json()["model"]["methods"]
    app = create_app(checkpoint, device="cpu", allow_slow_methods=True, request_timeout_s=0.5)
    forwards = []
    app.state.service.session.model.register_forward_hook(lambda *_: forwards.append(1))
    with TestClient(app, base_url=LOOPBACK) as client:
        slow = client.post("/api/predict", files={"file": ("a.png", film, "image/png")}, data={"method": "scorecam"})
        assert slow.status_code == 503 and "time budget" in slow.json()["detail"]
        time.sleep(1.0)  # the worker notices at its next forward pass
        done = len(forwards)
        time.sleep(0.5)
        assert len(forwards) == done < 128  # stopped, and not still running
        fast = client.post("/api/predict", files={"file": ("a.png", film, "image/png")})
        assert fast.status_code == 200


def test_the_reliance_check_comes_only_when_asked_and_equals_the_runs(served, phantom_data):
    """With reliance=true the answer holds p(PNEUMONIA) for every variant, the same as the run's check computes for
    the film with the same (classical) lungs; without it, none is computed."""
    from pneumocam.analysis.reliance import VARIANTS, reliance_probabilities
    from pneumocam.anatomy.lungs import body_mask, classical_lungs
    from pneumocam.data import discover, load_images
    from pneumocam.model.inputs import ModelInputs
    from pneumocam.model.network import load_checkpoint

    client, run = served
    film = _films(phantom_data, 1)[0]
    upload = {"file": (film.name, film.read_bytes(), "image/png")}
    assert client.post("/api/predict", files=upload).json()["reliance"] is None
    answer = client.post("/api/predict", files=upload, data={"reliance": "true"}).json()
    relied = answer["reliance"]["probability"]
    assert list(relied) == list(VARIANTS) and relied["whole"] == pytest.approx(answer["probability"], abs=2e-6)
    model, meta = load_checkpoint(run / "train" / "model.pt")
    loaded = load_images([s for s in discover(phantom_data.images).samples if s.path == str(film)], 64, use_cache=False)
    lungs = classical_lungs(loaded.images[0], body=body_mask(loaded.images[0]))[None]
    expected = reliance_probabilities(model, ModelInputs.of_checkpoint(meta), loaded, lungs, 8, "cpu")
    for name in VARIANTS:
        assert relied[name] == pytest.approx(float(expected[name][0]), abs=2e-6), name
    assert len({round(v, 6) for v in relied.values()}) > 1  # the variants do change the answer


def _decoded(text: str) -> np.ndarray:
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def test_the_viewers_film_comes_only_when_asked_at_its_own_aspect(served):
    """display=true: the upload itself (300 x 150, under DISPLAY_MAX_SIDE) under the identity window; a 2400 x 1200
    film comes at 1024 x 512; without display none is made."""
    client, _ = served
    film = np.tile(np.linspace(0, 255, 300).astype(np.uint8), (150, 1))
    upload = {"file": ("wide.png", _png(film), "image/png")}
    assert client.post("/api/predict", files=upload).json()["display"] is None
    shown = client.post("/api/predict", files=upload, data={"display": "true"}).json()["display"]
    assert (shown["width"], shown["height"]) == (300, 150) and np.array_equal(_decoded(shown["film_png_base64"]), film)
    assert shown["window"] == {"centre": 127.5, "width": 255.0, "source": "none"}
    big = {"file": ("big.png", _png(np.tile(np.linspace(0, 255, 2400).astype(np.uint8), (1200, 1))), "image/png")}
    large = client.post("/api/predict", files=big, data={"display": "true"}).json()["display"]
    assert (large["width"], large["height"]) == (1024, 512) == _decoded(large["film_png_base64"]).shape[::-1]


def test_a_worklist_case_carries_its_film_map_and_caption_facts(served):
    """The run's film endpoint: the film as the run read it, the map layer, the film to look at, and the caption's
    facts from results.json (the threshold every pred column of the run was decided at, read from the model.pt)."""
    client, run = served
    results = json.loads((run / "results.json").read_text())
    row = client.get(f"/api/runs/{run.name}/predictions").json()[0]
    case = client.get(f"/api/runs/{run.name}/film", params={"path": row["path"]}).json()
    assert _decoded(case["heatmap_png_base64"]).shape[-1] == 4  # RGBA: the map alone, laid over by the page
    on_disk = np.asarray(Image.open(row["path"]).convert("L"))
    assert np.array_equal(_decoded(case["display"]["film_png_base64"]), on_disk)
    facts = case["case"]
    recorded = torch.load(run / "train" / "model.pt", weights_only=True)["metadata"]["thresholds"]["youden_val"]
    assert facts["run"] == run.name and facts["threshold"] == recorded != 0.5
    assert facts["method"] == results["config"]["method"] and facts["model"].startswith("model.pt, weights ")
    assert results["config"]["train"]["recipe"] is None and facts["model"].endswith("recipe unknown")
