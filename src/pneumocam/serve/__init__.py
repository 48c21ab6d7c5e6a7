"""`pneumocam serve`: a local web viewer and JSON API on the same code paths as the CLI."""
