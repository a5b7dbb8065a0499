"""The AutoAttack ensemble's bookkeeping (Croce and Hein 2020), shared by
:func:`edgebnn.attacks.run_autoattack` and the strong evaluation
(:mod:`edgebnn.evaluation.masking`): NumPy only.

Stages run in order; an example is robust when no stage broke it, and the breakdown
credits each broken example to the first stage that broke it.
"""

import numpy as np

from edgebnn.choices import ENSEMBLE_SURROGATES as DEFAULT_SURROGATES

#: Stage names, in the order the ensemble runs them.
STAGES = ("apgd-ce", "apgd-t", "square")


class Ensemble:
    """Per-example robustness as stages are added in ensemble order.

    Attributes:
        robust: bool per example, True while no stage has broken it (and it was correct clean).
        broken_by: per example, the name of the first stage that broke it, ``"clean"`` when
            already misclassified, ``""`` while robust.
        breakdown: one row per stage: its labels plus ``attacked`` (examples still robust
            before it) and ``broken`` (examples it broke).
    """

    def __init__(self, clean):
        """``clean``: bool per example, True when classified correctly without attack."""
        clean = np.asarray(clean, bool)
        self.robust = clean.copy()
        self.broken_by = np.where(clean, "", "clean").astype(object)
        self.breakdown = []

    def add(self, name, correct, **labels):
        """Add stage ``name`` whose examples are still ``correct`` (bool per example; an
        example it did not attack counts as correct). ``labels`` go in its breakdown row
        (default ``{"attack": name}``)."""
        correct = np.asarray(correct, bool)
        broken = self.robust & ~correct
        self.breakdown.append({**(labels or {"attack": name}), "attacked": int(self.robust.sum()),
                               "broken": int(broken.sum())})
        self.broken_by[broken] = name
        self.robust &= correct

    @property
    def robust_accuracy(self):
        return float(self.robust.mean())


def stage_names(surrogates):
    """The ensemble's runs in order, ``[(stage, surrogate or None)]``: each gradient stage
    once per surrogate, then Square once."""
    return [(stage, None) if stage == "square" else (stage, s) for stage in STAGES
            for s in ([None] if stage == "square" else surrogates)]
