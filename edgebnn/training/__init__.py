"""Training: seeded resumable ``fit`` and adversarial training."""

from edgebnn.training.adversarial import METHODS, AdversarialModel, random_eps_sigma
from edgebnn.training.fit import compile_for_classification, train

__all__ = ["METHODS", "AdversarialModel", "compile_for_classification", "random_eps_sigma", "train"]
