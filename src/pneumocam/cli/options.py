"""Every command-line option, declared once: its type (fixed choices are Enums, so --help lists them and typer
validates them), default and help. Commands take groups of them with @options(...); --config FILE supplies
defaults that the command line overrides, as timm's train.py does.
"""

from __future__ import annotations

import inspect
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pneumocam.core.errors import PneumocamError
from pneumocam.core.precision import PRECISIONS
from pneumocam.train.recipes import recipe_defaults


class Mode(str, Enum):
    frozen = "frozen"
    partial = "partial"
    full = "full"


class Method(str, Enum):
    gradcam = "gradcam"
    hirescam = "hirescam"
    gradcampp = "gradcam++"
    layercam = "layercam"
    eigencam = "eigencam"
    scorecam = "scorecam"


class Target(str, Enum):
    pred = "pred"
    true = "true"
    PNEUMONIA = "PNEUMONIA"
    NORMAL = "NORMAL"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # from the library's own tuple


class ValSource(str, Enum):
    auto = "auto"
    carved = "carved"
    dataset = "dataset"


class SelectBy(str, Enum):
    auc = "auc"
    loss = "loss"
    auc_acc = "auc_acc"


class Calibration(str, Enum):
    temperature = "temperature"
    none = "none"


class Focus(str, Enum):
    none = "none"
    body = "body"
    lungs = "lungs"


class AttentionOn(str, Enum):
    gradcam = "gradcam"
    input = "input"


class Recipe(str, Enum):
    original = "original"
    finetune = "finetune"
    scratch = "scratch"
    focused = "focused"


class Schedule(str, Enum):
    cosine = "cosine"
    constant = "constant"


class ClassWeights(str, Enum):
    auto = "auto"
    balanced = "balanced"
    none = "none"


class EvalSplit(str, Enum):
    test = "test"
    val = "val"
    heldout = "heldout"


class Split(str, Enum):
    test = "test"
    val = "val"
    train = "train"


def _option(annotation, default, help: str, *names: str):
    return annotation, default, typer.Option(*names, help=help)


TRAINING = {
    "mode": _option(
        Mode, Mode.frozen, "frozen (the original: head only, features computed once) | partial (layer4 + head) | full."
    ),
    "weights": _option(str, "imagenet", "imagenet | imagenet-v1 | none | PATH to a local state_dict."),
    "epochs": _option(int, 10, "Training epochs."),
    "batch_size": _option(int, 32, "Images per batch."),
    "image_size": _option(int, 224, "Side of the square model input, in pixels."),
    "lr": _option(Optional[float], None, "AdamW learning rate (default: 1e-3 frozen, 3e-4 partial, 1e-4 full)."),
    "weight_decay": _option(float, 1e-4, "AdamW weight decay."),
    "schedule": _option(Schedule, Schedule.cosine, "Learning-rate schedule over all steps."),
    "class_weights": _option(
        ClassWeights,
        ClassWeights.auto,
        "Loss weights against class imbalance (auto: balanced, or none "
        "with --weighted-sampler, which balances already; both at once is refused).",
    ),
    "weighted_sampler": _option(bool, False, "Draw batches class-balanced instead of weighting the loss."),
    "augment": _option(
        bool, False, "Small rotation, shift, scale, contrast (off in the faithful recipe; never a flip)."
    ),
    "val_source": _option(
        ValSource,
        ValSource.auto,
        "Validation images: auto (the dataset's val if it holds >= 100, else carved), "
        "carved (patients of train) or dataset.",
    ),
    "val_fraction": _option(float, 0.2, "Share of train's images carved for validation, by whole patients."),
    "seed": _option(int, 0, "Seed of the splits, the initialisation, the batches and every random draw."),
    "device": _option(Device, Device.auto, "Where to compute."),
    "precision": _option(
        Precision,
        Precision.auto,
        "The network's arithmetic: auto (bf16 autocast where the CPU has AVX512-BF16 or AMX, or the GPU has bf16; "
        "else fp32), fp32 or bf16. Weights, loss, BatchNorm statistics, calibration and metrics stay fp32.",
    ),
    "select_by": _option(
        SelectBy, SelectBy.auc, "How the best epoch is chosen on validation (loss: the class-weighted training loss)."
    ),
    "max_per_class": _option(Optional[int], None, "Use at most this many images per class (quick runs)."),
    "size_schedule": _option(
        Optional[str], None, "Progressive resizing: size:epochs,... ending at --image-size (e.g. 128:5,224:1)."
    ),
    "focus": _option(
        Focus,
        Focus.none,
        "What the model is shown: the whole film, or cropped to the body / the lungs with the outside of the body "
        "neutral grey (stored in model.pt; maps are put back on the whole film).",
    ),
    "focus_masks": _option(
        Optional[Path],
        None,
        "Lung masks for --focus lungs, laid out like --lung-masks (run: --lung-masks by default); "
        "films without one use the estimate.",
    ),
    "attention_penalty": _option(
        float,
        0.0,
        "Right for the right reasons: add this weight x the share of each training film's Grad-CAM mass outside "
        "its lungs to the loss (films with a mask; 0: off).",
    ),
    "attention_on": _option(
        AttentionOn,
        AttentionOn.gradcam,
        "What the attention penalty measures: the layer4 Grad-CAM map, or the squared input gradient (Ross et al.).",
    ),
    "attention_masks": _option(
        Optional[Path], None, "Lung masks for --attention-penalty, laid out like --lung-masks (run: --lung-masks)."
    ),
    "ema": _option(
        float,
        0.0,
        "Also validate an exponential moving average of the weights with this decay per step (0: off); "
        "model.pt is the better of the two on validation.",
    ),
    "calibration": _option(
        Calibration, Calibration.temperature, "Temperature scaling of the probabilities, fitted on validation."
    ),
    "recipe": _option(
        Optional[Recipe],
        None,
        "A named recipe (original, finetune, scratch, focused: see the README) whose settings are the defaults; "
        "focused continues a scratch model given with --weights.",
    ),
}

