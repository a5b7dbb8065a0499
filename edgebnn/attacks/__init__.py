"""Adversarial attacks, one per module, in CleverHans' functional style.

Every attack is ``attack(model_fn, x, *, eps, ..., y=None, targeted=False,
clip_min=0., clip_max=1.)`` and returns a tensor of adversarial examples. Attacks are
also reachable by name through :func:`get`, which recipes use.
"""

from edgebnn.attacks.fgsm import fgsm
from edgebnn.attacks.pgd import pgd

_REGISTRY = {
    "fgsm": fgsm,
    "pgd": pgd,
}


def names():
    """Sorted names of the registered attacks."""
    return sorted(_REGISTRY)


def get(name):
    """The attack function called ``name``; raises ``ValueError`` listing valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown attack {name!r}; valid names: {names()}.") from None


__all__ = ["fgsm", "get", "names", "pgd"]
