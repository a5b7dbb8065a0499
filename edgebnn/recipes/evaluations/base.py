"""The protocol every evaluation kind implements whole, and the result it returns.

A kind is a subclass of :class:`Kind` registered under its recipe key in
:data:`edgebnn.recipes.evaluations.KINDS`. It owns everything about its results:
its recipe entry (``Spec``) and checks, how an entry splits into separately cached
units, how a unit is computed, its console line, its lines in ``report.md`` and on
the results page, and whether its results feed figures or the deployment's
verification. The runner, the report, the console, the results page and the figures
only call these methods; none of them names a kind.
"""

import abc
from dataclasses import dataclass, field

#: Record key of a record's :meth:`Kind.check_record` result.
CHECK = "cell_check"
#: ``status`` of a failed :meth:`Kind.check_record` result.
FAILED = "fail"
#: Metrics of a result shown in its console line when the kind names none.
_NO_SUMMARY = ()


def pct(value):
    """A fraction as a percentage with two decimals, ``n/a`` for ``None``."""
    return "n/a" if value is None else f"{100 * value:.2f}%"


def num(value, digits=3):
    """A number with ``digits`` decimals, ``n/a`` for ``None``."""
    return "n/a" if value is None else f"{value:.{digits}f}"


@dataclass
class Result:
    """What a kind computes for one unit.

    Attributes:
        labels: what the result is (``attack``, ``eps``, ...): keys a table, a figure or a
            claim selects records by.
        metrics: its numbers (JSON-able).
        arrays: NumPy arrays kept in the store beside it (adversarial examples ``x_adv``
            with their labels ``y``, uncertainties), not in the report.
        outcomes: per-example outcomes, ``{name: bool vector}`` (``correct``: whether the
            model classified each evaluated row correctly), kept compactly in the store
            (:meth:`edgebnn.recipes.store.Store.load_outcomes`) for paired statistics
            across results of the same images.
    """

    labels: dict
    metrics: dict
    arrays: dict = field(default_factory=dict)
    outcomes: dict = field(default_factory=dict)


class Kind(abc.ABC):
    """One evaluation kind. Subclasses set ``Spec`` and implement the abstract methods.

    Attributes:
        Spec: the pydantic model of one recipe entry (unknown keys forbidden, or kept
            as options where the kind says so); ``None`` for a kind without a recipe
            section, which runs once in every cell (``clean``).
        in_every_table: whether the kind's records join every table (the clean
            accuracy is a column of any accuracy table).
        summary_metrics: metrics shown in the kind's console line, in order.
        seeded_draws: whether its numbers depend on the random draws of its batches'
            seeds (attacks crafted, or Monte-Carlo passes predicted, with a seed): its
            results' keys carry :data:`edgebnn.recipes.store.DRAW_SCHEME`.
    """

    Spec = None
    in_every_table = False
    summary_metrics = _NO_SUMMARY
    seeded_draws = False

    # --- the recipe -----------------------------------------------------------------

    def check(self, spec, *, recipe, cells, cell, where):
        """Check an entry against registries and other cells when the recipe loads.

        Raises:
            RecipeError: naming ``where.key``.
        """

    def check_model(self, spec, model, *, where):
        """Check an entry against the cell's built (untrained) model before training.

        Raises:
            RecipeError: naming ``where``.
        """

    @abc.abstractmethod
    def metrics(self, spec, *, recipe):
        """Names of the metrics every result of an entry holds (the numbers of its records a table or
        a claim may name; a value may be ``None``, e.g. a success rate with nothing attempted), from
        the entry ``spec`` (``None`` for a kind without a recipe section) and the cell's validated
        ``recipe``. Asked when the recipe loads, before anything runs, so it must not import
        TensorFlow; :meth:`run` returns exactly these names."""

    @abc.abstractmethod
    def units(self, spec, *, recipe):
        """JSON-able parameters of each separately cached result of an entry (e.g. one per eps)."""

    # --- the plan --------------------------------------------------------------------

    @abc.abstractmethod
    def label(self, unit):
        """Short human name of a unit (console lines)."""

    @abc.abstractmethod
    def cost(self, unit, *, recipe, n_eval):
        """Rough forward/backward passes of a unit on ``n_eval`` images (time estimates)."""

    def pool_size(self, unit):
        """Test images a unit needs apart from the evaluated ones."""
        return 0

    def source(self, unit):
        """The cell whose model a unit crafts its examples on (transfer), else ``None``."""
        return None

    def exports_examples(self, unit):
        """Whether a unit's adversarial examples (``arrays["x_adv"]``) verify the cell's deployment."""
        return False

    # --- checks across the results of a cell ------------------------------------------

    def attack_outcomes(self, record, outcomes, *, eps):
        """The attacks a record ran at ``eps`` on its cell's evaluated images, for checks of other
        results of the same images: ``{attack name: bool vector over the images from the first
        (still correctly classified after it) or None (not stored)}``; ``outcomes`` is the record's
        stored :attr:`Result.outcomes` (or ``None``). Empty when it ran none."""
        return {}

    def check_record(self, record, attacks_at):
        """A JSON-able check of a record against its cell's other results, kept in the record as
        :data:`CHECK`, or ``None``: ``attacks_at(eps)`` gives every other result's :meth:`attack_outcomes`
        at ``eps``, merged. A check has a ``status`` and a one-line ``message``; one whose status is
        :data:`FAILED` fails the run after its report is written."""
        return None

    # --- computing -------------------------------------------------------------------

    @abc.abstractmethod
    def run(self, unit, ctx):
        """Compute one unit from an :class:`~edgebnn.recipes.evaluations.common.EvalContext`; a :class:`Result`."""

    # --- reporting -------------------------------------------------------------------

    def summary(self, metrics):
        """The console line of a result: its :attr:`summary_metrics` present, else ``"done"``."""
        parts = [f"{key} {metrics[key]:.4f}" for key in self.summary_metrics if metrics.get(key) is not None]
        return ", ".join(parts) or "done"

    def table_row(self, record):
        """``(name, eps text)`` of the record's row in a cell's accuracy table, or ``None`` if it has none."""
        return None

    def markdown(self, record):
        """Lines of ``report.md``'s cell section for a record without a table row: its labels and metrics."""
        if self.table_row(record) is not None:
            return []
        return [f"- {record['evaluation']}: " + ", ".join(
            f"{k} {v}" for k, v in record.items() if k not in ("cell", "repeat", "evaluation"))]

    def page_section(self, records):
        """Lines the results page shows for ``records``, the kind's records of one ``report.json``."""
        return []

    def curve_x(self, record, *, attack, x, targets):
        """The x value of a record on an ``accuracy_vs_eps`` figure of ``attack`` (its ``x`` key:
        eps or iterations; ``targets`` the targeted mode shown), or ``None`` if it is not on it."""
        return None

    def histogram_set(self, record, *, attacks):
        """The name of a record's set in an ``uncertainty_histogram`` (``attacks``: names shown, or
        ``None`` for all), or ``None`` if it has none."""
        return None
