"""Training: TrainConfig, named recipes, the epoch loop, the attention penalty, resumable state, guard fitting, the
random-feature control and `fit`."""
