"""CleverHans' own attack implementations, selectable instead of edgebnn's (``backend="cleverhans"``).

edgebnn's attacks are its own (compiled, with EOT, restarts and gradient surrogates)
and are tested against CleverHans 4 as the reference. Two of the papers behind edgebnn
ran their attacks with CleverHans itself, so the attacks CleverHans has can also run
through CleverHans' code, for a like-for-like replication:

==========  =====================================================
name        CleverHans 4 function (``cleverhans.tf2.attacks``)
==========  =====================================================
``fgsm``    ``fast_gradient_method``
``pgd``     ``projected_gradient_descent``
``bim``     ``basic_iterative_method``
``mim``     ``momentum_iterative_method``
``cw_l2``   ``carlini_wagner_l2``
``spsa``    ``spsa`` (one image per call, as CleverHans requires)
==========  =====================================================

Each wrapper takes edgebnn's argument names and defaults for the options CleverHans
has, and none of the others (no ``eot_samples``, ``surrogate``, ``restarts``: CleverHans
takes one sample per gradient and the model's own backward pass). Arguments are
validated at the door as for edgebnn's attacks (:func:`edgebnn.attacks.common.prepare`),
then passed to CleverHans unchanged. The wrappers run eagerly (CleverHans' CW and SPSA
use NumPy between steps); :func:`edgebnn.evaluation.robustness.craft` calls them once on
the whole set (attribute ``eager_only``).

CleverHans' CW treats any given ``y`` as targets (``targeted = y is not None``), so the
``cw_l2`` wrapper refuses an untargeted call with labels: untargeted CW through
CleverHans attacks the model's own predictions (``y=None``).
"""

import numpy as np

from edgebnn import _validate
from edgebnn.attacks.common import prepare, validate_nonnegative
from edgebnn.attacks.mim import mim_options
from edgebnn.attacks.pgd import pgd_step_size

import tensorflow as tf

#: The package, and the version whose code the wrappers call (pinned in pyproject.toml).
NAME = "cleverhans"


def version():
    """The installed CleverHans version (``"4.0.0"``)."""
    from importlib.metadata import version as installed  # noqa: PLC0415

    return installed("cleverhans")


def _eager(fn):
    fn.eager_only = True
    fn.backend = NAME
    return fn


@_eager
def fgsm(model_fn, x, *, eps, norm=np.inf, y=None, targeted=False, clip_min=0.0, clip_max=1.0):
    """CleverHans' ``fast_gradient_method`` (FGSM for L-inf, FGM for L2)."""
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method  # noqa: PLC0415

    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm)
    return fast_gradient_method(model_fn, a.x, a.eps, a.norm, clip_min=clip_min, clip_max=clip_max, y=a.y,
                                targeted=a.targeted)


def _iterative(attack, model_fn, x, *, eps, steps, step_size, norm, y, targeted, clip_min, clip_max, **options):
    """Validate PGD's / BIM's arguments, then call CleverHans' ``attack`` with its positional layout."""
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                steps=steps)
    step_size = pgd_step_size(a.steps, step_size, a.eps)
    if a.eps == 0:
        return a.x
    return attack(model_fn, a.x, a.eps, step_size, a.steps, a.norm, clip_min=clip_min, clip_max=clip_max, y=a.y,
                  targeted=a.targeted, **options)


@_eager
def pgd(model_fn, x, *, eps, steps=40, step_size=None, norm=np.inf, rand_init=True, y=None, targeted=False,
        clip_min=0.0, clip_max=1.0):
    """CleverHans' ``projected_gradient_descent`` (Madry et al.; random start in the eps ball)."""
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent  # noqa: PLC0415

    return _iterative(projected_gradient_descent, model_fn, x, eps=eps, steps=steps, step_size=step_size, norm=norm,
                      y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, rand_init=bool(rand_init))


@_eager
def bim(model_fn, x, *, eps, steps=10, step_size=None, norm=np.inf, y=None, targeted=False, clip_min=0.0,
        clip_max=1.0):
    """CleverHans' ``basic_iterative_method`` (PGD from the clean input)."""
    from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method  # noqa: PLC0415

    return _iterative(basic_iterative_method, model_fn, x, eps=eps, steps=steps, step_size=step_size, norm=norm,
                      y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, sanity_checks=False)


