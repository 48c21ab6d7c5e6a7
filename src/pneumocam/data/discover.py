"""Find the images of a dataset: the Kermany folder layout or a CSV manifest.

Discovery only lists files; decoding happens when a split is loaded (data.cache), which
adds unreadable files to the skip list.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from pneumocam import CLASS_NAMES
from pneumocam.core.errors import DataError
from pneumocam.data.readers import MEMBER_SEPARATOR, file_stamp, is_hidden, is_image_name
from pneumocam.data.split import family_from_name, patient_id_from_name

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLITS = ("train", "val", "test")
STRATA = ("view", "sex", "age")  # manifest columns read as strata (age in AGE_BANDS)
AGE_BANDS = ((0, 18, "<18"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 200, "60+"))


def age_band(value: str) -> str | None:
    """A manifest's age (years) as its band in AGE_BANDS; None when it is no plausible age."""
    try:
        age = float(value)
    except ValueError:
        return None
    return next((name for low, high, name in AGE_BANDS if low <= age < high), None)


def manifest_strata(row: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The recorded strata of a manifest row (lower-cased column names), banded where they are numbers."""
    found = []
    for name in STRATA:
        value = (row.get(name) or "").strip()
        value = age_band(value) if name == "age" and value else value
        if value:
            found.append((name, value))
    return tuple(found)


LABEL_ALIASES = {"normal": 0, "0": 0, "pneumonia": 1, "1": 1}


@dataclass(frozen=True)
class Sample:
    path: str
    label: int  # 0 NORMAL, 1 PNEUMONIA
    split: str
    patient_id: str | None  # None when the name carries no patient id
    family: str | None = None  # the acquisition family (data/split.py), from the name or a manifest column
    population: str | None = None  # where the film comes from: a manifest's population / site column, else its root
    strata: tuple[tuple[str, str], ...] = ()  # recorded confounders (STRATA): (name, value), e.g. ("view", "AP")


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class DatasetIndex:
    root: str
    source: str  # "folders", "manifest" or "webdataset"
    samples: list[Sample]
    ignored_hidden: int = 0
    ignored_non_image: int = 0
    unknown_folders: list[str] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        present = {s.split for s in self.samples}
        return [s for s in SPLITS if s in present]

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            hint = " (try --eval-split val)" if name == "test" else ""
            raise DataError(
                f"the dataset at {self.root} has no '{name}' split{hint}: expected "
                f"{os.path.join(self.root, name)}/{{NORMAL,PNEUMONIA}}/ with images; found splits: "
                f"{', '.join(self.splits) or 'none'}"
            )
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for split in self.splits:
            members = [s for s in self.samples if s.split == split]
            table[split] = {c: sum(1 for s in members if s.label == i) for i, c in enumerate(CLASS_NAMES)}
        return table


def _list_class_folder(folder: Path, split: str, label: int, index: DatasetIndex) -> list[Sample]:
    found: list[Sample] = []
    # Nested subfolders are read too; links to folders are not followed, so a link loop cannot hang us.
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            if is_hidden(name):
                index.ignored_hidden += 1
            elif not is_image_name(name):
                index.ignored_non_image += 1
            else:
                found.append(
                    Sample(
                        os.path.join(dirpath, name), label, split, patient_id_from_name(name), family_from_name(name)
                    )
                )
    return found


def _match_children(folder: Path, names: dict[str, object]) -> tuple[dict[object, Path], list[Path]]:
    """Map child folders to canonical names, case-insensitively; also return the unknown ones."""
    matched: dict[object, Path] = {}
    unknown: list[Path] = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir() or is_hidden(child.name):
            continue
        key = names.get(child.name.lower())
        if key is None:
            unknown.append(child)
        elif key in matched:
            raise DataError(f"{folder} holds two folders for '{key}': {matched[key].name} and {child.name}; keep one")
        else:
            matched[key] = child
    return matched, unknown


def discover(root: str | os.PathLike) -> DatasetIndex:
    """Index a dataset laid out as ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/ (names case-insensitive), a CSV
    manifest, or WebDataset tar shards (shards/cxr-{000000..000009}.tar)."""
    if is_shard_spec(root):
        return index_shards(str(root))
    root_path = Path(root)
    if not root_path.exists():
        raise DataError(f"dataset folder not found: {root_path}")
    if root_path.is_file() and root_path.suffix.lower() == ".csv":
        return read_manifest(root_path)
    if not root_path.is_dir():
        raise DataError(f"{root_path} is neither a dataset folder nor a .csv manifest")
    index = DatasetIndex(root=str(root_path), source="folders", samples=[])
    split_dirs, unknown = _match_children(root_path, SPLIT_ALIASES)
    if not split_dirs:
        classes, _ = _match_children(root_path, {c.lower(): c for c in CLASS_NAMES})
        hint = " It holds NORMAL/PNEUMONIA directly: put them in a split folder such as test/." if classes else ""
        raise DataError(
            f"no split folders in {root_path}: expected {root_path}/train/, val/ or test/, each holding "
            f"NORMAL/ and PNEUMONIA/ (or pass a CSV manifest with path,label[,patient_id][,split]).{hint}"
        )
    index.unknown_folders.extend(str(p) for p in unknown)
    for split in SPLITS:
        if split not in split_dirs:
            continue
        split_dir = split_dirs[split]
        class_dirs, unknown_classes = _match_children(split_dir, {c.lower(): i for i, c in enumerate(CLASS_NAMES)})
        index.unknown_folders.extend(str(p) for p in unknown_classes)
        for label, name in enumerate(CLASS_NAMES):
            if label not in class_dirs:
                raise DataError(
                    f"{split_dir} has no {name} folder: expected {split_dir}/NORMAL/ and {split_dir}/PNEUMONIA/"
                )
            listed = _list_class_folder(class_dirs[label], split, label, index)
            samples = [replace(s, population=root_path.name) for s in listed]
            if not samples:
                raise DataError(f"{class_dirs[label]} holds no images: expected .jpeg, .png, .tif, .bmp or .dcm files")
            index.samples.extend(samples)
    return index


def read_manifest(path: str | os.PathLike) -> DatasetIndex:
    """Index a CSV manifest with columns path,label[,patient_id][,split][,family]; paths relative to the CSV."""
    path = Path(path)
    base = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read manifest {path}: {exc}") from exc
    if not rows:
        raise DataError(f"manifest {path} has no rows: expected a header path,label[,patient_id][,split]")
    columns = {c.strip().lower() for c in rows[0] if c}
    if "label" not in columns and {"population", "path"} <= columns:
        return read_populations(path, rows)
    if not {"path", "label"} <= columns:
        raise DataError(f"manifest {path} needs columns 'path' and 'label'; found: {', '.join(sorted(columns))}")
    index = DatasetIndex(root=str(path), source="manifest", samples=[])
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        label = LABEL_ALIASES.get(row["label"].lower())
        if label is None:
            raise DataError(f"{path}, line {line}: label '{row['label']}' is not NORMAL, PNEUMONIA, 0 or 1")
        split = SPLIT_ALIASES.get(row.get("split", "").lower() or "train")
        if split is None:
            raise DataError(f"{path}, line {line}: split '{row['split']}' is not train, val or test")
        file_path = row["path"] if os.path.isabs(row["path"]) else str(base / row["path"])
        patient = row.get("patient_id") or patient_id_from_name(os.path.basename(file_path))
        family = row.get("family") or family_from_name(os.path.basename(file_path))
        population = row.get("population") or row.get("site") or base.name or None
        strata = manifest_strata(row)
        index.samples.append(Sample(file_path, label, split, patient, family, population, strata))
    for split in index.splits:
        labels = {s.label for s in index.samples if s.split == split}
        for label, name in enumerate(CLASS_NAMES):
            if label not in labels:
                raise DataError(f"manifest {path}: the '{split}' split has no {name} images")
    return index


def read_populations(path: Path, rows: list[dict]) -> DatasetIndex:
    """A manifest of datasets (columns population,path[,split]): each path a dataset folder or manifest (relative to
    this CSV), its films tagged with the row's population; a split given moves all of that dataset's films there
    (e.g. a second population evaluated whole as test). Patient ids become POPULATION:ID."""
    index = DatasetIndex(root=str(path), source="populations", samples=[])
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        name, where = row["population"], row["path"]
        if not name or name in seen:
            raise DataError(f"{path}, line {line}: each dataset needs its own population name (got '{name}')")
        seen.add(name)
        split = SPLIT_ALIASES.get(row.get("split", "").lower()) if row.get("split") else None
        if row.get("split") and split is None:
            raise DataError(f"{path}, line {line}: split '{row['split']}' is not train, val or test")
        target = Path(where) if os.path.isabs(where) else path.parent / where
        if target.suffix.lower() == ".csv" and target.is_file():
            with open(target, newline="", encoding="utf-8-sig") as f:
                header = {c.strip().lower() for c in next(csv.reader(f), [])}
            if "label" not in header:
                raise DataError(f"{path}, line {line}: {target} is itself a manifest of datasets (one level only)")
        member = discover(target)
        # Patient ids are scoped by population: two datasets' patient "1280" are not one person.
        index.samples.extend(
            replace(s, population=name, split=split or s.split, patient_id=s.patient_id and f"{name}:{s.patient_id}")
            for s in member.samples
        )
        index.ignored_hidden += member.ignored_hidden
        index.ignored_non_image += member.ignored_non_image
        index.unknown_folders.extend(member.unknown_folders)
    return index


def is_shard_spec(root: str | os.PathLike) -> bool:
    return os.fspath(root).lower().endswith(".tar")


def index_shards(spec: str) -> DatasetIndex:
    """Index WebDataset tar shards (a path or a brace pattern): one pass over each shard's headers and its small
    metadata members, no image decoded. A sample is a key's image member (image.png, image.jpeg, image.dcm, or
    any image suffix) with its label from `json` ({"label", "split", "patient_id"}) or `cls` (0/1 or the class
    name); films are named SHARD.tar::MEMBER and read from the shard in place."""

    from braceexpand import braceexpand  # deferred: only shard patterns need it

    index = DatasetIndex(root=spec, source="webdataset", samples=[])
    for shard in braceexpand(spec):
        if not os.path.isfile(shard):
            raise DataError(f"shard not found: {shard} (from {spec})")
        keys: dict[str, dict] = {}
        try:
            with tarfile.open(shard, "r:") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    directory, _, base = member.name.rpartition("/")
                    stem, _, suffix = base.partition(".")
                    entry = keys.setdefault(f"{directory}/{stem}", {})
                    if suffix in ("json", "cls"):
                        entry[suffix] = archive.extractfile(member).read().decode("utf-8", "replace")
                    elif is_image_name(base):
                        entry["image"] = member.name
        except tarfile.TarError as exc:
            raise DataError(f"{shard} is not a readable tar shard: {exc}") from exc
        for key, entry in keys.items():
            if "image" not in entry:
                continue
            meta = _shard_meta(entry, shard, key)
            label = LABEL_ALIASES.get(str(meta.get("label", "")).strip().lower())
            if label is None:
                raise DataError(f"{shard}, sample {key}: label '{meta.get('label')}' is not NORMAL, PNEUMONIA, 0 or 1")
            split = SPLIT_ALIASES.get(str(meta.get("split") or "train").lower())
            if split is None:
                raise DataError(f"{shard}, sample {key}: split '{meta['split']}' is not train, val or test")
            path = f"{shard}{MEMBER_SEPARATOR}{entry['image']}"
            patient = meta.get("patient_id") or patient_id_from_name(str(meta.get("source") or entry["image"]))
            index.samples.append(Sample(path, label, split, patient))
    if not index.samples:
        raise DataError(f"no labelled images in the shards {spec}: expected members KEY.image.png and KEY.json")
    return index


def _shard_meta(entry: dict, shard: str, key: str) -> dict:
    if "json" in entry:
        try:
            meta = json.loads(entry["json"])
        except json.JSONDecodeError as exc:
            raise DataError(f"{shard}, sample {key}: the json member is not valid JSON: {exc}") from exc
        if isinstance(meta, dict) and "label" in meta:
            return meta
    if "cls" in entry:
        return {"label": entry["cls"]}
    raise DataError(f"{shard}, sample {key}: no label (a json member with 'label' or a cls member)")


def fingerprint(samples: list[Sample]) -> str:
    """A short hash of the file list, sizes and modification times: identifies the data a run saw."""
    digest = hashlib.sha256()
    for sample in sorted(samples, key=lambda s: s.path):
        try:
            digest.update(
                f"{sample.path}\0{sample.label}\0{file_stamp(sample.path)}\n".encode("utf-8", "surrogateescape")
            )
        except OSError:
            digest.update(f"{sample.path}\0{sample.label}\0missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]
