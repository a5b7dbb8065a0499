"""Training: seeded resumable ``fit`` and adversarial training."""

from edgebnn.training.fit import compile_for_classification, train

__all__ = ["compile_for_classification", "train"]
