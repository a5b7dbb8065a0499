"""Fast Gradient (Sign) Method (Goodfellow et al. 2015), compiled, with EOT."""

import numpy as np

from edgebnn.attacks.common import clip, compiled, labels_or_predictions, loss_gradient, optimize_linear, prepare


def fgsm_core(model_fn, x, y, *, eps, norm, targeted, clip_min, clip_max, eot_samples=1, surrogate="ste"):
    """Graph-mode FGSM on validated tensors; ``eps`` may be a scalar or per-example ``(batch,)``."""
    y = labels_or_predictions(model_fn, x, y)
    grad, _ = loss_gradient(model_fn, x, y, targeted=targeted, eot_samples=eot_samples, surrogate=surrogate)
    return clip(x + optimize_linear(grad, eps, norm), clip_min, clip_max)


_fgsm = compiled(fgsm_core)


def fgsm(
    model_fn, x, *, eps, norm=np.inf, y=None, targeted=False, clip_min=0.0, clip_max=1.0, eot_samples=1,
    surrogate="ste",
):
    """One gradient step of size ``eps``: FGSM for L-inf, FGM for L2.

    Gradients flow through :class:`~edgebnn.layers.InputDiscretization` (identity) and
    Larq's sign (straight-through estimator), so discretized and binary models are
    attacked with their surrogate gradients (BPDA) rather than zero gradients. Same
    result as CleverHans' ``fast_gradient_method`` on a deterministic model.

    Args:
        model_fn: callable mapping a batch of inputs to logits (e.g. a Keras model).
        x: inputs in ``[clip_min, clip_max]``.
        eps: perturbation size (>= 0).
        norm: ``np.inf`` or ``2``.
        y: labels (or targets when ``targeted``); ``None`` uses the model's own
            predictions, which avoids label leaking (Kurakin et al. 2017).
        targeted: move toward ``y`` instead of away from it.
        clip_min, clip_max: valid input range.
        eot_samples: loss gradients averaged over this many forward passes (EOT) for
            randomized models.
        surrogate: backward pass through discretization and sign, a key of
            :data:`edgebnn.ops.SURROGATES` (``"ste"``: each op's own).

    Returns:
        Adversarial examples, a float32 tensor shaped like ``x``.

    Raises:
        ValueError: for ``eps < 0``, ``clip_min > clip_max``, ``targeted`` without
            ``y``, an unknown ``norm`` or inputs outside the clip range.
    """
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                eot_samples=eot_samples, surrogate=surrogate)
    return _fgsm(
        model_fn, a.x, a.y, eps=a.eps, norm=a.norm, targeted=a.targeted,
        clip_min=clip_min, clip_max=clip_max, eot_samples=a.eot_samples, surrogate=a.surrogate,
    )
