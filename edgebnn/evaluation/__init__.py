"""Evaluation: robustness curves, detection, gradient-masking checks, reports."""

from edgebnn.evaluation.robustness import craft, predict_labels, robustness_curve, top_k_accuracy
from edgebnn.evaluation.detection import UncertaintyDetector, detection_experiment
from edgebnn.evaluation.uncertainty import MCPrediction, predict_mc
from edgebnn.evaluation.masking import robustness_report

__all__ = [
    "MCPrediction", "UncertaintyDetector", "craft", "detection_experiment", "predict_labels", "predict_mc", "top_k_accuracy",
    "robustness_curve", "robustness_report",
]