PRECISION = {"precision": TRAINING["precision"]}  # the same option on every command that runs the model

EXPLAINING = {
    "method": _option(
        Method,
        Method.gradcam,
        "The class activation map method (gradcam++ and layercam are native and raw; "
        "eigencam and scorecam come normalised from pytorch-grad-cam).",
    ),
    "target": _option(Target, Target.pred, "The class each map explains."),
    "lung_masks": _option(
        Optional[Path], None, "Lung masks laid out MASKS/{split}/{CLASS}/<image stem>.png (0, 255 lung, 127 ignore)."
    ),
    "lung_model": _option(Optional[Path], None, "A lung model from `pneumocam lungs fit`, for images without a mask."),
    "trust_images": _option(int, 16, "Images for the randomisation and deletion / insertion checks (0: skip them)."),
    "include_ood": _option(
        bool, False, "Keep films the domain-shift guard flags in the group statistics (they are left out by default)."
    ),
    "strict": _option(
        bool, False, "Stop (exit 2) if any evaluated image or its patient was used to train or select the model."
    ),
}

STATISTICS = {
    "n_per_class": _option(str, "30", "Random images per class in the original protocol's sample, or 'all'."),
    "n_draws": _option(int, 1000, "Resampled draws for the distribution of p and d (0: none)."),
    "alpha": _option(float, 0.05, "Significance level."),
}

BOOTSTRAP = {"bootstrap": _option(int, 1000, "Bootstrap resamples for the AUC interval (by patient when known).")}

CONFIG = {
    "config": _option(
        Optional[Path],
        None,
        "A JSON or YAML file of option values (e.g. a run's config.json) used as "
        "defaults; options given on the command line win.",
    )
}


def options(*groups: dict, defaults: dict[str, Any] | None = None):
    """Add the groups' options to a command that takes them as **kwargs (its own parameters come first)."""

    def decorate(command):
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = []
        for group in groups:
            for name, (annotation, default, info) in group.items():
                default = (defaults or {}).get(name, default)
                added.append(
                    inspect.Parameter(
                        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info]
                    )
                )
        command.__signature__ = signature.replace(parameters=own + added)
        return command

    return decorate


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """Enum members to their values, paths to strings: what the library's configs take."""
    return {k: (v.value if isinstance(v, Enum) else str(v) if isinstance(v, Path) else v) for k, v in values.items()}


def given_on_command_line(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The options the user typed (not defaults). Compared by name: typer vendors click's ParameterSource."""
    return {
        k: v
        for k, v in values.items()
        if getattr(ctx.get_parameter_source(k), "name", None) in ("COMMANDLINE", "ENVIRONMENT")
    }


def read_config_file(path: Path) -> dict[str, Any]:
    """Option values from JSON or YAML, flattened: a run's config.json ({"experiment": {..., "train": {...}}}),
    a training folder's ({"train": {...}}) or a flat mapping of option names."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PneumocamError(f"cannot read the config file {path}: {exc}") from exc
    try:
        loaded = json.loads(text) if Path(path).suffix.lower() == ".json" else _yaml(text)
    except ValueError as exc:
        raise PneumocamError(
            f"{path} is not valid {'JSON' if Path(path).suffix.lower() == '.json' else 'YAML'}: {exc}"
        ) from exc
    if not isinstance(loaded, dict):
        raise PneumocamError(f"{path} must hold a mapping of option names to values")
    flat = dict(loaded.get("experiment", loaded))
    flat |= flat.pop("train", None) or loaded.get("train", {}) or {}
    masks = flat.pop("masks", None) or {}
    if masks.get("lungs") and "lung_masks" not in flat:
        flat["lung_masks"] = masks["lungs"]
    if flat.get("n_per_class", "") is None:
        flat["n_per_class"] = "all"
    return flat


def _yaml(text: str):
    import yaml  # deferred: only a YAML --config needs it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).splitlines()[0]) from exc


def with_config(ctx: typer.Context, values: dict[str, Any], config: Path | None) -> dict[str, Any]:
    """The settings in force: typed on the command line, else from the config file, else from the recipe (named on
    the command line or in the file), else the option's default."""

    from_file = read_config_file(config) if config is not None else {}
    typed = given_on_command_line(ctx, values)
    recipe = values.get("recipe") if "recipe" in typed else from_file.get("recipe", values.get("recipe"))
    recipe = recipe.value if isinstance(recipe, Enum) else recipe
    from_file = recipe_defaults(recipe) | from_file | ({"recipe": recipe} if "recipe" in values else {})
    out = dict(values)
    for name in values:
        if name not in typed and name in from_file:
            out[name] = from_file[name]  # plain values; the library's configs validate them
    return out


STRICT = {"strict": EXPLAINING["strict"]}
