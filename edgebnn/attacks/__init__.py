"""Adversarial attacks, one per module, in CleverHans' functional style.

Every attack is ``attack(model_fn, x, *, eps, ..., y=None, targeted=False,
clip_min=0., clip_max=1.)`` and returns adversarial examples; ``y=None`` uses the
model's own predictions (no label leaking). CW-L2 and JSMA are minimum-distortion
attacks: CW's ``eps`` is an optional L2 budget and JSMA has none (``gamma`` bounds the
fraction of changed pixels). Gradient attacks take ``eot_samples`` for randomized
models and ``surrogate`` for the backward pass through discretization and sign
(:mod:`edgebnn.attacks.surrogates`). APGD, APGD-T, Square and the ``autoattack``
ensemble are Croce and Hein's. Attacks are also reachable by name through :func:`get`,
which recipes use.

The arguments every attack shares:

- ``model_fn``: callable mapping a batch of inputs to logits (a Keras model works);
- ``x``: the inputs, in ``[clip_min, clip_max]``;
- ``y``: labels, or the targets when ``targeted``; ``None`` uses the model's predictions;
- ``targeted``: move toward ``y`` instead of away from it;
- ``clip_min``, ``clip_max``: the valid input range;
- ``eot_samples`` (gradient attacks): forward passes averaged per gradient, expectation
  over transformation (EOT) for models that sample at inference.

Example:
    >>> x_adv = edgebnn.attacks.get("pgd")(model, x, eps=0.1, steps=40)
"""

import inspect

from edgebnn.attacks import cleverhans_backend
from edgebnn.attacks.apgd import apgd, apgd_t
from edgebnn.attacks.autoattack import AutoAttackResult, autoattack, run_autoattack
from edgebnn.attacks.bim import bim
from edgebnn.attacks.common import label_oracle
from edgebnn.attacks.cw import cw_l2
from edgebnn.attacks.fgsm import fgsm
from edgebnn.attacks.jsma import jsma
from edgebnn.attacks.mim import mim
from edgebnn.attacks.pgd import pgd
from edgebnn.attacks.rfgsm import max_linf as rfgsm_max_linf, rfgsm
from edgebnn.attacks.spsa import spsa
from edgebnn.attacks.square import square, square_with_queries
from edgebnn.attacks.substitute import substitute, train_substitute
from edgebnn.attacks.surrogates import use_surrogate
from edgebnn.attacks.transfer import transfer

_REGISTRY = {
    "apgd": apgd,
    "apgd_t": apgd_t,
    "autoattack": autoattack,
    "bim": bim,
    "cw_l2": cw_l2,
    "fgsm": fgsm,
    "jsma": jsma,
    "mim": mim,
    "pgd": pgd,
    "rfgsm": rfgsm,
    "spsa": spsa,
    "square": square,
    "substitute": substitute,
}

#: Attacks that train a model or query a black box, so cannot run inside a ``tf.function``;
#: :func:`edgebnn.evaluation.robustness.craft` runs them once, eagerly, on the whole set.
EAGER_ONLY = frozenset({"autoattack", "substitute"})
#: Attacks without an ``eps`` budget argument.
NO_EPS = frozenset({"jsma"})


def names():
    """Sorted names of the registered attacks."""
    return sorted(_REGISTRY)


#: Implementations an attack can run with: edgebnn's own, or CleverHans' for the attacks
#: it has (:mod:`edgebnn.attacks.cleverhans_backend`).
BACKENDS = ("edgebnn", "cleverhans")


def get(name, *, backend="edgebnn"):
    """The attack function called ``name``, in the implementation of ``backend``.

    Args:
        name: a registered attack name (:func:`names`).
        backend: ``"edgebnn"`` (default) or ``"cleverhans"``, CleverHans 4's own code
            for ``fgsm``, ``pgd``, ``bim``, ``mim``, ``cw_l2`` and ``spsa``.

    Raises:
        ValueError: unknown name or backend, or an attack the backend lacks.
    """
    try:
        fn = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown attack {name!r}; valid names: {names()}.") from None
    if backend == "edgebnn":
        return fn
    if backend == "cleverhans":
        return cleverhans_backend.get(name)
    raise ValueError(f"Unknown attack backend {backend!r}; valid backends: {list(BACKENDS)}.")


def backend_of(attack_fn):
    """``"cleverhans"`` for a CleverHans wrapper, else ``"edgebnn"``."""
    return getattr(attack_fn, "backend", "edgebnn")


def keywords(attack_fn):
    """Names of the keyword-only options of ``attack_fn`` (``eps``, ``steps``, ``eot_samples``, ...)."""
    return {p.name for p in inspect.signature(attack_fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


def name_of(attack_fn):
    """Registry name of ``attack_fn`` (or its ``__name__`` if it is not registered)."""
    for name, fn in _REGISTRY.items():
        if fn is attack_fn:
            return name
    return getattr(attack_fn, "__name__", repr(attack_fn))


__all__ = [
    "AutoAttackResult", "BACKENDS", "EAGER_ONLY", "NO_EPS", "apgd", "backend_of", "apgd_t", "autoattack", "bim", "cw_l2", "fgsm", "get", "jsma", "keywords", "label_oracle", "mim", "names",
    "name_of", "pgd", "rfgsm", "rfgsm_max_linf", "run_autoattack", "spsa", "square", "square_with_queries", "substitute",
    "train_substitute", "transfer", "use_surrogate",
]
