"""The budget of the strong evaluation (:func:`edgebnn.evaluation.masking.robustness_report`), without TensorFlow.

The ``[[robustness]]`` recipe entry takes its defaults from :class:`StrongSettings`, so the
recipe schema reads them here before, or without, loading TensorFlow.
"""

from dataclasses import dataclass

from edgebnn.choices import APGD_TARGET_CLASSES
from edgebnn.evaluation.checks import LARGE_EPS

#: Square's smallest budget: one query for its starting point, one for a step.
MIN_SQUARE_QUERIES = 2


@dataclass(frozen=True)
class StrongSettings:
    """The budget of the strong evaluation; the ``[[robustness]]`` recipe entry takes its defaults.

    Attributes:
        steps: iterations of APGD and of the long PGD (100 in AutoAttack).
        pgd_steps: iterations of the short PGD.
        restarts: restarts of the long PGD.
        target_classes: APGD-T target classes (capped at classes - 1).
        square_queries: Square's budget per example.
        large_eps: budget of the large-eps check.
    """

    steps: int = 100
    pgd_steps: int = 40
    restarts: int = 5
    target_classes: int = APGD_TARGET_CLASSES
    square_queries: int = 5000
    large_eps: float = LARGE_EPS

    def validate(self):
        """Raise ``ValueError`` naming the first setting that is not a positive int (or ``large_eps`` < 0)."""
        from edgebnn.attacks.common import validate_nonnegative, validate_positive_int  # noqa: PLC0415 (TensorFlow)

        for name in ("steps", "pgd_steps", "restarts", "target_classes", "square_queries"):
            validate_positive_int(getattr(self, name), name)
        if self.square_queries < MIN_SQUARE_QUERIES:
            raise ValueError(f"square_queries: Square needs at least {MIN_SQUARE_QUERIES} queries (its start "
                             f"and one step), got {self.square_queries}")
        validate_nonnegative(self.large_eps, "large_eps")
        return self
