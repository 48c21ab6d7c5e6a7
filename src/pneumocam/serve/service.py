"""The model behind `pneumocam serve`: loaded once, requests micro-batched into one Grad-CAM pass.

Each request is decoded by the same reader as every other command, focused the way the checkpoint records,
explained, checked by the domain-shift guard and measured on the film's regions (lungs estimated: an upload
comes without a mask). A request that finds the model idle and no other upload being decoded runs at once;
requests that arrive while a batch runs, or while others are on their way (at most a few milliseconds), run
together as the next batch. Each answer goes back to the request it came from.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import os
import queue
import re
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from pneumocam import CLASS_NAMES, started_random
from pneumocam.analysis.regions import attention_measures
from pneumocam.analysis.reliance import VARIANTS, variant_images
from pneumocam.anatomy.focus import Focused
from pneumocam.anatomy.lungs import body_mask, classical_lungs
from pneumocam.core.defaults import BATCH_WINDOW_MS, REQUEST_TIMEOUT_S
from pneumocam.core.precision import resolve_precision
from pneumocam.core.progress import silence_this_thread
from pneumocam.core.schema import REGIONS
from pneumocam.data.readers import UnreadableImage, read_display, read_grayscale, resize_square
from pneumocam.explain.cam import METHOD_COST, METHODS, make_cam, upsample
from pneumocam.explain.overlays import contour_rgba, heat_rgba, jet, overlay_png, png_base64
from pneumocam.model.forward import predict_logits
from pneumocam.model.guard import file_reason, image_reason
from pneumocam.model.network import probability, resolve_device
from pneumocam.model.session import InferenceSession

HEAT_LAYER_SIDE = 56
# The film people look at in the viewer (display=true): its own aspect, at most this many px on its long side. A
# larger film is a slower answer and a heavier page for no more that a screen can show at a reading zoom.
DISPLAY_MAX_SIDE = 1024
# What the map's colours mean, said once for the page's colour scale.
COLOUR_SCALE = (
    "the map's evidence for the class it explains, scaled to this film's maximum (0: none, 1: the film's strongest); "
    "relative within one film, not a probability and not comparable across films"
)
# Uploads decoded at once: each may hold a film up to the pixel budget in memory, so this bounds the server's peak.
CONCURRENT_DECODES = 2
LARGE_DECODE_PIXELS = 4_000_000  # after a decode this large the freed heap is handed back (release_memory)
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class ServiceBusy(Exception):
    """The request could not be answered within the server's time budget; its work was cancelled."""


class _Abandoned(Exception):
    """Raised inside a forward pass whose every request has timed out."""


@dataclass
class Job:
    gray: np.ndarray  # the model-size film
    reason: str  # the input checks' verdict on the uploaded file ("" when it passed)
    method: str
    deadline: float  # time.monotonic() after which nobody waits for the answer
    lungs: np.ndarray | None = None  # estimated once: for --focus lungs, the measures and the contours
    body: np.ndarray | None = None  # likewise, for --focus body|lungs, the measures and the contours
    reliance: bool = False  # also the probability with the lungs removed and with only the lungs kept
    future: Future = field(default_factory=Future)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def expired(self) -> bool:
        return self.abandoned.is_set() or time.monotonic() > self.deadline


