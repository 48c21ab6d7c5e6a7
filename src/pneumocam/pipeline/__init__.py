"""The experiment as a sequence of named stages: ExperimentConfig, run folders, shards and merge, the demo, predict."""
