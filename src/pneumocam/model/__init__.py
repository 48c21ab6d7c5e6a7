"""The network: ResNet50 and its weights, checkpoints, one batched forward pass, how a checkpoint reads a film, the
domain-shift guard stored with it."""
