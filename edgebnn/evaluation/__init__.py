"""Evaluation: robustness curves, detection, gradient-masking checks, reports.

The names below load their module (and TensorFlow) on first use, so the
TensorFlow-free modules of this package (:mod:`edgebnn.evaluation.checks`, the
strong evaluation's checks and Markdown) import without it.
"""

import importlib

#: Public name -> the module of this package defining it.
_EXPORTS = {
    "MCPrediction": "uncertainty", "UncertaintyDetector": "detection", "craft": "robustness",
    "detection_experiment": "detection", "detection_summary": "detection", "predict_labels": "robustness",
    "predict_mc": "uncertainty", "robustness_curve": "robustness", "robustness_report": "masking",
    "top_k_accuracy": "robustness",
}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgebnn.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edgebnn.evaluation.{module}"), name)


__all__ = sorted(_EXPORTS)
