"""Every command-line option, declared once: its type (fixed choices are Enums, so --help lists them and typer
validates them), default and help. Commands take groups of them with @options(...); --config FILE supplies
defaults that the command line overrides, as timm's train.py does.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pneumocam.core.errors import PneumocamError
from pneumocam.data.discover import SPLITS
from pneumocam.data.phantoms import MARKER_PLACES
from pneumocam.explain.cam import METHODS, TARGETS
from pneumocam.pipeline.config import EVAL_SPLITS, ExperimentConfig
from pneumocam.train.config import CHOICES as TRAIN_CHOICES
from pneumocam.train.config import TrainConfig
from pneumocam.train.recipes import RECIPES, recipe_defaults


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An Enum of the library's own choice tuple, so --help lists it and typer validates it; never a second list."""
    return Enum(name, {value: value for value in values}, type=str)


Mode = choices("Mode", TRAIN_CHOICES["mode"])
Marker = choices("Marker", MARKER_PLACES)
Method = choices("Method", METHODS)
Target = choices("Target", TARGETS)
Device = choices("Device", TRAIN_CHOICES["device"])
Precision = choices("Precision", TRAIN_CHOICES["precision"])
ValSource = choices("ValSource", TRAIN_CHOICES["val_source"])
SelectBy = choices("SelectBy", TRAIN_CHOICES["select_by"])
Calibration = choices("Calibration", TRAIN_CHOICES["calibration"])
Focus = choices("Focus", TRAIN_CHOICES["focus"])
AttentionOn = choices("AttentionOn", TRAIN_CHOICES["attention_on"])
Recipe = choices("Recipe", tuple(RECIPES))
Schedule = choices("Schedule", TRAIN_CHOICES["schedule"])
ClassWeights = choices("ClassWeights", TRAIN_CHOICES["class_weights"])
EvalSplit = choices("EvalSplit", EVAL_SPLITS)
Split = choices("Split", tuple(reversed(SPLITS)))  # test first: the usual split to evaluate

TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
EXPERIMENT_DEFAULTS = {f.name: f.default for f in fields(ExperimentConfig)}


def _option(annotation, default, help: str, *names: str):
    return annotation, default, typer.Option(*names, help=help)


def _declared(annotation, name: str, help: str, defaults: dict[str, Any]):
    """An option whose default is the library dataclass's own (TrainConfig or ExperimentConfig)."""
    default = defaults[name]
    if isinstance(annotation, type) and issubclass(annotation, Enum) and default is not None:
        default = annotation(default)
    elif annotation is str and default is not None:
        default = str(default)  # n_per_class: a number or 'all' on the command line
    return _option(annotation, default, help)


def _training(annotation, name: str, help: str):
    return _declared(annotation, name, help, TRAIN_DEFAULTS)


def _experiment(annotation, name: str, help: str):
    return _declared(annotation, name, help, EXPERIMENT_DEFAULTS)


