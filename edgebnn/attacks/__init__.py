"""Adversarial attacks, one per module, in CleverHans' functional style.

Every attack is ``attack(model_fn, x, *, eps, ..., y=None, targeted=False,
clip_min=0., clip_max=1.)`` and returns adversarial examples; ``y=None`` uses the
model's own predictions (no label leaking). CW-L2 and JSMA are minimum-distortion
attacks: CW's ``eps`` is an optional L2 budget and JSMA has none (``gamma`` bounds the
fraction of changed pixels). Gradient attacks take ``eot_samples`` for randomized
models and ``surrogate`` for the backward pass through discretization and sign
(:mod:`edgebnn.attacks.surrogates`). APGD, APGD-T, Square and the ``autoattack``
ensemble are Croce and Hein's. Attacks are also reachable by name through :func:`get`,
which recipes use; :data:`ATTACKS` holds each attack's facts (:class:`~edgebnn.attacks.info.AttackInfo`).

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

from edgebnn.attacks import cleverhans_backend
from edgebnn.attacks.apgd import apgd, apgd_t
from edgebnn.attacks.autoattack import AutoAttackResult, autoattack, run_autoattack
from edgebnn.attacks.bim import bim
from edgebnn.attacks.common import label_oracle
from edgebnn.attacks.cw import cw_l2
from edgebnn.attacks.fgsm import fgsm
from edgebnn.attacks.info import AttackInfo, keywords
from edgebnn.attacks.jsma import jsma
from edgebnn.attacks.mim import mim
from edgebnn.attacks.pgd import pgd
from edgebnn.attacks.rfgsm import max_linf as rfgsm_max_linf, rfgsm
from edgebnn.attacks.spsa import spsa
from edgebnn.attacks.square import square, square_with_queries
from edgebnn.attacks.substitute import substitute, train_substitute
from edgebnn.attacks.surrogates import use_surrogate
from edgebnn.attacks.transfer import transfer

#: Attack name -> :class:`~edgebnn.attacks.info.AttackInfo`: the attack and its facts.
ATTACKS = {
    "apgd": AttackInfo(apgd, budget="steps", cost_factors=("restarts",)),
    "apgd_t": AttackInfo(apgd_t, budget="steps", cost_factors=("restarts", "target_classes")),
    "autoattack": AttackInfo(autoattack, budget="steps", eager_only=True, cost_factors=("restarts",)),
    "bim": AttackInfo(bim, budget="steps"),
    "cw_l2": AttackInfo(cw_l2, budget="steps", cost_factors=("binary_search_steps",),
                        renamed=(("max_iterations", "steps"),)),
    "fgsm": AttackInfo(fgsm),
    "jsma": AttackInfo(jsma),
    "mim": AttackInfo(mim, budget="steps"),
    "pgd": AttackInfo(pgd, budget="steps", cost_factors=("restarts",)),
    "rfgsm": AttackInfo(rfgsm),
    "spsa": AttackInfo(spsa, budget="steps", cost_factors=("num_samples",)),
    "square": AttackInfo(square, budget="steps", budget_unit="queries", renamed=(("queries", "steps"),)),
    "substitute": AttackInfo(substitute, eager_only=True),
}


def names():
    """Sorted names of the registered attacks."""
    return sorted(ATTACKS)


def info(name):
    """The :class:`~edgebnn.attacks.info.AttackInfo` of attack ``name``.

    Raises:
        ValueError: unknown name, naming the valid ones.
    """
    try:
        return ATTACKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown attack {name!r}; valid names: {names()}.") from None


def info_of(attack_fn):
    """The :class:`~edgebnn.attacks.info.AttackInfo` of a registered attack function, else ``None``."""
    for entry in ATTACKS.values():
        if entry.fn is attack_fn:
            return entry
    return None


def eager_only(attack_fn):
    """Whether ``attack_fn`` must run eagerly on the whole set: registered as such, or a wrapper
    saying so (CleverHans' implementations)."""
    entry = info_of(attack_fn)
    return entry.eager_only if entry is not None else bool(getattr(attack_fn, "eager_only", False))


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
    fn = info(name).fn
    if backend == "edgebnn":
        return fn
    if backend == "cleverhans":
        return cleverhans_backend.get(name)
    raise ValueError(f"Unknown attack backend {backend!r}; valid backends: {list(BACKENDS)}.")


def backend_of(attack_fn):
    """``"cleverhans"`` for a CleverHans wrapper, else ``"edgebnn"``."""
    return getattr(attack_fn, "backend", "edgebnn")


def name_of(attack_fn):
    """Registry name of ``attack_fn`` (or its ``__name__`` if it is not registered)."""
    for name, entry in ATTACKS.items():
        if entry.fn is attack_fn:
            return name
    return getattr(attack_fn, "__name__", repr(attack_fn))


__all__ = [
    "ATTACKS", "AttackInfo", "AutoAttackResult", "BACKENDS", "apgd", "backend_of", "eager_only", "info", "info_of", "apgd_t", "autoattack", "bim", "cw_l2", "fgsm", "get", "jsma", "keywords", "label_oracle", "mim", "names",
    "name_of", "pgd", "rfgsm", "rfgsm_max_linf", "run_autoattack", "spsa", "square", "square_with_queries", "substitute",
    "train_substitute", "transfer", "use_surrogate",
]
