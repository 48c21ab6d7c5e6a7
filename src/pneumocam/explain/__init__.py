"""Explanations: the CAM methods over one base class, and overlays (colour maps, PNG encoding)."""
