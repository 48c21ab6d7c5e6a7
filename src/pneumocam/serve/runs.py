"""Read-only access to the run folders under --runs, every one of them treated as hostile.

A run is a direct child folder of the runs folder that resolves inside it (a link out is listed as broken, never
followed). Every file the server sends from a run resolves inside that run folder, and is read through
core.runfiles (size, depth, types and array shapes checked before it is parsed). A film is sent only when the
run's predictions.csv and heatmaps.npz both list it, it has an image name, and its listed path lies inside the run
folder (then its real path must too) or belongs to the dataset the run recorded (inside its folder, listed by its
manifest, in one of its shards: then it may be a link, datasets are often built of links to make splits) AND lies
under a folder the server was given with --data-root: a run cannot claim any other folder as its dataset.
Problems are answered as HTTPError with a message that names what is wrong with the run, never where the server
keeps it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from pneumocam import CLASS_NAMES
from pneumocam.core.errors import PneumocamError
from pneumocam.core.runfiles import (
    ParsedCache,
    RunFileError,
    inside,
    read_heatmaps_checked,
    read_results,
    read_table,
    resolves_inside,
)
from pneumocam.core.schema import (
    HEATMAPS,
    IMPORTANCE,
    PREDICTIONS,
    REPORT_HTML,
    RESULTS,
    decision_key,
    recorded_decision,
)
from pneumocam.data.discover import read_manifest
from pneumocam.data.readers import is_image_name, tar_member

_MAX_NAME = 255


class HTTPError(Exception):
    """status and a message safe to show to the client."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _clean_text(text: str) -> bool:
    return bool(text) and len(text) <= 4096 and not any(ord(c) < 32 or ord(c) == 127 for c in text)


def in_dataset(path: str, data: str) -> bool:
    """True when a film path belongs to the dataset a run recorded: inside its folder, listed by its CSV manifest,
    or (SHARD.tar::MEMBER) in a shard of its folder. Never a dataset at the file system's root."""
    if not os.path.isabs(data) or os.path.normpath(data) == os.path.sep:
        return False
    member = tar_member(path)
    if data.lower().endswith(".tar"):  # shards, maybe a brace pattern: their folder
        return member is not None and inside(Path(member[0]), Path(os.path.dirname(data)))
    if data.lower().endswith(".csv"):
        try:
            stamp = os.stat(data).st_mtime_ns
        except OSError:
            return False
        return os.path.normpath(path) in _manifest_paths(data, stamp)
    return inside(Path(member[0] if member else path), Path(data))


@functools.lru_cache(maxsize=8)
def _manifest_paths(manifest: str, stamp: int) -> frozenset[str]:
    """The film paths a manifest lists (one read per version of the file)."""
    try:
        return frozenset(os.path.normpath(s.path) for s in read_manifest(manifest).samples)
    except PneumocamError:
        return frozenset()


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