class ModelService:
    """The checkpoint, its guard and thresholds, and a worker thread that explains queued films in batches."""

    def __init__(
        self,
        checkpoint,
        device: str = "auto",
        window_ms: float = BATCH_WINDOW_MS,
        max_batch: int = 32,
        worker_thread: bool = True,
        allow_slow_methods: bool = False,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_pixels: int | None = None,
        precision: str = "auto",
    ):
        """worker_thread=False: the caller runs work_forever() itself, in the process's main thread (as `pneumocam
        serve` does): there a served film's Grad-CAM took 70 ms, in a second thread 109 ms (PyTorch's OpenMP pool,
        2 cores, after a pause between requests). request_timeout_s: how long one request may wait and compute;
        past it the request is answered busy and its computation stops at the model's next forward pass."""
        self.checkpoint = str(checkpoint)
        self.allow_slow_methods, self.request_timeout_s = allow_slow_methods, float(request_timeout_s)
        self.max_pixels = max_pixels
        target = resolve_device(device)
        self.session = InferenceSession.open(checkpoint, target, resolve_precision(precision, target))
        self.size, self.focus = self.session.reads.image_size, self.session.reads.focus
        self._decoding = threading.BoundedSemaphore(CONCURRENT_DECODES)
        self.window_s, self.max_batch = window_ms / 1000.0, max_batch
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.batches_run = 0
        self._arriving, self._lock = 0, threading.Lock()
        if worker_thread:
            threading.Thread(target=self.work_forever, daemon=True, name="pneumocam-batcher").start()

    # ------------------------------------------------------------------------------------------- provenance

    def provenance(self) -> dict:
        weights = self.session.meta.get("weights") or {}
        config = self.session.meta.get("config") or {}
        return {
            "checkpoint": os.path.basename(self.checkpoint),
            "weights": weights.get("description"),
            "random_init": started_random(weights),
            "recipe": config.get("recipe"),
            "image_size": self.size,
            "focus": self.focus,
            "data_fingerprint": (self.session.meta.get("data") or {}).get("fingerprint"),
            "threshold": self.session.threshold,
            "threshold_source": self.session.threshold_source,
            "calibration": (self.session.meta.get("calibration") or {}).get("method"),
            "guard": self.session.guard is not None,
            "methods": list(self.methods()),
            "method_cost": {m: METHOD_COST[m] for m in METHODS},
            "colour_scale": {"png_base64": png_base64(colour_scale()), "meaning": COLOUR_SCALE},
            "request_timeout_s": self.request_timeout_s,
            "precision": self.session.precision.used,
        }

    def methods(self) -> tuple[str, ...]:
        """The methods this server computes: the slow ones only with allow_slow_methods."""
        return tuple(m for m in METHODS if self.allow_slow_methods or METHOD_COST[m] != "slow")

    def method_refusal(self, method: str) -> str:
        """Why a method is not served ("" when it is)."""
        if method not in METHODS:
            return f"unknown method '{method}': one of {', '.join(self.methods())}"
        if method not in self.methods():
            return (
                f"method '{method}' is slow (minutes a film on a CPU) and this server does not compute slow methods: "
                f"start it with --allow-slow-methods, or use one of {', '.join(self.methods())}"
            )
        return ""

    # ------------------------------------------------------------------------------------------- requests

    def decode(self, content: bytes, filename: str, display: bool = False) -> tuple[np.ndarray, str, dict | None]:
        """(the film as read by every other command, the file checks' reason, with display the film for people to
        look at (data.readers.read_display) as the answer's "display"); UnreadableImage on a bad upload,
        whose message names the upload, never the server's temporary file. The client's file name gives only its
        suffix (a DICOM and a PNG read differently), and only a plain one: no "::" shard member, no NUL."""
        suffix = os.path.splitext(filename or "")[1]
        suffix = suffix if _SAFE_SUFFIX.fullmatch(suffix) else ".img"
        with self._decoding, tempfile.NamedTemporaryFile(suffix=suffix) as handle:
            handle.write(content)
            handle.flush()
            try:
                gray = read_grayscale(handle.name, max_pixels=self.max_pixels)
            except UnreadableImage as exc:
                message = str(exc).replace(handle.name, "the upload").replace(os.path.basename(handle.name), "upload")
                raise UnreadableImage(_ADDRESS.sub("", message)) from None
            reason = file_reason(handle.name)
            shown = self._display(handle.name) if display else None
        if gray.size > LARGE_DECODE_PIXELS:
            release_memory()
        return gray, reason, shown

    def decode_film(self, path, size: int) -> tuple[np.ndarray, dict]:
        """(a run's film at the model's size, the film to look at): decoded under the same budget as uploads (the
        pixel budget, at most CONCURRENT_DECODES at once); UnreadableImage as the readers."""
        with self._decoding:
            gray = resize_square(read_grayscale(path, draft_size=size, max_pixels=self.max_pixels), size)  # as the run
            shown = self._display(path)
        release_memory()
        return gray, shown

    def _display(self, path: str) -> dict:
        return display_record(path, self.max_pixels)

    def answer(
        self,
        content: bytes,
        filename: str,
        method: str = "gradcam",
        timeout: float | None = None,
        reliance: bool = False,
        display: bool = False,
    ) -> dict:
        """Decode an upload and explain it (with reliance, the decision-reliance check; with display, the film at up
        to DISPLAY_MAX_SIDE px for the viewer: each only when asked); UnreadableImage on a bad upload, ServiceBusy
        when it cannot be answered within the time budget (its computation is then cancelled). While requests are
        being decoded the batcher waits (at most the window) for them to join its batch; with none on the way it
        runs at once."""
        started = time.monotonic()
        budget = self.request_timeout_s if timeout is None else float(timeout)
        with self._lock:
            self._arriving += 1
        try:
            original, reason, shown = self.decode(content, filename, display)
            gray = resize_square(original, self.size)
            del original
            parts = self._film_parts(gray)
            job = Job(gray, reason, method, started + budget, lungs=parts[1], body=parts[0], reliance=reliance)
            self.jobs.put(job)
        finally:
            with self._lock:
                self._arriving -= 1
        try:
            probability, maps_row, verdict, relied = job.future.result(
                timeout=max(0.0, job.deadline - time.monotonic())
            )
        except (TimeoutError, _Abandoned):
            job.abandoned.set()
            job.future.cancel()
            raise ServiceBusy(
                f"no answer within the server's time budget of {budget:g} s (other films were being explained); "
                "the work was cancelled: try again"
            ) from None
        answer = self._answer(job.gray, parts, probability, maps_row, verdict, method)
        return answer | {"reliance": relied, "display": shown}

    @staticmethod
    def _film_parts(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """(body, lungs, the film as PNG base64): the answer's parts that do not depend on the model, computed before
        the film is queued (its lungs also serve --focus lungs)."""

        body = body_mask(gray)
        return body, classical_lungs(gray, body=body), png_base64(gray)  # lungs: for the measures and contours

    def _collect(self) -> list[Job]:
        batch = [self.jobs.get()]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self.jobs.get_nowait())
                continue
            except queue.Empty:
                pass
            if self._arriving == 0 or time.monotonic() >= deadline:
                return batch
            time.sleep(0.0005)
        return batch

    def work_forever(self) -> None:
        """Explain queued films in batches until the process ends."""

        silence_this_thread()
        while True:
            batch = self._collect()
            for method in {job.method for job in batch}:
                group = [job for job in batch if job.method == method]
                try:
                    self._run(group, method)
                except Exception as exc:  # one bad batch fails its requests, never the worker
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)

    def _run(self, jobs: list[Job], method: str) -> None:
        jobs = [job for job in jobs if not job.expired() and job.future.set_running_or_notify_cancel()]
        if not jobs:
            return  # every request timed out while queued: nothing to compute
        # Focused with the body and lungs each request estimated, not a second estimate.
        images, boxes = zip(*(self.session.reads.read_one(job.gray, job.lungs, job.body) for job in jobs))
        focused = Focused(np.stack(images), np.array(boxes), [])

        def stop_when_abandoned(module, args):  # every forward pass (ScoreCAM runs thousands) checks the clock
            if all(job.expired() for job in jobs):
                raise _Abandoned()

        hook = self.session.model.register_forward_pre_hook(stop_when_abandoned)
        try:
            with self.session.running():
                result = make_cam(self.session.model, method, batch_size=self.max_batch, device=self.session.device)(
                    focused.images, target="pred", description="Serving"
                )
            maps = self.session.reads.on_film(result.maps, focused.boxes, grid=self.size)
            reasons = [job.reason or image_reason(job.gray) for job in jobs]
            found = self.session.judge(result.features, reasons)
            with self.session.running():
                relied = [self._reliance(job) if job.reliance else None for job in jobs]
        finally:
            hook.remove()
        self.batches_run += 1
        for i, job in enumerate(jobs):
            job.future.set_result((float(result.probs[i]), maps[i], found[i], relied[i]))

    def _reliance(self, job: Job) -> dict:
        """The decision-reliance check (analysis/reliance.py) on one film, lungs estimated: p(PNEUMONIA) of every
        variant, each read as the model reads a film."""
        variants = variant_images(job.gray, job.lungs)
        inputs = np.stack([self.session.reads.read_one(variants[name], job.lungs, job.body)[0] for name in VARIANTS])
        probs = probability(
            predict_logits(self.session.model, inputs, len(VARIANTS), self.session.device, description="Reliance")
        )
        return {
            "probability": {name: float(p) for name, p in zip(VARIANTS, probs)},
            "lungs": "estimated (classical)",
            "note": "what the model answers with the film's lungs removed and with only its lungs kept (grey fill "
            "or heavy blur behind a feathered edge); such films are unlike real ones, so read the change, not the "
            "values",
        }

    def _answer(self, gray, parts, probability, maps_row, verdict, method) -> dict:

        heat = upsample(maps_row[None], self.size)
        body, lungs, film_png = parts
        measures = attention_measures(heat, gray[None], lungs[None], np.ones(1, bool), bodies=body[None])
        # The viewer's map layer at most 56 px a side: the browser scales it smoothly to the film's size, and a
        # 224 px RGBA PNG per request costs more than the rest of the answer's pictures.
        layer = upsample(maps_row[None], max(HEAT_LAYER_SIDE, maps_row.shape[-1]))[0]
        decision = CLASS_NAMES[int(self.session.decide(probability))]
        return {
            "probability": probability,
            "prediction": decision,
            "threshold": self.session.threshold,
            "in_distribution": bool(verdict.in_distribution),
            "ood_score": None if not np.isfinite(verdict.ood_score) else float(verdict.ood_score),
            "ood_reason": verdict.ood_reason,
            "method": method,
            "regions": {
                "shares": {r: finite_or_none(measures.shares[r][0]) for r in REGIONS},
                "ratios": {r: finite_or_none(measures.ratios[r][0]) for r in REGIONS},
                "pointing_lungs": finite_or_none(measures.pointing_lungs[0]),
                "lung_source": "estimated (classical)",
            },
            "overlay_png_base64": base64.b64encode(overlay_png(gray, heat[0], compress_level=1)).decode("ascii"),
            "film_png_base64": film_png,
            "heatmap_png_base64": png_base64(heat_rgba(layer)),
            "contours_png_base64": png_base64(
                contour_rgba({"lungs": lungs, "body": body}, {"lungs": (0, 255, 120), "body": (255, 255, 255)})
            ),
            "model": self.provenance(),
        }


def display_record(path: str | os.PathLike, max_pixels: int | None = None) -> dict:
    """The film for people to look at, as the viewer takes it (an answer's and a run case's "display"): at up to
    DISPLAY_MAX_SIDE px on its long side, with the window to show it with first; UnreadableImage as the readers."""
    gray, window = read_display(path, DISPLAY_MAX_SIDE, max_pixels=max_pixels)
    return {"film_png_base64": png_base64(gray), "width": int(gray.shape[1]), "height": int(gray.shape[0]),
            "window": window}  # fmt: skip


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_memory() -> None:
    """Hand the heap a large decode freed back to the system: glibc keeps it otherwise, and the server's resident
    memory would stay at its largest film's peak. A no-op where the C library is not glibc."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@functools.cache
def colour_scale() -> np.ndarray:
    """The map's colours from 0 (left) to 1 (right) as the overlay draws them, opaque: 256 x 12 RGB."""
    ramp = np.linspace(0.0, 1.0, 256)
    return np.repeat(jet(ramp)[None, :, :3], 12, axis=0)


def finite_or_none(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
