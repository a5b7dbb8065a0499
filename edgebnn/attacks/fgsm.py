"""Fast Gradient (Sign) Method, from CleverHans TF2 with argument validation."""

import numpy as np

from edgebnn.attacks.common import check_inputs, validate_attack, validate_norm

from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method


def fgsm(model_fn, x, *, eps, norm=np.inf, y=None, targeted=False, clip_min=0.0, clip_max=1.0):
    """One gradient step of size ``eps`` (Goodfellow et al. 2015): FGSM for L-inf, FGM for L2.

    Gradients flow through :class:`~edgebnn.layers.InputDiscretization` (identity) and
    Larq's sign (straight-through estimator), so discretized and binary models are
    attacked with their surrogate gradients (BPDA) rather than zero gradients.

    Args:
        model_fn: callable mapping a batch of inputs to logits (e.g. a Keras model).
        x: inputs in ``[clip_min, clip_max]``.
        eps: perturbation size (>= 0).
        norm: ``np.inf`` or ``2``.
        y: labels (or targets when ``targeted``); ``None`` uses the model's own
            predictions, which avoids label leaking (Kurakin et al. 2017).
        targeted: move toward ``y`` instead of away from it.
        clip_min, clip_max: valid input range.

    Returns:
        Adversarial examples, a float32 tensor shaped like ``x``.
    """
    norm = validate_norm(norm)
    validate_attack(eps=eps, clip_min=clip_min, clip_max=clip_max, y=y, targeted=targeted)
    x = check_inputs(x, clip_min=clip_min, clip_max=clip_max)
    return fast_gradient_method(
        model_fn, x, eps, norm, clip_min=clip_min, clip_max=clip_max, y=y, targeted=targeted
    )
