"""How good the decisions are: metrics, calibration, leakage checks, predictions and evaluate_split."""
