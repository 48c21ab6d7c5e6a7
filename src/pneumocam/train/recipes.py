"""Named training recipes: settings that belong together, declared once here and used by `train` and `run`.

A recipe only supplies defaults: options given explicitly (command line, --config file) override its values,
and config.json records the recipe's name beside every resolved setting.
"""

from __future__ import annotations

from pneumocam.core.defaults import IMAGE_SIZE
from pneumocam.core.errors import PneumocamError

# A recipe that continues a trained model names no weights of its own: --weights must give them.
TRAINED_WEIGHTS_REQUIRED = "a trained model.pt (--weights)"

RECIPES: dict[str, dict] = {
    # The original write-up: ImageNet ResNet50, frozen base, GAP + dense head, batch 32, 10 epochs, 224 px, no augment.
    "original": {
        "weights": "imagenet",
        "mode": "frozen",
        "epochs": 10,
        "batch_size": 32,
        "image_size": IMAGE_SIZE,
        "augment": False,
        "lr": 1e-3,
        "schedule": "cosine",
        "select_by": "auc",
        "calibration": "temperature",
    },
    # For users with ImageNet weights (ideally a GPU): every layer fine-tuned, with augmentation.
    "finetune": {
        "weights": "imagenet",
        "mode": "full",
        "epochs": 8,
        "batch_size": 32,
        "image_size": IMAGE_SIZE,
        "augment": True,
        "lr": 1e-4,
        "schedule": "cosine",
        "select_by": "auc_acc",
        "calibration": "temperature",
    },
    # Random initialisation on a CPU: full training, 6 epochs at 128 px, then 5 at 224 px (7x7 layer4 maps).
    "scratch": {
        "weights": "none",
        "mode": "full",
        "epochs": 11,
        # The longer 224 px phase beat the earlier 128:6,224:3 on both validations and on held-out patients, seed
        # for seed over three seeds and on the whole split (benchmarks/levers.py; README, "Past the held-out patients").
        "size_schedule": "128:6,224:5",
        "batch_size": 32,
        "image_size": IMAGE_SIZE,
        "augment": True,
        "lr": 1e-3,
        "schedule": "cosine",
        "select_by": "auc_acc",
        "calibration": "temperature",
    },
    # Right for the right reasons, continuing a `scratch` model (--weights RUN/train/model.pt): 2 more epochs at
    # 224 px on films with everything outside the body blanked and cropped (--focus body), with the Grad-CAM mass
    # outside the lungs penalised (Ross et al. 2017) on the training films that have lung masks. Measured on the
    # held-out patients: README, "Right for the right reasons".
    "focused": {
        "weights": TRAINED_WEIGHTS_REQUIRED,
        "mode": "full",
        "epochs": 2,
        "batch_size": 32,
        "image_size": IMAGE_SIZE,
        "augment": True,
        "lr": 3e-4,
        "schedule": "cosine",
        "select_by": "auc_acc",
        "calibration": "temperature",
        "focus": "body",
        "attention_penalty": 1.0,
        "attention_on": "gradcam",
    },
}

# What this project recommends from random weights, in one run: the scratch schedule with only the lungs shown
# (--focus lungs-only), so the decision can rest on nothing else. The focused recipe's penalty moves the
# Grad-CAM map but not the decision (README, "What the decision rests on"); hiding what lies outside the lungs does.
RECIPES["recommended"] = RECIPES["scratch"] | {"focus": "lungs-only"}


def recipe_defaults(name: str | None) -> dict:
    if name is None:
        return {}
    if name not in RECIPES:
        raise PneumocamError(f"unknown recipe '{name}': choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
