"""AutoGraph leaves Keras 2 (``tf_keras``) alone, as it always left Keras.

Inside a ``tf.function`` AutoGraph rewrites the Python source of every function it
reaches, except those of the libraries on its do-not-convert list (``tensorflow``,
``keras``, ``numpy``, ...), whose code is written for graph mode already. TensorFlow
2.16 moved Keras 2 into the ``tf_keras`` package without adding that package to the
list, so the first ``fit`` / ``predict`` / ``evaluate`` of every process, and the first
attack on a model, transpiles some 1,500 Keras functions before running anything.
Up to TensorFlow 2.15 the same code was the ``keras`` package and never converted;
:func:`skip_keras_internals` restores that. The graphs are the same (same ops, so
the same numbers, which a test checks); only the transpiling is skipped. Code outside
``tf_keras`` (edgebnn's ``train_step``, a user's layers) is converted as before.
"""

from tensorflow.python.autograph.core import config

_RULE = config.DoNotConvert("tf_keras")


def skip_keras_internals():
    """Put ``tf_keras`` on AutoGraph's do-not-convert list (idempotent)."""
    if not any(isinstance(rule, config.DoNotConvert) and rule.matches("tf_keras") for rule in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (_RULE, *config.CONVERSION_RULES)
