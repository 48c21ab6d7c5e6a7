"""pneumocam: explainable pneumonia detection on chest X-rays."""

__version__ = "0.1.0"

CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # label 0, label 1


def started_random(weights: dict) -> bool:
    """Whether a saved weights record (model.WeightsInfo as a dict) goes back to random initialisation, not ImageNet:
    read by reports and the viewer from run files alone, hence here and not in model.py (which imports torch)."""
    return weights.get("source") == "none" or bool(weights.get("from_random"))
