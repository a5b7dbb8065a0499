"""Helpers for checking models that were never trained: tests, benchmarks and size tables.

Not part of the model zoo: nothing here builds or trains a model. Like Larq's
``larq.testing_utils``, it lives beside the library so that tests, the ``benchmarks``
package and the scripts share one copy.
"""

import numpy as np
import tensorflow as tf


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
