"""The web viewer and JSON API (FastAPI): explain an uploaded film; browse the run folders under --runs.

Every path a client names is checked: a run is a direct child of the runs folder (no symlink out of it), and a
film is served only if that run's predictions.csv lists it and it resolves inside the run folder or the dataset
the run recorded. Anything else is 404, never a file from elsewhere on the disk.
"""

from __future__ import annotations

import base64
import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ..cam import METHODS
from ..data.readers import UnreadableImage
from .service import ModelService

STATIC = resources.files("pneumocam.serve") / "static"


class RunBrowser:
    """Read-only access to the run folders under one directory."""

    def __init__(self, runs: Path | None):
        self.root = Path(runs).resolve() if runs else None

    def names(self) -> list[str]:
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / "results.json").is_file())

    def folder(self, name: str) -> Path:
        if self.root is None or not name or "/" in name or "\\" in name or name in (".", ".."):
            raise HTTPException(404, f"unknown run '{name}'")
        folder = (self.root / name).resolve()
        if folder.parent != self.root or not (folder / "results.json").is_file():
            raise HTTPException(404, f"unknown run '{name}'")
        return folder

    def summary(self, name: str) -> dict:
        results = json.loads((self.folder(name) / "results.json").read_text())
        m = results["metrics"]["threshold_0.5"]
        return {
            "name": name,
            "eval_split": results["provenance"]["eval_split"],
            "n": m["n"],
            "accuracy": m["accuracy"],
            "roc_auc": m["roc_auc"],
            "weights": (results["provenance"].get("weights") or {}).get("description"),
            "report": f"/runs/{name}/report.html",
        }

    def rows(self, name: str) -> list[dict]:
        """predictions.csv joined by path with importance.csv's region shares."""
        folder = self.folder(name)
        with open(folder / "predictions.csv", newline="") as f:
            predictions = list(csv.DictReader(f))
        shares: dict[str, dict] = {}
        if (folder / "importance.csv").is_file():
            with open(folder / "importance.csv", newline="") as f:
                shares = {r["path"]: r for r in csv.DictReader(f)}

        def number(value):
            try:
                value = float(value)
            except (TypeError, ValueError):
                return None
            return value if np.isfinite(value) else None

        out = []
        for r in predictions:
            label, pred = int(r["label"]), int(r["pred"])
            extra = shares.get(r["path"], {})
            out.append(
                {
                    "path": r["path"],
                    "label": ["NORMAL", "PNEUMONIA"][label],
                    "probability": float(r["prob_pneumonia"]),
                    "prediction": ["NORMAL", "PNEUMONIA"][pred],
                    "correct": label == pred,
                    "in_distribution": r.get("in_distribution", "1") != "0",
                    "lung_share": number(extra.get("share_lungs")),
                    "outside_body_share": number(extra.get("share_outside_body")),
                }
            )
        return out

    def film(self, name: str, path: str) -> tuple[Path, int]:
        """(the film's real path, its row in heatmaps.npz) for a path the run lists, inside the run or its data."""
        folder = self.folder(name)
        listed = {r["path"] for r in self.rows(name)}
        if path not in listed:
            raise HTTPException(404, "not a film of this run")
        results = json.loads((folder / "results.json").read_text())
        allowed = [folder, Path(results["provenance"]["data"]).resolve()]
        real = Path(path).resolve()
        if not any(real.is_relative_to(a) for a in allowed) or not real.is_file():
            raise HTTPException(404, "not a film of this run")
        with np.load(folder / "heatmaps.npz", allow_pickle=False) as maps:
            index = [str(p) for p in maps["paths"]].index(path)
        return real, index


class UploadLimit:
    """413 before the body is read when a predict request announces more than the limit (plain ASGI: Starlette's
    BaseHTTPMiddleware would add its cost to every request)."""

    def __init__(self, app, limit: int, message: str):
        self.app, self.limit, self.message = app, limit, message

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/api/predict":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit + 65536:
                await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    checkpoint,
    runs: Path | None = None,
    device: str = "auto",
    max_upload_mb: float = 50.0,
    window_ms: float = 15.0,
    worker_thread: bool = True,
) -> FastAPI:
    """The app; worker_thread=False leaves app.state.service.work_forever() to the caller's main thread."""
    service = ModelService(checkpoint, device=device, window_ms=window_ms, worker_thread=worker_thread)
    browser = RunBrowser(runs)
    limit = int(max_upload_mb * 1024 * 1024)
    app = FastAPI(
        title="pneumocam",
        description="Explainable pneumonia detection on chest X-rays: predictions, Grad-CAM maps, where they look.",
    )
    app.state.service = service

    app.add_middleware(UploadLimit, limit=limit, message=f"upload over the limit of {max_upload_mb:g} MB")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def explain_page():
        return (STATIC / "index.html").read_text()

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs_page():
        return (STATIC / "runs.html").read_text()

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        files = {p.name: p for p in STATIC.iterdir()}
        if name not in files:
            raise HTTPException(404, "no such file")
        media = {"js": "text/javascript", "css": "text/css"}.get(name.rsplit(".", 1)[-1], "text/plain")
        return Response(files[name].read_bytes(), media_type=media)

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "model": service.provenance()}

    @app.post("/api/predict")
    def predict(file: UploadFile = File(...), method: str = Form("gradcam")) -> dict:
        if method not in METHODS:
            raise HTTPException(422, f"unknown method '{method}': one of {', '.join(METHODS)}")
        content = file.file.read(limit + 1)
        if len(content) > limit:
            raise HTTPException(413, f"upload over the limit of {max_upload_mb:g} MB")
        try:
            # Returned as is: the answer is plain JSON types already, FastAPI's encoder walk would only add time.
            return JSONResponse(service.answer(content, file.filename or "", method))
        except UnreadableImage as exc:
            raise HTTPException(422, f"unreadable image: {exc}") from None

    @app.get("/api/runs")
    def list_runs() -> list[dict]:
        return [browser.summary(name) for name in browser.names()]

    @app.get("/api/runs/{run}/predictions")
    def run_predictions(run: str) -> list[dict]:
        return browser.rows(run)

    @app.get("/api/runs/{run}/film")
    def run_film(run: str, path: str) -> dict:
        """The film at the model's size and its overlay from the run's stored map."""
        from ..cam import load_heatmaps, upsample
        from ..data.readers import read_resized
        from ..predict import overlay_png
        from .service import png_base64

        real, index = browser.film(run, path)
        maps = load_heatmaps(browser.folder(run) / "heatmaps.npz")
        size = int(maps["image_size"])
        try:
            gray = read_resized(real, size)
        except UnreadableImage as exc:
            raise HTTPException(422, f"unreadable image: {exc}") from None
        heat = upsample(maps["maps"][index : index + 1], size)[0]
        return {
            "path": path,
            "film_png_base64": png_base64(gray),
            "overlay_png_base64": base64.b64encode(overlay_png(gray, heat)).decode("ascii"),
            "probability": float(maps["probs"][index]),
        }

    @app.get("/runs/{run}/report.html", response_class=HTMLResponse, include_in_schema=False)
    def run_report(run: str):
        report = browser.folder(run) / "report.html"
        if not report.is_file():
            raise HTTPException(404, "this run has no report")
        return FileResponse(report)

    @app.exception_handler(HTTPException)
    async def json_errors(request: Request, exc: HTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bad request never takes the server down
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    return app
