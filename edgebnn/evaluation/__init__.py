"""Evaluation: robustness curves, detection, gradient-masking checks, reports."""

from edgebnn.evaluation.robustness import craft, predict_labels, robustness_curve
from edgebnn.evaluation.uncertainty import MCPrediction, predict_mc

__all__ = ["MCPrediction", "craft", "predict_labels", "predict_mc", "robustness_curve"]