class RunBrowser:
    """The runs folder: list runs (broken ones with their reason), read one run's table, find its films."""

    def __init__(self, runs: Path | None, data_roots: tuple[Path, ...] = ()):
        """data_roots: the folders whose films a run may point to (`serve --data-root`); a run's own folder always.
        The file system's root is refused: it would let a run name any image on the machine."""
        self.root = Path(runs).resolve() if runs else None
        self.data_roots = tuple(Path(os.path.abspath(r)) for r in data_roots)
        for root in self.data_roots:
            if os.path.normpath(os.path.realpath(root)) == os.path.sep:
                raise PneumocamError("--data-root may not be the file system's root: name the data folder itself")
        self._parsed = ParsedCache()

    # ------------------------------------------------------------------------------------------- runs

    def names(self) -> list[str]:
        if self.root is None or not self.root.is_dir():
            return []
        try:
            children = sorted(self.root.iterdir())
        except OSError:
            return []
        return [p.name for p in children if p.is_dir() and not p.name.startswith(".")]

    def folder(self, name: str) -> Path:
        """The run's folder; 404 for any name that is not a plain child of the runs folder resolving inside it."""
        unknown = HTTPError(404, "unknown run")
        if self.root is None or not _clean_text(name) or len(name) > _MAX_NAME:
            raise unknown
        if "/" in name or "\\" in name or name in (".", ".."):
            raise unknown
        folder = self.root / name
        if not folder.is_dir():
            raise unknown
        if not resolves_inside(folder, self.root) or folder.resolve().parent != self.root:
            raise HTTPError(404, "this run folder is a link to outside the runs folder")
        return folder

    def _file(self, name: str, file: str) -> Path:
        """A file of a run, 404 unless it is a regular file whose real path stays inside the run folder."""
        folder = self.folder(name)
        path = folder / file
        if not path.is_file():
            raise HTTPError(404, f"this run has no {file}")
        if not resolves_inside(path, folder):
            raise HTTPError(404, f"this run's {file} is a link to outside the run folder")
        return path

    def results(self, name: str) -> dict:
        """results.json checked (core.runfiles: size, depth, types) and parsed once per version of the file."""
        return self._read(self._file(name, RESULTS), read_results)

    def _read(self, path: Path, parse):
        try:
            return self._parsed.get(path, parse)
        except RunFileError as exc:
            raise HTTPError(422, f"this run's {exc}") from None

    def summary(self, name: str) -> dict:
        """The run's headline for the list; a broken run gives {"name", "error"} instead of failing the list."""
        try:
            results = self.results(name)
            metrics = results.get("metrics") if isinstance(results.get("metrics"), dict) else {}
            # accuracy at the threshold the run decided at (its pred columns), as the report gives it
            provenance, metrics = results.get("provenance"), metrics.get(decision_key(metrics))
            if not isinstance(provenance, dict) or not isinstance(metrics, dict):
                raise HTTPError(422, "results.json lacks its provenance or metrics (an unfinished or foreign run)")
            weights = provenance.get("weights") if isinstance(provenance.get("weights"), dict) else {}
            return {
                "name": name,
                "eval_split": str(provenance.get("eval_split", "")),
                "n": _number(metrics.get("n")),
                "accuracy": _number(metrics.get("accuracy")),
                "roc_auc": _number(metrics.get("roc_auc")),
                "weights": weights.get("description"),
                "report": f"/runs/{name}/report.html",
                "error": None,
            }
        except HTTPError as exc:
            return {"name": name, "error": exc.detail}

    def case(self, name: str) -> dict:
        """What an exported case's caption says about the run: its method, threshold, model and split. Each value
        is short plain text from results.json, or "unknown" (the run folder is hostile: nothing else is passed on)."""
        results = self.results(name)
        provenance = results.get("provenance") if isinstance(results.get("provenance"), dict) else {}
        config = results.get("config") if isinstance(results.get("config"), dict) else {}
        weights = provenance.get("weights") if isinstance(provenance.get("weights"), dict) else {}
        train = config.get("train") if isinstance(config.get("train"), dict) else {}

        def text(value) -> str:
            value = str(value) if isinstance(value, str | int | float) else ""
            return value[:120] if _clean_text(value) else "unknown"

        checkpoint = text(provenance.get("checkpoint"))
        decided = recorded_decision(results)
        return {
            "run": text(name),
            "method": text(config.get("method")),
            "target": text(config.get("target")),
            # the threshold the run's pred columns were decided at, as its results.json records it
            "threshold": decided[0] if decided else None,
            "threshold_key": text(decided[1]) if decided else "unknown",
            "model": f"{os.path.basename(checkpoint)}, weights {text(weights.get('description'))}, "
            f"recipe {text(train.get('recipe'))}",
            "eval_split": text(provenance.get("eval_split")),
        }

    def report(self, name: str) -> Path:
        return self._file(name, REPORT_HTML)

    # ------------------------------------------------------------------------------------------- films

    def rows(self, name: str) -> list[dict]:
        """predictions.csv joined by path with importance.csv's region shares; 422 naming the first bad line."""
        predictions = self._read(self._file(name, PREDICTIONS), read_table)
        importance = self.folder(name) / IMPORTANCE
        shares: dict[str, dict] = {}
        if importance.is_file() and resolves_inside(importance, self.folder(name)):
            shares = {r.get("path"): r for r in self._read(importance, read_table)}
        out = []
        for line, r in enumerate(predictions, start=2):
            label, pred = self._class(r.get("label")), self._class(r.get("pred"))
            probability = _number(r.get("prob_pneumonia"))
            if label is None or pred is None or probability is None or not r.get("path"):
                raise HTTPError(
                    422, f"predictions.csv line {line}: needs a path, a label and pred of 0 or 1 and a probability"
                )
            extra = shares.get(r["path"]) or {}
            out.append(
                {
                    "path": r["path"],
                    "label": CLASS_NAMES[label],
                    "probability": probability,
                    "prediction": CLASS_NAMES[pred],
                    "correct": label == pred,
                    "in_distribution": r.get("in_distribution", "1") != "0",
                    "lung_share": _number(extra.get("share_lungs")),
                    "outside_body_share": _number(extra.get("share_outside_body")),
                }
            )
        return out

    @staticmethod
    def _class(value) -> int | None:
        return {"0": 0, "1": 1}.get(str(value).strip())

    def film(self, name: str, path: str) -> tuple[Path, int, dict[str, np.ndarray]]:
        """(the film to open, its row in heatmaps.npz, the run's maps) for a path the run lists; 404 otherwise."""
        refused = HTTPError(404, "not a film of this run")
        if not _clean_text(path) or not is_image_name(path):
            raise refused
        folder = self.folder(name)
        if path not in {r["path"] for r in self.rows(name)}:
            raise refused
        provenance = self.results(name).get("provenance") or {}
        data, start = provenance.get("data"), provenance.get("working_directory")
        if isinstance(start, str) and _clean_text(start) and os.path.isabs(start):
            # a run given relative paths recorded where they start; they are read from there, not from wherever
            # the server was started
            path_read = os.path.join(start, path)
            data = os.path.join(start, data) if isinstance(data, str) and _clean_text(data) else data
        else:
            path_read = path
        member = tar_member(path_read)
        listed = Path(member[0] if member else path_read)  # a film in a tar shard: the shard is what is checked
        if inside(listed, folder):
            if not resolves_inside(listed, folder):
                raise refused  # a link inside the run pointing elsewhere
        elif not (isinstance(data, str) and _clean_text(data) and in_dataset(path_read, data)):
            raise refused
        elif not any(inside(listed, root) for root in self.data_roots):
            # what a run may claim: its own folder, or a dataset under a folder the server was told to serve from
            raise HTTPError(404, "this film lies outside the run and outside every --data-root the server was given")
        if not listed.is_file():
            raise HTTPError(404, "this film is no longer where the run found it")
        maps = self.heatmaps(name)  # read once: the film's row and its map come from the same load
        paths = [str(p) for p in maps["paths"]]
        if path not in paths:
            raise HTTPError(404, "this run stored no map for this film")
        return Path(path_read), paths.index(path), maps

    def heatmaps(self, name: str) -> dict[str, np.ndarray]:
        """heatmaps.npz's paths, maps, probs and image_size, each member checked from its header before it is loaded
        (core.runfiles.read_heatmaps_checked), parsed once per version of the file."""
        return self._read(self._file(name, HEATMAPS), read_heatmaps_checked)
