"""The plan of a study: its cells' units of work and the store keys they are cached under.

Pure: planning reads the study and the sizes of its data, trains and loads nothing,
and the same study always gives the same keys. The keys change only when what they
stand for changes (see :mod:`edgebnn.recipes.store`), so existing caches still hit.
"""

from dataclasses import dataclass

from edgebnn.recipes import sources
from edgebnn.recipes.evaluations import KINDS, entries
from edgebnn.recipes.schema import RecipeError
from edgebnn.recipes.store import DRAW_SCHEME, TRAINING_SCHEME, key_of


@dataclass(frozen=True)
class Unit:
    """One separately cached result of a cell.

    Attributes:
        kind: the evaluation kind's name (a key of :data:`~edgebnn.recipes.evaluations.KINDS`).
        params: the unit's JSON-able parameters (the kind's ``units``).
        where: the recipe entry it comes from (``attacks.0``), for messages.
        key: the store key of its result.
        source: the cell whose model crafts the examples (transfer attacks), else ``None``.
        metrics: the metric names its result may hold (the kind's ``metrics`` of its entry).
    """

    kind: str
    params: dict
    where: str
    key: str
    source: str | None = None
    metrics: tuple = ()

    @property
    def module(self):
        """The evaluation kind computing this unit."""
        return KINDS[self.kind]


@dataclass(frozen=True)
class CellPlan:
    """Everything a cell computes, with its keys and its planned work.

    Attributes:
        model_key: store key of the cell's trained model.
        units: the cell's results, clean first, in recipe order.
        n_eval: evaluated test images (``evaluation.limit``).
        n_pool: test images apart from the evaluated ones.
        train_work: rough forward/backward passes of its training (for time estimates).
        unit_work: ``{unit key: work}`` of its results.
    """

    model_key: str
    units: tuple
    n_eval: int
    n_pool: int
    train_work: float
    unit_work: dict

    def deploy_key(self, deploy):
        """Store key of the cell's deployment under the ``[deploy]`` section ``deploy``:
        its model, the section, and the results whose adversarial examples verify it."""
        return key_of({"model": self.model_key, "deploy": deploy.model_dump(mode="json"),
                       "results": [u.key for u in self.units if exports_examples(u)]})


def exports_examples(unit):
    """Whether ``unit``'s adversarial examples verify the cell's deployment."""
    return bool(unit.module.exports_examples(unit.params))


def eval_split(n_test, limit):
    """``(n_eval, n_pool)``: the evaluated test images (the first ``limit``, at most all) and the rest."""
    n_eval = n_test if limit is None else min(limit, n_test)
    return n_eval, n_test - n_eval


def _data_part(recipe):
    return sources.data_part(recipe)  # not where the files are, but what they hold


def model_key(recipe):
    """Store key of the model ``recipe`` trains: its data, model and training sections, and the
    training scheme (:data:`~edgebnn.recipes.store.TRAINING_SCHEME`); a saved model that is not
    trained: its file's sha256 alone."""
    if not sources.trains(recipe):
        return key_of({"model": sources.model_part(recipe)})
    train_part = recipe.train.model_dump(mode="json")
    if train_part["strategy"] == "default":
        del train_part["strategy"]  # the keys of models trained before strategies existed
    train_part.pop("tensorboard", None)  # logging does not change the weights
    return key_of({"data": _data_part(recipe), "model": sources.model_part(recipe), "train": train_part,
                   "training_scheme": TRAINING_SCHEME})


def unit_key(recipe, *, kind, params, model, source_model=None):
    """Store key of one result: its model (and the model crafting it), data, evaluation settings and
    parameters, and for a kind with :attr:`~edgebnn.recipes.evaluations.base.Kind.seeded_draws` the
    :data:`~edgebnn.recipes.store.DRAW_SCHEME` its batches draw under."""
    payload = {"model": model, "source_model": source_model, "data": _data_part(recipe),
               "evaluation": recipe.evaluation.model_dump(mode="json"), "kind": kind, "unit": params}
    if KINDS[kind].seeded_draws:
        payload["draw_scheme"] = DRAW_SCHEME
    return key_of(payload)


def epoch_work(train):
    """Forward/backward passes per training image and epoch under the ``[train]`` section ``train``:
    one, plus the steps of the adversary on the fraction of images it replaces (or all, when augmenting)."""
    adv = train.adversarial
    if adv is None:
        return 1.0
    steps = adv.steps if adv.method == "pgd" else 1
    return 1.0 + steps * (1.0 if adv.mode == "augment" else adv.fraction)


def cell_of(study, name, repeat):
    """The cell called ``name`` in repeat ``repeat`` of ``study``."""
    for cell in study.cells:
        if cell.name == name and cell.repeat == repeat:
            return cell
    raise RecipeError(f"no cell named {name!r}")  # config.expand checked the names


def plan_cell(study, cell, *, n_train, n_test):
    """The :class:`CellPlan` of ``cell``, whose data has ``n_train`` training and ``n_test`` test images.

    Raises:
        RecipeError: ``evaluation.limit``, when the recipe sets it, is above the test images;
            a unit needs more test images apart from the evaluated ones than remain.
    """
    recipe, prefix = cell.recipe, "" if study.single else f"cell {cell.name!r}: "
    limit = recipe.evaluation.limit
    if limit is not None and limit > n_test and "limit" in recipe.evaluation.model_fields_set:
        raise RecipeError(f"{prefix}`evaluation.limit` ({limit:,}) is more than the {n_test:,} test images of the "
                          f"data; lower it to at most {n_test:,}.")
    n_eval, n_pool = eval_split(n_test, limit)
    key = model_key(recipe)
    units = []
    for name, where, spec in entries(recipe):
        kind = KINDS[name]
        metrics = tuple(kind.metrics(spec, recipe=recipe))
        for params in kind.units(spec, recipe=recipe):
            need = kind.pool_size(params)
            if need > n_pool:
                raise RecipeError(
                    f"{prefix}`{where}` needs {need:,} test images apart from the {n_eval:,} "
                    f"evaluated ones, but only {n_pool:,} remain; lower `evaluation.limit` or use "
                    f"a larger test part.")
            source = kind.source(params)
            source_key = None if source is None else model_key(cell_of(study, source, cell.repeat).recipe)
            units.append(Unit(name, params, where, unit_key(recipe, kind=name, params=params, model=key,
                                                            source_model=source_key), source, metrics))
    train_work = recipe.train.epochs * n_train * epoch_work(recipe.train) if sources.trains(recipe) else 0.0
    unit_work = {u.key: u.module.cost(u.params, recipe=recipe, n_eval=n_eval) for u in units}
    return CellPlan(key, tuple(units), n_eval, n_pool, train_work, unit_work)


def plan(study, sizes):
    """``{cell id: CellPlan}`` of every cell; ``sizes(recipe) -> (n_train, n_test)`` of its data."""
    plans = {}
    for cell in study.cells:
        n_train, n_test = sizes(cell.recipe)
        plans[cell.id] = plan_cell(study, cell, n_train=n_train, n_test=n_test)
    return plans
