"""The web viewer and JSON API (FastAPI): explain an uploaded film; browse the run folders under --runs.

What it refuses before any route runs is in protect.py (foreign Host and Origin headers, oversized uploads, and the
headers every answer carries); how run folders are read without trusting them is in runs.py. Every error is a JSON
{"detail": ...} that says what is wrong with the request, never where the server keeps its files; an unexpected
failure is a 500 whose traceback goes to the server's log only.
"""

from __future__ import annotations

import base64
import logging
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from pneumocam.core.defaults import BATCH_WINDOW_MS, REQUEST_TIMEOUT_S
from pneumocam.data.readers import UnreadableImage
from pneumocam.explain.cam import upsample
from pneumocam.explain.overlays import heat_rgba, overlay_png, png_base64
from pneumocam.serve.protect import LOOPBACK_HOSTS, PAGE_POLICY, allowed_hosts, protect
from pneumocam.serve.runs import HTTPError, RunBrowser
from pneumocam.serve.service import HEAT_LAYER_SIDE, ModelService, ServiceBusy, finite_or_none

STATIC = resources.files("pneumocam.serve") / "static"
STATIC_TYPES = {"js": "text/javascript", "css": "text/css", "html": "text/html"}
log = logging.getLogger("pneumocam.serve")


def create_app(
    checkpoint,
    runs: Path | None = None,
    device: str = "auto",
    max_upload_mb: float = 50.0,
    window_ms: float = BATCH_WINDOW_MS,
    worker_thread: bool = True,
    host: str = "127.0.0.1",
    extra_hosts: tuple[str, ...] = (),
    allow_slow_methods: bool = False,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    max_pixels: int | None = None,
    precision: str = "auto",
    data_roots: tuple[Path, ...] = (),
) -> FastAPI:
    """The app; worker_thread=False leaves app.state.service.work_forever() to the caller's main thread. It answers
    only requests addressed to loopback, `host` or `extra_hosts` (a Host header names one of them). data_roots: the
    folders a run's recorded dataset may lie under for its films to be shown (`serve --data-root`)."""
    service = ModelService(
        checkpoint,
        device=device,
        window_ms=window_ms,
        worker_thread=worker_thread,
        allow_slow_methods=allow_slow_methods,
        request_timeout_s=request_timeout_s,
        max_pixels=max_pixels,
        precision=precision,
    )
    browser = RunBrowser(runs, data_roots)
    limit = int(max_upload_mb * 1024 * 1024)
    app = FastAPI(  # no /docs or /redoc: they load scripts from a CDN, which the page policy refuses
        docs_url=None,
        redoc_url=None,
        title="pneumocam",
        description="Explainable pneumonia detection on chest X-rays: predictions, Grad-CAM maps, where they look.",
    )
    app.state.service = service
    app.state.allowed_hosts = allowed_hosts(host, extra_hosts)
    protect(app, limit, f"upload over the limit of {max_upload_mb:g} MB", app.state.allowed_hosts)
    add_page_routes(app)
    add_model_routes(app, service, limit, max_upload_mb)
    add_run_routes(app, browser, service)
    add_error_answers(app)
    return app


def add_page_routes(app: FastAPI) -> None:
    """The two pages and the package's own static files."""

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def explain_page():
        return (STATIC / "index.html").read_text()

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs_page():
        return (STATIC / "runs.html").read_text()

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        # Only the package's own files, by exact name: nothing a request names is joined to a path.
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:
            raise HTTPException(404, "no such file")
        media = STATIC_TYPES.get(name.rsplit(".", 1)[-1], "text/plain")
        return Response(files[name].read_bytes(), media_type=media)


def add_model_routes(app: FastAPI, service: ModelService, limit: int, max_upload_mb: float) -> None:
    """Health and provenance, and a film explained by the served model."""

    @app.get("/api/health")
    def health() -> dict:
        return {"status": "ok", "model": service.provenance()}

    @app.post("/api/predict")
    def predict(
        file: UploadFile = File(...),
        method: str = Form("gradcam"),
        reliance: bool = Form(False),
        display: bool = Form(False),
    ) -> dict:
        refusal = service.method_refusal(method)
        if refusal:
            raise HTTPException(422, refusal)
        content = file.file.read(limit + 1)
        if len(content) > limit:
            raise HTTPException(413, f"upload over the limit of {max_upload_mb:g} MB")
        try:
            # Returned as is: the answer is plain JSON types already, FastAPI's encoder walk would only add time.
            return JSONResponse(
                service.answer(content, file.filename or "", method, reliance=reliance, display=display)
            )
        except UnreadableImage as exc:
            raise HTTPException(422, f"unreadable image: {exc}") from None
        except ServiceBusy as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


def add_run_routes(app: FastAPI, browser: RunBrowser, service: ModelService) -> None:
    """Finished runs under --runs, each read as hostile (serve/runs.py)."""

    @app.get("/api/runs")
    def list_runs() -> list[dict]:
        return [browser.summary(name) for name in browser.names()]

    @app.get("/api/runs/{run}/predictions")
    def run_predictions(run: str) -> list[dict]:
        return browser.rows(run)

    @app.get("/api/runs/{run}/film")
    def run_film(run: str, path: str) -> dict:
        """One case of the run's worklist: the film at the model's size and its overlay from the run's stored map,
        the film for people to look at (up to DISPLAY_MAX_SIDE px, its own window) with the map as a layer, and
        what the caption of an exported case says (RunBrowser.case)."""
        real, index, maps = browser.film(run, path)
        size = int(maps["image_size"])
        if not 16 <= size <= 2048 or index >= len(maps["maps"]):
            raise HTTPError(422, "this run's heatmaps.npz does not match its films")
        try:
            gray, shown = service.decode_film(real, size)
        except UnreadableImage:
            raise HTTPException(422, "this film is not readable as an image") from None
        stored = maps["maps"][index : index + 1]
        heat = upsample(stored, size)[0]
        return {
            "path": path,
            "film_png_base64": png_base64(gray),
            "overlay_png_base64": base64.b64encode(overlay_png(gray, heat)).decode("ascii"),
            "heatmap_png_base64": png_base64(heat_rgba(upsample(stored, max(HEAT_LAYER_SIDE, stored.shape[-1]))[0])),
            "display": shown,
            "probability": finite_or_none(maps["probs"][index]),
            "case": browser.case(run),
        }

    @app.get("/runs/{run}/report.html", response_class=HTMLResponse, include_in_schema=False)
    def run_report(run: str):
        return FileResponse(browser.report(run), media_type="text/html")


def add_error_answers(app: FastAPI) -> None:
    """Every error is a JSON answer with a detail that names no input and no server path."""

    @app.exception_handler(HTTPError)
    async def run_errors(request: Request, exc: HTTPError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def json_errors(request: Request, exc: HTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's default body echoes the input (an upload's bytes, object reprs): name the fields only.
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) or "request" for e in exc.errors()})
        return JSONResponse({"detail": f"invalid request: check {', '.join(fields)}"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bad request never takes the server down
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (the server's log has the details)"}, status_code=500)


__all__ = ["create_app", "LOOPBACK_HOSTS", "PAGE_POLICY", "RunBrowser"]
