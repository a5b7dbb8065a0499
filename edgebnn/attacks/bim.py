"""Basic Iterative Method (Kurakin et al. 2017): PGD from the clean input, no random start."""

import numpy as np

from edgebnn.attacks.pgd import pgd


def bim(
    model_fn, x, *, eps, steps=10, step_size=None, norm=np.inf, y=None, targeted=False,
    clip_min=0.0, clip_max=1.0, eot_samples=1, surrogate="ste",
):
    """Iterated FGSM steps of ``step_size`` projected onto the ``eps`` ball, starting at ``x``.

    :func:`~edgebnn.attacks.pgd.pgd` without its random start and with one run: the
    arguments are PGD's but ``rand_init`` and ``restarts``, with the same
    defaults except ``steps=10``.

    Returns:
        Adversarial examples shaped like ``x``.
    """
    return pgd(
        model_fn, x, eps=eps, steps=steps, step_size=step_size, norm=norm, rand_init=False,
        y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eot_samples=eot_samples,
        surrogate=surrogate,
    )
