"""Data layer: discover, read (incl. DICOM), split, cache, transform, synthetic phantoms."""

from pneumocam.data.cache import LoadedImages, load_images, resized
from pneumocam.data.discover import DatasetIndex, Sample, Skipped, discover, fingerprint, read_manifest
from pneumocam.data.prepare import PreparedData, prepare_data
from pneumocam.data.readers import UnreadableImage, read_grayscale, read_resized
from pneumocam.data.split import (
    ValidationPlan,
    balanced_indices,
    carve_validation,
    choose_validation,
    patient_id_from_name,
    split_holdout,
)
from pneumocam.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Augmentation, to_model_input

__all__ = [
    "Augmentation",
    "DatasetIndex",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedImages",
    "PreparedData",
    "Sample",
    "Skipped",
    "UnreadableImage",
    "ValidationPlan",
    "balanced_indices",
    "carve_validation",
    "choose_validation",
    "discover",
    "fingerprint",
    "load_images",
    "patient_id_from_name",
    "prepare_data",
    "resized",
    "split_holdout",
    "read_grayscale",
    "read_manifest",
    "read_resized",
    "to_model_input",
]
