"""pneumocam: explainable pneumonia detection on chest X-rays."""

__version__ = "0.1.0"

CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # label 0, label 1
