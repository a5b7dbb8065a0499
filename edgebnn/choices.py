"""The named choices and defaults of options that both TensorFlow code and the recipe schema read.

This module imports nothing: the modules implementing each choice (optimizers, schedules,
adversarial training, distribution strategies, R-FGSM, APGD-T, the AutoAttack ensemble)
take their names from here, and :mod:`edgebnn.recipes.config` validates a recipe with them
before, or without, loading TensorFlow.
"""

#: Optimizers by name (:func:`edgebnn.training.make_optimizer`).
OPTIMIZERS = ("adam", "sgd")
#: Learning-rate schedules by name (:func:`edgebnn.training.learning_rate_schedule`).
SCHEDULES = ("constant", "step", "cosine")

#: Attacks of adversarial training (:class:`edgebnn.training.AdversarialModel`).
ADVERSARIAL_METHODS = ("fgsm", "fgsm_random_eps", "rfgsm", "pgd")
#: How adversarial examples enter a training batch: ``"replace"`` a fraction of it, or
#: ``"augment"`` it with the adversary of every example (Panda et al.: "for each
#: training sample an adversary is created").
ADVERSARIAL_MODES = ("replace", "augment")
#: Where the attack's labels come from: the training labels, or the model's own
#: predictions (Kurakin et al. 2017: avoids "label leaking").
LABEL_SOURCES = ("true", "predicted")

#: XLA compilation of a training step (:func:`edgebnn.training.train`): none, the optimizer
#: update only, or the whole step (exact only without random ops in the step).
XLA_MODES = ("off", "update", "step")
#: Adversarial training methods that draw random numbers (random starts, random eps).
RANDOM_ADVERSARIAL_METHODS = ("rfgsm", "pgd", "fgsm_random_eps")

#: Strategy names accepted by :func:`edgebnn.training.distribute.make_strategy` (and by a recipe's ``train.strategy``).
STRATEGIES = ("default", "mirrored", "multi_worker")

#: R-FGSM variant -> whether the gradient step is ``eps - alpha`` (total within ``eps``).
RFGSM_VARIANTS = {"tramer": True, "panda": False}

#: Croce and Hein's default number of target classes for APGD-T (all but the true one on 10 classes).
APGD_TARGET_CLASSES = 9

#: Surrogates the AutoAttack ensemble tries by default: the three distinct backward passes
#: (``"ste"`` equals ``"clipped"`` for inputs inside the valid range).
ENSEMBLE_SURROGATES = ("clipped", "identity", "smooth")
