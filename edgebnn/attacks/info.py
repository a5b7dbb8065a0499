"""What the rest of edgebnn needs to know about an attack, in one entry per attack.

:class:`AttackInfo` is the registry entry of :data:`edgebnn.attacks.ATTACKS`: the
attack function and the facts its signature does not tell: which option is its
iteration budget (``steps`` for every attack that has one; :data:`BUDGET` is the one
spelling), whether it must run eagerly, which options multiply its cost, and which
options recipes stored under an earlier spelling.
What the signature does tell (whether it takes ``eps``, EOT samples, a gradient
surrogate, a targeted mode) is read from the signature, so the two never disagree.
Recipes, the strong evaluation and the benchmarks ask these entries.
"""

import inspect
from dataclasses import dataclass
from typing import Callable

#: What a budget counts: gradient iterations (labelled ``iterations`` in recipe results),
#: model queries (black-box), or rounds of substitute training.
BUDGET_UNITS = ("iterations", "queries", "rounds")
#: The keyword of an attack's iteration budget, whatever it counts (:attr:`AttackInfo.budget_unit`).
BUDGET = "steps"


@dataclass(frozen=True)
class AttackInfo:
    """One attack of the registry.

    Attributes:
        fn: the attack, ``fn(model_fn, x, *, eps, ..., y=None, targeted=False, clip_min, clip_max)``.
        budget: the keyword option holding its iteration budget (:data:`BUDGET`), ``None``
            for a single-step attack.
        budget_unit: what the budget counts, one of :data:`BUDGET_UNITS`.
        eager_only: trains a model or queries a black box, so cannot run inside a
            ``tf.function``; it runs once, eagerly, on the whole set.
        cost_factors: options that multiply the forward/backward passes per budget step
            (CW's ``binary_search_steps``, SPSA's ``num_samples``).
        renamed: ``(earlier spelling, option)`` pairs: options recipes wrote under
            another name before the budget had one spelling (CW's ``max_iterations``,
            Square's ``queries``). Stored results keep their keys, so a recipe may still
            write the earlier name; :meth:`canonical` maps it before the attack is called.
    """

    fn: Callable
    budget: str | None = None
    budget_unit: str = "iterations"
    eager_only: bool = False
    cost_factors: tuple = ()
    renamed: tuple = ()

    def __post_init__(self):
        if self.budget_unit not in BUDGET_UNITS:
            raise ValueError(f"`budget_unit` must be one of {list(BUDGET_UNITS)}, got {self.budget_unit!r}.")
        if self.budget is not None and self.budget not in self.keywords:
            raise ValueError(f"`budget`: {self.fn.__name__} has no keyword option {self.budget!r}.")
        for old, new in self.renamed:
            if new not in self.keywords or old in self.keywords:
                raise ValueError(f"`renamed`: {self.fn.__name__} must take {new!r} and not {old!r}, "
                                 f"got ({old!r}, {new!r}).")

    def canonical(self, options):
        """``options`` with every earlier spelling (:attr:`renamed`) replaced by the option's name.

        Raises:
            ValueError: both spellings of one option are given.
        """
        options = dict(options)
        for old, new in self.renamed:
            if old in options:
                if new in options:
                    raise ValueError(f"`{old}` is the earlier name of `{new}`; give one of them, got both.")
                options[new] = options.pop(old)
        return options

    @property
    def keywords(self):
        """Names of the attack's keyword-only options."""
        return keywords(self.fn)

    @property
    def takes_eps(self):
        """Whether the attack has an ``eps`` budget (JSMA has none)."""
        return "eps" in self.keywords

    @property
    def takes_eot(self):
        """Whether it averages gradients over samples of a randomized model (``eot_samples``)."""
        return "eot_samples" in self.keywords

    @property
    def takes_surrogate(self):
        """Whether it takes a ``surrogate`` for the backward pass through discretization and sign."""
        return "surrogate" in self.keywords

    def default(self, option):
        """The default value of keyword ``option``, ``None`` if it has none."""
        parameter = inspect.signature(self.fn).parameters.get(option)
        return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default

    def iterations(self, options):
        """The iteration budget ``options`` set (``None`` if they set none, or the budget is not
        in iterations): a label of a recipe result, so that entries differing only in their
        budget (Galloway et al.'s CW-L2 after 10, 100, ... iterations) are told apart."""
        if self.budget is None or self.budget_unit != "iterations":
            return None
        return self.canonical(options).get(self.budget)

    def cost(self, options, *, eot_samples=1):
        """Rough forward/backward passes per image under ``options`` (defaults where unset),
        for time estimates: the budget times the cost factors times the EOT samples."""
        options = self.canonical(options)
        passes = 1
        for option in (self.budget, *self.cost_factors):
            if option is not None:
                value = options.get(option, self.default(option))
                passes *= max(int(value), 1) if isinstance(value, (int, float)) and not isinstance(value, bool) else 1
        return passes * (eot_samples if self.takes_eot else 1)


def keywords(fn):
    """Names of the keyword-only options of ``fn``."""
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}
