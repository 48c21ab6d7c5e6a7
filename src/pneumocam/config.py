"""Settings: TrainConfig (a training run) and ExperimentConfig (a whole run), with the checks run before anything
is written.

Also which images an experiment evaluates: a named split, or the held-out patients a checkpoint recorded.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

from pneumocam import CLASS_NAMES
from pneumocam.cam import METHODS
from pneumocam.data import choose_validation, discover, split_holdout
from pneumocam.errors import PneumocamError, SettingError
from pneumocam.model import build_model
from pneumocam.precision import PRECISIONS
from pneumocam.recipes import TRAINED_WEIGHTS_REQUIRED

DEFAULT_LR = {"frozen": 1e-3, "partial": 3e-4, "full": 1e-4}


@dataclass
class TrainConfig:
    data: str
    mode: str = "frozen"
    weights: str = "none"
    epochs: int = 10
    batch_size: int = 32
    image_size: int = 224
    lr: float | None = None  # None: 1e-3 frozen, 3e-4 partial, 1e-4 full
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | constant
    class_weights: str = "auto"  # auto (balanced, or none with the weighted sampler) | balanced | none
    weighted_sampler: bool = False
    augment: bool = False
    val_source: str = "auto"
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    select_by: str = "auc"  # auc | loss
    max_per_class: int | None = None  # deterministic subsample of train and val per class (quick runs)
    use_cache: bool = True
    holdout_fraction: float = 0.0  # patients of train set aside (never trained or selected on) for --eval-split heldout
    size_schedule: str | None = None  # "128:5,224:1": epochs per input size in order; the last size is image_size
    calibration: str = "temperature"  # temperature | none: how validation calibrates the probabilities
    focus: str = "none"  # none | body | lungs: what the model is shown (focus.py); stored in model.pt
    focus_masks: str | None = None  # lung masks for --focus lungs (films without one use the estimate)
    attention_penalty: float = 0.0  # weight in the loss of the explanation's share outside the lungs (0: off)
    attention_masks: str | None = None  # lung masks for the attention penalty (films without one are not penalised)
    attention_on: str = "gradcam"  # gradcam (layer4 map) | input (squared input gradients): what the penalty measures
    ema: float = 0.0  # decay per step of an exponential moving average of the weights (0: off), restarted per size
    recipe: str | None = None  # the named recipe these settings started from (recipes.py), recorded for the report
    precision: str = "auto"  # auto | fp32 | bf16: the network's arithmetic (precision.py); weights stay fp32

    def __post_init__(self):
        checks = [
            (
                self.weights != TRAINED_WEIGHTS_REQUIRED,
                "weights",
                "the focused recipe continues a trained model: give --weights RUN/train/model.pt (a scratch run's)",
            ),
            (self.mode in ("frozen", "partial", "full"), "mode", f"must be frozen, partial or full, got '{self.mode}'"),
            (
                self.precision in PRECISIONS,
                "precision",
                f"must be one of {', '.join(PRECISIONS)}, got '{self.precision}'",
            ),
            (self.schedule in ("cosine", "constant"), "schedule", f"must be cosine or constant, got '{self.schedule}'"),
            (
                self.class_weights in ("auto", "balanced", "none"),
                "class_weights",
                f"must be auto, balanced or none, got '{self.class_weights}'",
            ),
            (
                not (self.weighted_sampler and self.class_weights == "balanced"),
                "class_weights",
                "balanced together with the weighted sampler would correct the imbalance twice: the sampler already "
                "balances the classes (it implies none)",
            ),
            (
                self.select_by in ("auc", "loss", "auc_acc"),
                "select_by",
                f"must be auc, loss or auc_acc, got '{self.select_by}'",
            ),
            (
                self.calibration in ("temperature", "none"),
                "calibration",
                f"must be temperature or none, got '{self.calibration}'",
            ),
            (self.focus in ("none", "body", "lungs"), "focus", f"must be none, body or lungs, got '{self.focus}'"),
            (0.0 <= self.ema < 1.0, "ema", f"must be a decay in [0, 1) (0: off), got {self.ema}"),
            (
                self.attention_on in ("gradcam", "input"),
                "attention_on",
                f"must be gradcam or input, got '{self.attention_on}'",
            ),
            (self.attention_penalty >= 0, "attention_penalty", f"must be >= 0 (0: off), got {self.attention_penalty}"),
            (
                not self.attention_penalty or self.mode != "frozen",
                "attention_penalty",
                "moves the maps by training the backbone: use mode partial or full, not frozen",
            ),
            (
                not self.attention_penalty or bool(self.attention_masks),
                "attention_masks",
                "the attention penalty needs lung masks (--attention-masks, in run --lung-masks)",
            ),
            (self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}"),
            (self.image_size >= 32, "image_size", f"must be at least 32 px, got {self.image_size}"),
        ]
        for ok, setting, problem in checks:
            if not ok:
                raise SettingError(setting, problem)
        self.sizes = self._epoch_sizes()
        if self.lr is None:
            self.lr = DEFAULT_LR[self.mode]
        if self.class_weights == "auto":
            self.class_weights = "none" if self.weighted_sampler else "balanced"

    def _epoch_sizes(self) -> list[int]:
        """The input size of each epoch (progressive resizing), checked: >= 32 px, epochs adding up, image_size last."""
        if not self.size_schedule:
            return [self.image_size] * self.epochs
        sizes = []
        try:
            for part in self.size_schedule.split(","):
                size, count = (int(v) for v in part.split(":"))
                sizes += [size] * count
        except ValueError:
            raise PneumocamError(
                f"size_schedule must look like 128:5,224:1 (size:epochs, ...), got '{self.size_schedule}'"
            ) from None
        if len(sizes) != self.epochs or sizes[-1] != self.image_size or min(sizes) < 32:
            raise PneumocamError(
                f"size_schedule '{self.size_schedule}' must cover exactly {self.epochs} epochs, use sizes of at "
                f"least 32 px and end at the image size {self.image_size}"
            )
        if self.mode == "frozen" and len(set(sizes)) > 1:
            raise PneumocamError("progressive resizing trains the backbone: use mode partial or full, not frozen")
        return sizes

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExperimentConfig:
    train: TrainConfig
    eval_split: str = "test"
    checkpoint: str | None = None
    method: str = "gradcam"
    target: str = "pred"
    n_per_class: int | None = 30  # None: every image of the split
    n_draws: int = 1000
    alpha: float = 0.05
    grid_per_class: int = 4
    bootstrap: int = 1000
    synthetic: bool = False
    masks: dict[str, str] = field(default_factory=dict)  # region name -> mask folder (lesion, lungs, marker, ...)
    lung_model: str | None = None  # a LungModel file for images without a lung mask (else the classical estimate)
    regions: bool = True  # lung / diaphragm / body / outside-body attention measures
    trust_images: int = 16  # images per trust check (randomisation, deletion / insertion); 0 skips them
    trust_steps: int = 10
    shard: str | None = None  # "i/N": explain only that part of the split into a part folder (shards.py)
    include_ood: bool = False  # keep films the domain-shift guard flagged in the group statistics
    strict: bool = False  # any overlap between evaluated images and what the model saw is an error
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    def to_dict(self) -> dict:
        return asdict(self) | {"train": self.train.to_dict()}


def validate_experiment(cfg: ExperimentConfig) -> None:
    """Every check that can fail before training: settings, the evaluated split, the weights, a leaking val."""
    if cfg.method not in METHODS:
        raise SettingError("method", f"must be one of {', '.join(METHODS)}, got '{cfg.method}'")
    if cfg.target not in ("pred", "true", *CLASS_NAMES):
        raise SettingError("target", f"must be pred, true, NORMAL or PNEUMONIA, got '{cfg.target}'")
    if cfg.n_per_class is not None and cfg.n_per_class < 2:
        raise SettingError("n_per_class", "must be at least 2 (or 'all')")
    if cfg.shard:
        from pneumocam.shards import parse_shard

        parse_shard(cfg.shard)
        if cfg.checkpoint is None:
            raise PneumocamError("--shard explains an existing model: give --checkpoint (train first, then shard)")
    index = discover(cfg.train.data)
    if cfg.eval_split == "heldout":
        if cfg.checkpoint is None and cfg.train.holdout_fraction <= 0:
            cfg.train.holdout_fraction = 0.15
        index.split("train")
    else:
        index.split(cfg.eval_split)  # a missing split fails now, not after training
    if cfg.checkpoint is None:
        build_model(cfg.train.weights)  # and so do missing or bad weights
        if cfg.eval_split == "val":
            *_, plan = choose_validation(
                index,
                cfg.train.val_source,
                cfg.train.val_fraction,
                cfg.train.seed,
                holdout_fraction=cfg.train.holdout_fraction,
            )
            if plan.source == "dataset":
                raise PneumocamError(
                    f"--eval-split val: this run would choose its best epoch and threshold on the dataset's val split "
                    f"({plan.n_val} images; {plan.reason}), so scores on that split would not be held-out. Evaluate on "
                    "test or heldout, or carve validation from train with --val-source carved"
                )


def evaluated_samples(index, split: str, meta: dict, checkpoint) -> list:
    """The evaluated images. 'heldout' is rebuilt from the checkpoint's own recorded plan (fraction and seed),
    never from the command line's defaults, so it is the part that model never trained or selected on."""
    if split != "heldout":
        return index.split(split)
    plan = (meta.get("data") or {}).get("validation") or {}
    fraction = plan.get("holdout_fraction") or 0.0
    if fraction <= 0:
        raise PneumocamError(
            f"{checkpoint} was trained without a held-out part of train (no holdout fraction recorded): "
            "there is no held-out split to evaluate; use --eval-split test or val"
        )
    seed = plan.get("holdout_seed", meta.get("seed", 0))
    return split_holdout(index, fraction, seed)[1]
