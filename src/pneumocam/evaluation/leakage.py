"""What a model saw, and whether the images it is scored on are among them.

A checkpoint records, for every image used to train it and every image used to select its epoch and
threshold, the SHA-1 of the file's bytes and the patient id. Evaluation compares the evaluated files
against both: a film copied under another name is still caught by its content, and another film of a
patient the model trained on is caught by the patient id. Non-zero counts mean the scores are not held-out.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pneumocam.core.errors import PneumocamError
from pneumocam.core.outputs import write_csv
from pneumocam.data.readers import file_stamp, read_bytes, tar_member

N_EXAMPLES = 10


class LeakageError(PneumocamError):
    """Evaluated images overlap what the model saw, and --strict was given."""


def file_sha1(path: str | Path) -> str:
    """SHA-1 of the file's bytes; remembered per (path, size, mtime), so a --strict pre-check costs no second read."""
    return _sha1(str(path), file_stamp(path))


@functools.lru_cache(maxsize=100_000)
def _sha1(path: str, stamp: str) -> str:
    if tar_member(path):  # a film inside a tar shard: the same hash as the file it was written from
        return hashlib.sha1(read_bytes(path)).hexdigest()
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seen_record(samples) -> dict:
    """The compact record stored in model.pt: content hashes and patient ids (sorted, no duplicates)."""
    return {
        "sha1": sorted({file_sha1(s.path) for s in samples}),
        "patients": sorted({s.patient_id for s in samples if s.patient_id is not None}),
        "n_images": len(samples),
    }


def inherit_seen(own: dict, earlier: dict | None, origin: str) -> dict:
    """This training's seen record joined with the one of the checkpoint it started from (--weights model.pt): films
    that trained or selected the starting weights were seen by the new model too, whatever its own split says."""
    if not earlier:
        return own
    joined = {}
    for part in ("training", "selection"):
        hashes = sorted(set(own[part]["sha1"]) | set(earlier[part]["sha1"]))
        patients = sorted(set(own[part]["patients"]) | set(earlier[part]["patients"]))
        joined[part] = {"sha1": hashes, "patients": patients, "n_images": len(hashes)}
    return joined | {"inherited_from": origin}


@dataclass
class Leakage:
    n_images_evaluated: int
    n_images_seen_in_training: int | None  # None: the checkpoint holds no record (written before it existed)
    n_images_seen_in_selection: int | None
    n_patients_shared_with_training: int | None
    n_patients_shared_with_selection: int | None
    examples: list[str] = field(default_factory=list)  # the first evaluated paths that overlap, by path order
    recorded: bool = True
    rows: list[tuple[str, str]] = field(
        default_factory=list, repr=False
    )  # every overlapping path and why (leakage.csv)

    @property
    def found(self) -> bool:
        counts = (
            self.n_images_seen_in_training,
            self.n_images_seen_in_selection,
            self.n_patients_shared_with_training,
            self.n_patients_shared_with_selection,
        )
        return any(c for c in counts)

    def message(self) -> str:
        if not self.recorded:
            return "this checkpoint does not record what it was trained on: leakage could not be checked"
        if not self.found:
            n = self.n_images_evaluated
            return f"none of the {n} evaluated images or their patients were seen in training or selection"
        return (
            f"LEAKAGE: of {self.n_images_evaluated} evaluated images, {self.n_images_seen_in_training} were used in "
            "training and "
            f"{self.n_images_seen_in_selection} in selection (epoch / threshold); "
            f"{self.n_patients_shared_with_training} "
            f"patients also appear in training and {self.n_patients_shared_with_selection} in selection. These scores "
            "are not "
            f"held-out. First examples: {', '.join(self.examples[:3])}"
        )

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "rows"}

    def write_csv(self, path) -> None:

        write_csv(path, ["path", "seen_as"], self.rows)


def check_leakage(metadata: dict, samples, hashes: list[str] | None = None) -> Leakage:
    """Compare evaluated samples (path, patient_id) with the checkpoint's record of training and selection images."""
    seen = metadata.get("seen")
    ordered = sorted(samples, key=lambda s: s.path)
    if not seen:
        return Leakage(len(ordered), None, None, None, None, [], recorded=False)
    hashes = (
        [file_sha1(s.path) for s in ordered]
        if hashes is None
        else [hashes[i] for i in sorted(range(len(samples)), key=lambda i: samples[i].path)]
    )
    training, selection = seen["training"], seen["selection"]
    train_hashes, select_hashes = set(training["sha1"]), set(selection["sha1"])
    train_patients, select_patients = set(training["patients"]), set(selection["patients"])
    in_train = [h in train_hashes for h in hashes]
    in_select = [h in select_hashes for h in hashes]
    patients = {s.patient_id for s in ordered if s.patient_id is not None}
    shares_patient = [
        s.patient_id is not None and (s.patient_id in train_patients or s.patient_id in select_patients)
        for s in ordered
    ]
    rows = []
    for s, a, b, c in zip(ordered, in_train, in_select, shares_patient):
        kinds = [
            k
            for k, hit in (("training image", a), ("selection image", b), ("patient seen in training or selection", c))
            if hit
        ]
        if kinds:
            rows.append((s.path, "; ".join(kinds)))
    return Leakage(
        len(ordered),
        sum(in_train),
        sum(in_select),
        len(patients & train_patients),
        len(patients & select_patients),
        [r[0] for r in rows[:N_EXAMPLES]],
        rows=rows,
    )


def refuse_seen(metadata: dict, samples) -> None:
    """--strict, before anything is written: a LeakageError if any of these films, or their patients, trained or
    selected the model (the one pre-check of `evaluate` and `run --checkpoint`)."""
    enforce(check_leakage(metadata, samples), True, print)


def enforce(leakage: Leakage, strict: bool, warn) -> None:
    """Warn on any overlap; with strict, stop (the CLI turns the error into exit status 2)."""
    if leakage.found:
        if strict:
            raise LeakageError(leakage.message() + " (--strict)")
        warn(leakage.message())
