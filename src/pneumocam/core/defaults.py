"""The defaults shared by several functions, declared once. A function or option whose parameter has one of these
names takes its default from here (tests/test_architecture.py fails on a literal default of a name listed in
SHARED), and TrainConfig / ExperimentConfig, whose fields the command line reads its defaults from, too."""

from __future__ import annotations

BATCH_SIZE = 32  # films per forward pass and per training step (the original write-up's batch)
IMAGE_SIZE = 224  # px, the side of the square the model reads
SEED = 0  # every draw: splits, samples, bootstrap, training
BOOTSTRAP_RESAMPLES = 1000  # resamples of a bootstrap interval (metrics, reliance)
PAIRED_RESAMPLES = 2000  # resamples of a paired bootstrap (compare: two runs on the same films)
ALPHA = 0.05  # the significance level of the group statistics
N_PER_CLASS = 30  # films per class in the statistics' seeded draw (the original write-up's 30 vs 30)
N_DRAWS = 1000  # resampled draws of that size
VAL_FRACTION = 0.2  # share of train's patients carved for validation when the dataset's val is too small
BATCH_WINDOW_MS = 15.0  # how long the viewer's model worker waits for requests to batch together
REQUEST_TIMEOUT_S = 60.0  # how long one viewer request may wait and compute

# parameter name -> its one home; bootstrap_resamples / n_resamples name the same default in different modules
SHARED = {
    "batch_size": BATCH_SIZE,
    "image_size": IMAGE_SIZE,
    "seed": SEED,
    "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
    "bootstrap": BOOTSTRAP_RESAMPLES,
    "alpha": ALPHA,
    "n_per_class": N_PER_CLASS,
    "n_draws": N_DRAWS,
    "val_fraction": VAL_FRACTION,
    "fraction": VAL_FRACTION,
    "window_ms": BATCH_WINDOW_MS,
    "request_timeout": REQUEST_TIMEOUT_S,
    "request_timeout_s": REQUEST_TIMEOUT_S,
}
