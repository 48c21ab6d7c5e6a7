"""TrainConfig: the settings of one training run, checked when made."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pneumocam.anatomy.focus import FOCUS_MODES
from pneumocam.core.defaults import BATCH_SIZE, IMAGE_SIZE, SEED, VAL_FRACTION
from pneumocam.core.errors import PneumocamError, SettingError
from pneumocam.core.precision import PRECISIONS
from pneumocam.data.split import VAL_SOURCES
from pneumocam.model.network import DEVICES, MODES
from pneumocam.train.recipes import TRAINED_WEIGHTS_REQUIRED, recipe_defaults

# The choice sets of the settings, declared once: the checks below and the command line's Enums use them.
SCHEDULES = ("cosine", "constant")
CLASS_WEIGHTS = ("auto", "balanced", "none")  # auto: balanced, or none with the weighted sampler
SELECT_BY = ("auc", "loss", "auc_acc")
CALIBRATIONS = ("temperature", "none")
ATTENTION_ON = ("gradcam", "input")
DEFAULT_LR = {"frozen": 1e-3, "partial": 3e-4, "full": 1e-4}
CHOICES = {
    "mode": MODES,
    "precision": PRECISIONS,
    "schedule": SCHEDULES,
    "class_weights": CLASS_WEIGHTS,
    "val_source": VAL_SOURCES,
    "device": DEVICES,
    "select_by": SELECT_BY,
    "calibration": CALIBRATIONS,
    "focus": FOCUS_MODES,
    "attention_on": ATTENTION_ON,
}


@dataclass
class TrainConfig:
    data: str
    mode: str = "frozen"
    weights: str = "imagenet"  # imagenet | imagenet-v1 | none | a local file (model/network.py)
    epochs: int = 10
    batch_size: int = BATCH_SIZE
    image_size: int = IMAGE_SIZE
    lr: float | None = None  # None: 1e-3 frozen, 3e-4 partial, 1e-4 full
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    class_weights: str = "auto"
    weighted_sampler: bool = False
    augment: bool = False
    acquisition_augment: bool = False  # with augment: also gamma, blur/sharpen and noise (another scanner's look)
    label_smoothing: float = 0.0  # BCE targets pulled towards 0.5 by this share (0: off)
    val_source: str = "auto"
    val_fraction: float = VAL_FRACTION
    val_family: str | None = None  # --val-source family: the family held out (None: the smallest NORMAL family)
    val_population: str | None = None  # --val-source population: the population held out whole
    seed: int = SEED
    split_seed: int | None = None  # seed of the held-out, validation and subsample draws (None: seed)
    device: str = "auto"
    select_by: str = "auc"
    max_per_class: int | None = None  # deterministic subsample of train and val per class (quick runs)
    use_cache: bool = True
    holdout_fraction: float = 0.0  # patients of train set aside (never trained or selected on) for --eval-split heldout
    size_schedule: str | None = None  # "128:5,224:1": epochs per input size in order; the last size is image_size
    calibration: str = "temperature"  # how validation calibrates the probabilities
    focus: str = "none"  # what the model is shown (anatomy/focus.py); stored in model.pt
    focus_masks: str | None = None  # lung masks for --focus lungs (films without one use the estimate)
    attention_penalty: float = 0.0  # weight in the loss of the explanation's share outside the lungs (0: off)
    attention_masks: str | None = None  # lung masks for the attention penalty (films without one are not penalised)
    attention_on: str = "gradcam"  # what the penalty measures: the layer4 map, or the squared input gradients
    ema: float = 0.0  # decay per step of an exponential moving average of the weights (0: off), restarted per size
    recipe: str | None = None  # the named recipe these settings started from (recipes.py), recorded for the report
    precision: str = "auto"  # the network's arithmetic (core/precision.py); weights stay fp32

    @property
    def data_seed(self) -> int:
        """The seed that draws the held-out part, the validation and any subsample: members of a seed ensemble
        share it (split_seed) so that one member's training films are never another's held-out films."""
        return self.seed if self.split_seed is None else self.split_seed

    @classmethod
    def from_recipe(cls, recipe: str, **settings) -> TrainConfig:
        """A recipe's settings (train/recipes.py) with `settings` over them, as `--recipe` gives them."""
        return cls(**(recipe_defaults(recipe) | settings | {"recipe": recipe}))

    def __post_init__(self):
        checks = [
            (getattr(self, name) in allowed, name, f"must be one of {', '.join(allowed)}, got '{getattr(self, name)}'")
            for name, allowed in CHOICES.items()
        ] + [
            (
                self.weights != TRAINED_WEIGHTS_REQUIRED,
                "weights",
                "the focused recipe continues a trained model: give --weights RUN/train/model.pt (a scratch run's)",
            ),
            (
                not (self.weighted_sampler and self.class_weights == "balanced"),
                "class_weights",
                "balanced together with the weighted sampler would correct the imbalance twice: the sampler already "
                "balances the classes (it implies none)",
            ),
            (0.0 <= self.ema < 1.0, "ema", f"must be a decay in [0, 1) (0: off), got {self.ema}"),
            (
                0.0 <= self.label_smoothing < 1.0,
                "label_smoothing",
                f"must be a share in [0, 1) (0: off), got {self.label_smoothing}",
            ),
            (
                self.augment or not self.acquisition_augment,
                "acquisition_augment",
                "adds to --augment: give --augment too",
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
