"""Below everything: errors, atomic outputs, progress, provenance, precision, torchrun helpers."""
