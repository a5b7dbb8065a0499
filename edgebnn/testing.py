"""Helpers for checking models that were never trained (tests, benchmarks and size tables), the
sampling check of the stochastic sign, and a model that counts its traces.

Not part of the model zoo: nothing here builds or trains a model. Like Larq's
``larq.testing_utils``, it lives beside the library so that tests, the ``benchmarks``
package and the scripts share one copy.
"""

import numpy as np

from edgebnn import ops
from edgebnn._validate import positive_int

import tensorflow as tf

#: Standard errors within which :func:`stochastic_sign_check` counts a sample mean as its expectation.
SIGN_CHECK_STD_ERRORS = 4


class TraceCounter:
    """``model`` that counts the calls of its Python body in ``calls``: called by a compiled
    function (an attack's graph, a Monte-Carlo pass), it runs only while a graph is traced."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x):
        self.calls += 1
        return self.model(x)


def randomize_batch_norm(model, *, seed=0, mean_std=1.0, beta_std=1.0, variance=(0.5, 50.0), gamma=(0.5, 1.5)):
    """Give every BatchNorm of ``model`` seeded random statistics, as after training; returns ``model``.

    For conversion-size, latency and equivalence checks of untrained models: with the
    initial statistics (mean 0, variance 1, offset 0) converters deduplicate constants
    that happen to be equal, and binarized pre-activations sit exactly on 0, where
    sign conventions differ (Larq's ``ste_sign(0) = +1``). Moving means and offsets
    (beta) are normal with standard deviations ``mean_std`` and ``beta_std``; moving
    variances and scales (gamma) are uniform on the ``(low, high)`` ranges given.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not isinstance(layer, tf.keras.layers.BatchNormalization):
            continue
        values = []
        for weight in layer.weights:
            kind = weight.name.split("/")[-1]
            if kind.startswith("moving_variance"):
                values.append(rng.uniform(*variance, size=weight.shape))
            elif kind.startswith("moving_mean"):
                values.append(rng.normal(0.0, mean_std, size=weight.shape))
            elif kind.startswith("gamma"):
                values.append(rng.uniform(*gamma, size=weight.shape))
            else:  # beta
                values.append(rng.normal(0.0, beta_std, size=weight.shape))
        layer.set_weights([v.astype(np.float32) for v in values])
    return model


def stochastic_sign_check(w, *, samples, seed=0, std_errors=SIGN_CHECK_STD_ERRORS):
    """Compare the mean of ``samples`` draws of :func:`edgebnn.ops.stochastic_sign` with its expectation.

    Every latent weight of ``w`` is sampled ``samples`` times (global and op seed ``seed``). A draw
    is +1 with probability ``p = hard_sigmoid(w)``, so its expectation is ``2p - 1`` and the
    standard error of the mean of ``samples`` draws is ``sqrt((1 - (2p - 1)**2) / samples)``.

    Args:
        w: 1-D float array of latent weights.
        samples: draws per weight.
        seed: seed of the draws.
        std_errors: how many standard errors a sample mean may be off.

    Returns:
        dict of float32 arrays over ``w``: ``"w"``, ``"expected"``, ``"mean"``, ``"std_err"``, the
        bool array ``"within"`` (``|mean - expected| <= std_errors * std_err``) and ``"all_within"``.

    Raises:
        ValueError: ``w`` is not 1-D, or ``samples`` is not a positive int.
    """
    w = np.asarray(w, np.float32)
    if w.ndim != 1:
        raise ValueError(f"`w` must be a 1-D array of latent weights, got shape {w.shape}.")
    samples = positive_int(samples, "samples")
    tf.random.set_seed(seed)
    draws = ops.stochastic_sign(np.tile(w, (samples, 1)), seed=seed).numpy()
    expected = 2.0 * ops.hard_sigmoid(w).numpy() - 1.0
    mean = draws.mean(axis=0)
    std_err = np.sqrt((1.0 - expected**2) / samples)
    within = np.abs(mean - expected) <= std_errors * std_err + 1e-12
    return {"w": w, "expected": expected, "mean": mean, "std_err": std_err, "within": within,
            "all_within": bool(np.all(within))}
