"""Training: seeded resumable ``fit`` and adversarial training."""

from edgebnn.training.adversarial import METHODS, AdversarialModel, random_eps_sigma
from edgebnn.training.fit import compile_for_classification, train
from edgebnn.training.optim import OPTIMIZERS, SCHEDULES, learning_rate_schedule, make_optimizer

__all__ = [
    "METHODS", "OPTIMIZERS", "SCHEDULES", "AdversarialModel", "compile_for_classification", "learning_rate_schedule",
    "make_optimizer", "random_eps_sigma", "train",
]