@_eager
def mim(model_fn, x, *, eps, steps=10, step_size=None, decay=1.0, norm=np.inf, y=None, targeted=False,
        clip_min=0.0, clip_max=1.0):
    """CleverHans' ``momentum_iterative_method`` (Dong et al. 2018)."""
    from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method  # noqa: PLC0415

    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps, norm=norm,
                steps=steps)
    step_size, decay = mim_options(a.steps, step_size, decay, a.eps)
    if a.eps == 0:
        return a.x
    return momentum_iterative_method(model_fn, a.x, eps=a.eps, eps_iter=step_size, nb_iter=a.steps, norm=a.norm,
                                     clip_min=clip_min, clip_max=clip_max, y=a.y, targeted=a.targeted,
                                     decay_factor=decay, sanity_checks=False)


@_eager
def cw_l2(model_fn, x, *, y=None, targeted=False, confidence=0.0, learning_rate=0.05, binary_search_steps=5,
          steps=100, initial_const=1.0, clip_min=0.0, clip_max=1.0):
    """CleverHans' ``carlini_wagner_l2`` (with its early abort), edgebnn's defaults (``steps``: its ``max_iterations``).

    Raises:
        ValueError: untargeted with ``y`` given (CleverHans would attack toward ``y``).
    """
    from cleverhans.tf2.attacks.carlini_wagner_l2 import carlini_wagner_l2  # noqa: PLC0415

    if y is not None and not targeted:
        raise ValueError("CleverHans' CW treats a given `y` as targets; for untargeted CW through CleverHans "
                         "pass y=None (the model's own predictions).")
    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max,
                binary_search_steps=binary_search_steps, steps=steps)
    out = carlini_wagner_l2(
        model_fn, a.x, y=a.y, targeted=a.targeted, clip_min=clip_min, clip_max=clip_max,
        binary_search_steps=a.binary_search_steps, max_iterations=a.steps,
        confidence=validate_nonnegative(confidence, "confidence"),
        initial_const=validate_nonnegative(initial_const, "initial_const"),
        learning_rate=_validate.number(learning_rate, "learning_rate", low=0, low_open=True),
    )
    return tf.convert_to_tensor(out, tf.float32)


@_eager
def spsa(model_fn, x, *, eps, steps=100, learning_rate=0.01, delta=0.01, num_samples=128, y=None, targeted=False,
         clip_min=0.0, clip_max=1.0):
    """CleverHans' ``spsa``, called once per image (CleverHans takes batches of one)."""
    from cleverhans.tf2.attacks.spsa import spsa as cleverhans_spsa  # noqa: PLC0415

    a = prepare(model_fn, x, y=y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, eps=eps,
                steps=steps, num_samples=num_samples)
    learning_rate = _validate.number(learning_rate, "learning_rate", low=0, low_open=True)
    delta = _validate.number(delta, "delta", low=0, low_open=True)
    if a.eps == 0:
        return a.x
    labels = a.y if a.y is not None else tf.argmax(model_fn(a.x), axis=-1)
    rows = [
        cleverhans_spsa(model_fn, a.x[i : i + 1], labels[i : i + 1], a.eps, a.steps, clip_min=clip_min,
                        clip_max=clip_max, targeted=a.targeted, learning_rate=learning_rate, delta=delta,
                        spsa_samples=a.num_samples)
        for i in range(int(a.x.shape[0]))
    ]
    return tf.concat(rows, axis=0) if rows else a.x


#: edgebnn attack name -> the wrapper calling CleverHans' implementation.
ATTACKS = {"bim": bim, "cw_l2": cw_l2, "fgsm": fgsm, "mim": mim, "pgd": pgd, "spsa": spsa}


def get(name):
    """The CleverHans wrapper of attack ``name``; raises ``ValueError`` naming the attacks CleverHans has."""
    try:
        return ATTACKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"CleverHans has no attack {name!r}; it has {sorted(ATTACKS)}.") from None


__all__ = ["ATTACKS", "NAME", "bim", "cw_l2", "fgsm", "get", "mim", "pgd", "spsa", "version"]