TRAINING = {
    "mode": _training(
        Mode, "mode", "frozen (the original: head only, features computed once) | partial (layer4 + head) | full."
    ),
    "weights": _training(str, "weights", "imagenet | imagenet-v1 | none | PATH to a local state_dict."),
    "epochs": _training(int, "epochs", "Training epochs."),
    "batch_size": _training(int, "batch_size", "Images per batch."),
    "image_size": _training(int, "image_size", "Side of the square model input, in pixels."),
    "lr": _training(Optional[float], "lr", "AdamW learning rate (default: 1e-3 frozen, 3e-4 partial, 1e-4 full)."),
    "weight_decay": _training(float, "weight_decay", "AdamW weight decay."),
    "schedule": _training(Schedule, "schedule", "Learning-rate schedule over all steps."),
    "class_weights": _training(
        ClassWeights,
        "class_weights",
        "Loss weights against class imbalance (auto: balanced, or none "
        "with --weighted-sampler, which balances already; both at once is refused).",
    ),
    "weighted_sampler": _training(
        bool, "weighted_sampler", "Draw batches class-balanced instead of weighting the loss."
    ),
    "augment": _training(
        bool, "augment", "Small rotation, shift, scale, contrast (off in the faithful recipe; never a flip)."
    ),
    "acquisition_augment": _training(
        bool,
        "acquisition_augment",
        "With --augment, also what another scanner changes: gamma, blur or sharpening, and noise.",
    ),
    "label_smoothing": _training(
        float, "label_smoothing", "Label smoothing: each training target y becomes y (1 - e) + e / 2 (0: off)."
    ),
    "val_source": _training(
        ValSource,
        "val_source",
        "Validation images: auto (the dataset's val if it holds >= 100, else carved), "
        "carved (patients of train), dataset, or family (one whole acquisition family, e.g. Kermany's IM-* "
        "NORMAL films, with a matched share of PNEUMONIA patients: a validation that sees shift), or population "
        "(one whole population of a manifest: leave-one-population-out).",
    ),
    "val_family": _training(
        Optional[str], "val_family", "The family --val-source family holds out (default: the smallest)."
    ),
    "val_population": _training(
        Optional[str], "val_population", "The population --val-source population holds out whole (by its name)."
    ),
    "val_fraction": _training(
        float, "val_fraction", "Share of train's images carved for validation, by whole patients."
    ),
    "seed": _training(int, "seed", "Seed of the splits, the initialisation, the batches and every random draw."),
    "split_seed": _training(
        Optional[int],
        "split_seed",
        "Seed of the held-out part, the validation and any subsample (default: --seed); give members of a seed "
        "ensemble one split seed so that no member trained on another's held-out films.",
    ),
    "device": _training(Device, "device", "Where to compute."),
    "precision": _training(
        Precision,
        "precision",
        "The network's arithmetic: auto (bf16 autocast where the CPU has AVX512-BF16 or AMX, or the GPU has bf16; "
        "else fp32), fp32 or bf16. Weights, loss, BatchNorm statistics, calibration and metrics stay fp32.",
    ),
    "select_by": _training(
        SelectBy, "select_by", "How the best epoch is chosen on validation (loss: the class-weighted training loss)."
    ),
    "max_per_class": _training(Optional[int], "max_per_class", "Use at most this many images per class (quick runs)."),
    "size_schedule": _training(
        Optional[str],
        "size_schedule",
        "Progressive resizing: size:epochs,... ending at --image-size (e.g. 128:5,224:1).",
    ),
    "focus": _training(
        Focus,
        "focus",
        "What the model is shown: the whole film, or cropped to the body / the lungs with the outside of the body "
        "neutral grey, or (lungs-only) with everything outside the lungs grey (stored in model.pt; maps are put "
        "back on the whole film).",
    ),
    "focus_masks": _training(
        Optional[Path],
        "focus_masks",
        "Lung masks for --focus lungs / lungs-only, laid out like --lung-masks (run: --lung-masks by default); "
        "films without one use the estimate.",
    ),
    "attention_penalty": _training(
        float,
        "attention_penalty",
        "Right for the right reasons: add this weight x the share of each training film's Grad-CAM mass outside "
        "its lungs to the loss (films with a mask; 0: off).",
    ),
    "attention_on": _training(
        AttentionOn,
        "attention_on",
        "What the attention penalty measures: the layer4 Grad-CAM map, or the squared input gradient (Ross et al.).",
    ),
    "attention_masks": _training(
        Optional[Path],
        "attention_masks",
        "Lung masks for --attention-penalty, laid out like --lung-masks (run: --lung-masks).",
    ),
    "ema": _training(
        float,
        "ema",
        "Also validate an exponential moving average of the weights with this decay per step (0: off); "
        "model.pt is the better of the two on validation.",
    ),
    "calibration": _training(
        Calibration, "calibration", "Temperature scaling of the probabilities, fitted on validation."
    ),
    "recipe": _training(
        Optional[Recipe],
        "recipe",
        "A named recipe (original, finetune, scratch, focused, recommended: see the README) whose settings are the "
        "defaults; focused continues a scratch model given with --weights.",
    ),
}

PRECISION = {"precision": TRAINING["precision"]}  # the same option on every command that runs the model

EXPLAINING = {
    "method": _experiment(
        Method,
        "method",
        "The class activation map method (gradcam++ and layercam are native and raw; "
        "eigencam and scorecam come normalised from pytorch-grad-cam).",
    ),
    "target": _experiment(Target, "target", "The class each map explains."),
    "lung_masks": _option(
        Optional[Path], None, "Lung masks laid out MASKS/{split}/{CLASS}/<image stem>.png (0, 255 lung, 127 ignore)."
    ),
    "lung_model": _option(Optional[Path], None, "A lung model from `pneumocam lungs fit`, for images without a mask."),
    "trust_images": _experiment(
        int, "trust_images", "Images for the randomisation and deletion / insertion checks (0: skip them)."
    ),
    "include_ood": _experiment(
        bool,
        "include_ood",
        "Keep films the domain-shift guard flags in the group statistics (they are left out by default).",
    ),
    "strict": _experiment(
        bool, "strict", "Stop (exit 2) if any evaluated image or its patient was used to train or select the model."
    ),
}

STATISTICS = {
    "n_per_class": _experiment(
        str, "n_per_class", "Random images per class in the original protocol's sample, or 'all'."
    ),
    "n_draws": _experiment(int, "n_draws", "Resampled draws for the distribution of p and d (0: none)."),
    "alpha": _experiment(float, "alpha", "Significance level."),
}

BOOTSTRAP = {
    "bootstrap": _experiment(int, "bootstrap", "Bootstrap resamples for the AUC interval (by patient when known).")
}

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


MODEL_HELP = (
    "A pneumocam model.pt, or a foreign model: torchvision:PATH,arch=NAME | torchscript:PATH | xrv:NAME, each with "
    ",key=value declarations (output, labels, activation, size, channels, normalisation, layer, threshold; "
    "docs/models.md)"
)


def model_option(default: Any = None, more: str = ""):
    """The one model option (--model, or its older name --checkpoint) of every command that runs a model."""
    return typer.Option(default, "--model", "--checkpoint", help=MODEL_HELP + more)
