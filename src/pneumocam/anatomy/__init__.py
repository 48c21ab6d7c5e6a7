"""The body in the film: lung and body estimates (lungs), what the model is shown (focus)."""
