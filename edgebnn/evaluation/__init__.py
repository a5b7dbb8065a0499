"""Evaluation: robustness curves, detection, gradient-masking checks, reports."""

from edgebnn.evaluation.robustness import craft, predict_labels, robustness_curve

__all__ = ["craft", "predict_labels", "robustness_curve"]
