"""Fitting the domain-shift guard (model/guard.py) on the selected model's features, stored in model.pt: per part,
the training films kept for a nearest-neighbour distance (a new model's guard), or class means and a Ledoit-Wolf
covariance (a Mahalanobis part: a foreign model's guard, formats 1-3). One fit, used at the end of training and by
`pneumocam guard fit`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from pneumocam.core.defaults import BATCH_SIZE, SEED
from pneumocam.core.precision import autocast
from pneumocam.data import PreparedData, prepare_data
from pneumocam.model.forward import extract_features
from pneumocam.model.guard import (
    COVERAGE,
    GUARD_PARTS,
    MAX_NEIGHBOURS,
    CombinedGuard,
    Guard,
    NeighbourGuard,
    save_guard,
)  # fmt: skip
from pneumocam.model.inputs import ModelInputs
from pneumocam.model.network import COLUMN_DEPTH, FEATURE_DEPTHS, load_checkpoint, pooled_columns
from pneumocam.train.config import TrainConfig


def fit_guard(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    coverage: float = COVERAGE,
    columns: tuple[int, int] | None = None,
    depth: str = "",
    components: int | None = None,
) -> Guard:
    """Class means and a Ledoit-Wolf shared covariance on training features (their `columns`, all when None; projected
    on their first `components` principal axes (scikit-learn PCA) when given); the threshold passes `coverage` of the
    validation films."""
    train_features = np.asarray(train_features, dtype=np.float64)
    if columns is not None:
        train_features = train_features[:, columns[0] : columns[1]]
    axes = offset = None
    if components is not None:
        components = min(components, *train_features.shape)  # a few films (tests, quick runs) allow fewer axes
        pca = PCA(components, random_state=0).fit(train_features)
        axes, offset = pca.components_, pca.mean_
        train_features = pca.transform(train_features)
    train_labels = np.asarray(train_labels)
    means = np.stack([train_features[train_labels == c].mean(axis=0) for c in (0, 1)])
    centred = train_features - means[train_labels]
    shrunk = LedoitWolf(assume_centered=True).fit(centred)
    guard = Guard(means, shrunk.precision_, np.inf, {}, columns, depth, axes, offset)
    val_scores = guard.distances(val_features)
    guard.threshold = float(np.quantile(val_scores, coverage))
    projected = f", {components} principal components" if components is not None else ""
    guard.fitted_on = {
        "n_train": int(len(train_features)),
        "n_val": int(len(val_features)),
        "coverage": coverage,
        "shrinkage": float(shrunk.shrinkage_),
        "val_pass_rate": float(np.mean(val_scores <= guard.threshold)),
        "features": f"{depth or 'features'} ({columns[1] - columns[0] if columns else train_features.shape[1]}-d"
        f"{projected})",
    }
    return guard


def fit_neighbour_guard(
    train_features: np.ndarray,
    val_features: np.ndarray,
    scaling: str,
    k: int,
    coverage: float = COVERAGE,
    columns: tuple[int, int] | None = None,
    depth: str = "",
    seed: int = SEED,
) -> NeighbourGuard:
    """The training films' `columns`, scaled (model.guard.SCALINGS; "standardised" with the training films' column
    means and standard deviations), kept for the distance to the k-th nearest (a random `seed`ed subset of
    MAX_NEIGHBOURS films when there are more); the threshold passes `coverage` of the validation films."""
    train_features = np.asarray(train_features, dtype=np.float64)
    if columns is not None:
        train_features = train_features[:, columns[0] : columns[1]]
    if len(train_features) > MAX_NEIGHBOURS:
        keep = np.sort(np.random.default_rng(seed).choice(len(train_features), MAX_NEIGHBOURS, replace=False))
        train_features = train_features[keep]
    centre = scale = None
    if scaling == "standardised":
        centre, scale = train_features.mean(axis=0), np.maximum(train_features.std(axis=0), 1e-6)
    k = min(k, len(train_features))  # a few films (tests, quick runs) allow fewer neighbours
    guard = NeighbourGuard(train_features, k, scaling, np.inf, {}, columns, depth, centre, scale)
    guard.bank = guard.rescaled(train_features)
    val_scores = guard.distances(val_features)
    guard.threshold = float(np.quantile(val_scores, coverage))
    guard.fitted_on = {
        "n_train": int(len(train_features)),
        "n_val": int(len(val_features)),
        "coverage": coverage,
        "val_pass_rate": float(np.mean(val_scores <= guard.threshold)),
        "features": f"{depth or 'features'} ({train_features.shape[1]}-d, {scaling}, distance to the k-th nearest "
        f"training film, k = {k})",
    }
    return guard


def fit_combined_guard(parts: list[Guard | NeighbourGuard], val_features: np.ndarray, coverage: float = COVERAGE):
    """Fitted parts combined: each part's log distance standardised by its mean and spread on the validation films,
    summed; the threshold passes `coverage` of the validation films."""
    logs = [np.log(np.maximum(part.distances(val_features), 1e-12)) for part in parts]
    guard = CombinedGuard(parts, [float(v.mean()) for v in logs], [float(v.std()) or 1.0 for v in logs], np.inf, {})
    val_scores = guard.distances(val_features)
    guard.threshold = float(np.quantile(val_scores, coverage))
    guard.fitted_on = {
        "n_train": parts[0].fitted_on["n_train"],
        "n_val": int(len(val_features)),
        "coverage": coverage,
        "val_pass_rate": float(np.mean(val_scores <= guard.threshold)),
        "features": " + ".join(part.fitted_on["features"] for part in parts),
    }
    if all(isinstance(part, NeighbourGuard) for part in parts):
        guard.fitted_on["method"] = "nearest neighbours"
    else:
        guard.fitted_on["shrinkage"] = [part.fitted_on.get("shrinkage") for part in parts]
    return guard


def guard_features(model, prepared: PreparedData, batch_size: int, device) -> list:
    """The model's pooled features of the training and validation films, in that order, the forward run only as deep
    as the guard's parts read (layer1 for format 4: about a fifth of the network's work)."""
    deepest = max((COLUMN_DEPTH[name] for name in GUARD_PARTS), key=FEATURE_DEPTHS.index)
    return [
        extract_features(
            model, part.images, batch_size, device, f"Guard features ({name})", head_only=False, deepest=deepest
        )
        for name, part in (("train", prepared.train), ("val", prepared.val))
    ]


def fit_model_guard(
    checkpoint: Path, prepared: PreparedData, config: TrainConfig, device, features=None, model=None, precision=None
) -> dict:
    """Fit the guard on the checkpoint's features of the training and validation films (as the model reads them) and
    store it in model.pt. features: (train, val) pooled features of every depth already computed (frozen mode);
    else they are computed with config's batch size in `precision` (the training's, resolved by fit; None: fp32).
    model: the checkpoint's network when the caller has it loaded (with features given, only its shape is read)."""
    if model is None:
        model, _ = load_checkpoint(checkpoint, device)
    if features is None:
        with autocast(precision, device):
            features = guard_features(model, prepared, config.batch_size, device)
    columns = pooled_columns(model)
    train, val = (np.asarray(part) for part in features)
    parts = [
        fit_neighbour_guard(train, val, scaling, k, columns=columns[name], depth=name)
        for name, (scaling, k) in GUARD_PARTS.items()
    ]
    guard = fit_combined_guard(parts, val)
    save_guard(checkpoint, guard)
    return guard.fitted_on | {"threshold": guard.threshold}


def fit_checkpoint_guard(checkpoint, data: str | None = None, batch_size: int = BATCH_SIZE, device="cpu") -> dict:
    """`pneumocam guard fit`: the guard of an existing model.pt, fitted in fp32 on the films its own plan names (same
    split, seed, held-out part and focus). data: the dataset, if it moved since training."""
    model, meta = load_checkpoint(checkpoint, device)
    values = dict(meta["config"]) | ({"data": str(data)} if data is not None else {})
    config = TrainConfig(**values)
    prepared, _ = ModelInputs.of_training(config).prepared(prepare_data(config))
    features = guard_features(model, prepared, batch_size, device)
    return fit_model_guard(checkpoint, prepared, config, device, features, model)
