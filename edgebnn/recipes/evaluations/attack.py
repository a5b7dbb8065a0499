"""``[[attacks]]``: accuracy and perturbation statistics under an attack of the registry.

Any attack registered in :mod:`edgebnn.attacks` works by name; its keyword options
are the extra keys of the entry, checked against the attack's signature. Per eps the
result holds the accuracy (true labels), the success rate, the mean / median L2
and L-inf norms of the successful perturbations, the mean L2 norm over every attacked
row (``l2_mean_all``: failed rows count with the perturbation the attack returned, zero
for CW; the "mean L2" of CleverHans' tutorials and Galloway et al.) and the largest L-inf
distance of any adversarial example (``linf_max``: above ``eps`` for Panda's R-FGSM), the
top-5 accuracy for datasets of more than 10 classes; with ``evaluation.mc_passes`` also
the Monte-Carlo vote's accuracy and Guan's uncertainty.

- ``labels``: what an untargeted attack moves away from: ``"true"`` labels or the
  model's ``"predicted"`` ones (no label leaking); default ``evaluation.labels``.
- ``targets``: a targeted attack toward one ``"random"`` wrong class per image, or
  toward ``"all"`` wrong classes (every image attacked once per wrong class, as in
  Galloway et al.'s CW experiment).
- ``source``: the name of another cell; the examples are crafted on its model
  (white-box) and evaluated on this cell's model (transfer).
- ``holdout``: for attacks taking ``x_holdout`` (the substitute attack), how many test
  images, apart from the evaluated ones, the attacker starts from.
- ``gradient``: ``"eot"`` (default): a randomized model is attacked with expectation over
  its randomness (``evaluation.eot_samples`` passes per gradient); ``"single"``: the plain
  attack, one stochastic pass per gradient. A label of the result, so a table can put
  the two side by side (on a deterministic model they coincide).
- ``backend``: ``"edgebnn"`` (default) or ``"cleverhans"``: CleverHans 4's own code for
  the attacks it has (``fgsm``, ``pgd``, ``bim``, ``mim``, ``cw_l2``, ``spsa``;
  :mod:`edgebnn.attacks.cleverhans_backend`), one sample per gradient (no EOT, no
  surrogates). Its results carry the label ``implementation = "cleverhans 4.0.0"`` (the
  installed version) and ``gradient = "single"``; results of edgebnn's own attacks carry
  no ``implementation`` label, so that results stored before backends existed still
  compare equal to new ones.

Success rate: for an untargeted attack, the fraction of the images the model
classifies correctly without attack that it misclassifies after; for a targeted one,
the fraction of (image, target) pairs classified as the target.
"""

import inspect
import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from edgebnn.evaluation.metrics import ATTACK_METRICS, attack_metrics, targets_for
from edgebnn.recipes.evaluations import common
from edgebnn.recipes.evaluations.base import Kind, Result
from edgebnn.recipes.schema import OpenSection, RecipeError

_Eps = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: Keywords the runner sets itself (not options of a recipe entry).
_RESERVED = {"eps", "y", "targeted", "x_holdout"}
#: Rows per image of ``targets = "all"`` in the time estimate (one per wrong class of a 10-class dataset).
TARGETS_ALL_FACTOR = 9


def _is_budget(value):
    """Whether ``value`` is one eps: a finite number >= 0 (a TOML ``true`` is no number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


class Spec(OpenSection):
    name: str
    eps: list[_Eps] | _Eps | None = None

    @field_validator("eps", mode="before")
    @classmethod
    def _eps_is_a_budget(cls, value):
        """One message for every bad eps (pydantic's would name the list alternative of a bad number)."""
        if value is None or _is_budget(value) or (isinstance(value, list) and all(map(_is_budget, value))):
            return value
        raise PydanticCustomError("eps", "must be a number >= 0 or a list of numbers >= 0")
    labels: Literal["true", "predicted"] | None = None
    targets: Literal["random", "all"] | None = None
    source: str | None = None
    holdout: Annotated[int, Field(ge=1)] = 150
    gradient: Literal[common.GRADIENTS] = "eot"
    backend: str = "edgebnn"

    @property
    def eps_list(self):
        if self.eps is None:
            return [None]
        return [float(e) for e in (self.eps if isinstance(self.eps, list) else [self.eps])]


def _open_options(fn):
    """Whether the attack takes ``**options`` (passed on, e.g. the substitute's training options),
    whose names only the attack itself can check when it runs."""
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def _expected_type(parameter):
    """``(types, description)`` a recipe value of ``parameter`` must have, from its default
    (a TOML value is a bool, int, float, string or list); ``None`` when the default says nothing."""
    default = parameter.default
    if parameter.name == "norm":
        return (int, float, str), "a norm (inf, 2, \"inf\" or \"l2\")"
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "an int"
    if isinstance(default, float):
        return (int, float), "a number"
    if isinstance(default, str):
        return (str,), "a string"
    if isinstance(default, (tuple, list)):
        return (list,), "a list"
    return None


def check_option_types(fn, options, *, attack, where, renamed=()):
    """Raise naming ``where.key`` when an option's TOML type does not fit the attack's
    keyword (its default's type), so ``steps = "forty"`` fails when the recipe loads.
    ``renamed``: ``(earlier spelling, keyword)`` pairs (:attr:`edgebnn.attacks.info.AttackInfo.renamed`)."""
    parameters = inspect.signature(fn).parameters
    spelled = dict(renamed)
    for key, value in options.items():
        name = spelled.get(key, key)
        if name not in parameters:
            continue
        expected = _expected_type(parameters[name])
        if expected is None:
            continue
        types, description = expected
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)  # TOML true is no int
        if ok and isinstance(value, float) and not np.isfinite(value) and key != "norm":  # norm = inf is valid
            ok = False
        if not ok:
            raise RecipeError(f"`{where}.{key}`: attack {attack!r} expects {description}, got {value!r}.")


#: The pixel range attacks work in (their ``clip_min`` / ``clip_max`` defaults).
PIXEL_RANGE = (0.0, 1.0)


def check_linf_budget(fn, eps_list, options, *, where):
    """Reject an L-inf eps wider than the pixel range: every pixel could take any value, so the
    number measures nothing (an L2 budget may exceed it)."""
    parameters = inspect.signature(fn).parameters
    if "norm" not in parameters:
        return
    norm = options.get("norm", parameters["norm"].default)
    if norm not in (np.inf, "inf"):
        return
    width = options.get("clip_max", PIXEL_RANGE[1]) - options.get("clip_min", PIXEL_RANGE[0])
    wide = [eps for eps in eps_list if eps is not None and eps > width]
    if wide:
        raise RecipeError(f"`{where}.eps`: an L-inf eps must be at most the pixel range {width:g} "
                          f"(clip_max - clip_min), got {wide[0]:g}.")


def check_options(attack, fn, options, *, where, open_options=False):
    """Raise naming ``where.key`` for an option attack ``attack`` (implementation ``fn``) does not
    take under that name or an earlier one (:attr:`edgebnn.attacks.info.AttackInfo.renamed`), or
    of the wrong type, or an option given under both names. ``open_options``: an attack taking
    ``**options`` checks their names itself when it runs."""
    from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

    entry = attacks.info(attack)
    try:
        entry.canonical(options)
    except ValueError as e:
        raise RecipeError(f"`{where}`: {e}") from None
    accepted = attacks.keywords(fn) - _RESERVED
    earlier = {old for old, new in entry.renamed if new in accepted}
    unknown = [] if open_options and _open_options(fn) else [k for k in options if k not in accepted | earlier]
    if unknown:
        raise RecipeError(f"unknown key `{where}.{unknown[0]}` for attack {attack!r}; valid keys: {sorted(accepted)}.")
    check_option_types(fn, options, attack=attack, where=where, renamed=entry.renamed)


def _eps_required(fn):
    """Whether ``eps`` is a required argument of the attack (CW-L2's budget is optional)."""
    parameter = inspect.signature(fn).parameters.get("eps")
    return parameter is not None and parameter.default is inspect.Parameter.empty


def check_reference(attack, eps, options, *, where):
    """Checks for an entry of another kind that names an attack (``attack = "fgsm"``):
    the attack exists, ``eps`` fits it and the entry's extra keys are its options.

    Returns:
        The attack function.
    """
    from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

    try:
        fn = attacks.get(attack)
    except ValueError as e:
        raise RecipeError(f"`{where}.attack`: {e}") from None
    if eps is not None and not attacks.info(attack).takes_eps:
        raise RecipeError(f"`{where}.eps`: attack {attack!r} takes no `eps`.")
    if eps is None and _eps_required(fn):
        raise RecipeError(f"`{where}.eps`: attack {attack!r} needs `eps`.")
    check_options(attack, fn, options, where=where)
    return fn


def dry_run(name, eps, options, model, *, where, targeted=False, backend="edgebnn"):
    """Call the attack once on one blank image of ``model``, so its own checks of the
    option values fail now, naming the entry, instead of after training.

    Black-box attacks that train a model (:func:`edgebnn.attacks.eager_only`) are not dry-run.
    """
    import numpy as np  # noqa: PLC0415

    from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

    if attacks.info(name).eager_only or backend != "edgebnn":  # CleverHans' code: checked at the door when it runs
        return
    x = np.zeros((1, *model.input_shape[1:]), np.float32)
    options = attacks.info(name).canonical(options)
    budget = {} if eps is None else {"eps": eps}
    extra = {"targeted": True, "y": np.zeros(1, np.int64)} if targeted else {}
    try:
        attacks.get(name)(model, x, **budget, **extra, **options)
    except (ValueError, TypeError) as e:
        raise RecipeError(f"`{where}`: {e}") from None


def iterations(name, options):
    """The iteration budget an entry of attack ``name`` sets in ``options``, else ``None``
    (:meth:`edgebnn.attacks.info.AttackInfo.iterations`).

    A label of the result, so that entries differing only in their attack budget (Galloway
    et al.'s Fig. 2: CW-L2 after 10, 100, ... iterations) are told apart in tables and figures.
    """
    from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

    return attacks.info(name).iterations(options)


class Attacks(Kind):
    """``[[attacks]]``: any attack of the registry, one result per eps."""

    Spec = Spec
    summary_metrics = ("accuracy", "accuracy_mc", "success_rate", "l2_mean")
    seeded_draws = True

    def check(self, spec, *, recipe, cells, cell, where):
        """Registry checks: the attack exists, its options and eps fit it, ``source`` names a cell."""
        from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

        try:
            attacks.get(spec.name)
        except ValueError as e:
            raise RecipeError(f"`{where}.name`: {e}") from None
        try:
            fn = attacks.get(spec.name, backend=spec.backend)
        except ValueError as e:
            raise RecipeError(f"`{where}.backend`: {e}") from None
        if (attacks.backend_of(fn) == "cleverhans" and spec.name == "cw_l2" and spec.targets is None
                and (spec.labels or recipe.evaluation.labels) == "true"):
            raise RecipeError(f"`{where}.backend`: CleverHans' CW treats given labels as targets; untargeted CW through "
                              "CleverHans needs `labels = \"predicted\"`.")
        keywords = attacks.keywords(fn)
        if not attacks.info(spec.name).takes_eps:
            if spec.eps is not None:
                raise RecipeError(f"`{where}.eps`: attack {spec.name!r} has no eps budget; remove the key.")
        elif spec.eps == [] or (spec.eps is None and _eps_required(fn)):
            raise RecipeError(f"`{where}` needs `eps` (a number or a non-empty list of numbers >= 0).")
        check_linf_budget(fn, spec.eps_list, spec.options, where=where)
        check_options(spec.name, fn, spec.options, where=where, open_options=True)
        if spec.targets is not None and "targeted" not in keywords:
            raise RecipeError(f"`{where}.targets`: attack {spec.name!r} has no targeted mode.")
        if spec.targets is not None and spec.labels is not None:
            raise RecipeError(f"`{where}.labels`: a targeted attack takes target labels; remove `labels` or `targets`.")
        if "holdout" in spec.model_fields_set and "x_holdout" not in keywords:
            raise RecipeError(f"`{where}.holdout`: attack {spec.name!r} takes no held-out set.")
        common.check_gradient(spec.gradient, options=spec.options, fields_set=spec.model_fields_set,
                              takes_eot="eot_samples" in keywords, where=where)
        if spec.source is not None:
            if spec.source not in cells:
                raise RecipeError(f"`{where}.source`: no cell named {spec.source!r}; cells: {sorted(cells)}.")
            if spec.source == cell:
                raise RecipeError(f"`{where}.source`: a transfer attack needs another cell than {cell!r} itself.")

    def check_model(self, spec, model, *, where):
        """Dry-run the attack with the entry's options on the cell's (untrained) model."""
        dry_run(spec.name, spec.eps_list[0], spec.options, model, where=where, targeted=spec.targets is not None,
                backend=spec.backend)

    def metrics(self, spec, *, recipe):
        return (*ATTACK_METRICS, "images", *common.top5_metrics(recipe), "eot_samples", *common.mc_metrics(recipe))

    def units(self, spec, *, recipe):
        """One result per eps."""
        from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

        holdout = spec.holdout if "x_holdout" in attacks.keywords(attacks.get(spec.name)) else None
        # The default backend adds no key, so results stored before backends existed keep their keys.
        backend = {} if spec.backend == "edgebnn" else {"backend": spec.backend}
        return [
            {
                "name": spec.name, "eps": eps, "labels": None if spec.targets else (spec.labels or recipe.evaluation.labels),
                "targets": spec.targets, "source": spec.source, "holdout": holdout, "options": spec.options,
                "gradient": spec.gradient, **backend,
            }
            for eps in spec.eps_list
        ]

    def pool_size(self, unit):
        """Test images this unit needs apart from the evaluated ones."""
        return unit["holdout"] or 0

    def label(self, unit):
        """Short human name of a unit."""
        eps = "" if unit["eps"] is None else f" eps={unit['eps']:g}"
        targets = f" targets={unit['targets']}" if unit["targets"] else ""
        source = f" from {unit['source']!r}" if unit["source"] else ""
        single = " single-sample" if unit.get("gradient") == "single" else ""
        backend = f" [{unit['backend']}]" if unit.get("backend", "edgebnn") != "edgebnn" else ""
        return f"{unit['name']}{eps}{targets}{source}{single}{backend}"

    def cost(self, unit, *, recipe, n_eval):
        """Rough forward+backward passes on the evaluated images (for the time estimate)."""
        from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

        targets = TARGETS_ALL_FACTOR if unit["targets"] == "all" else 1
        samples = 1 if unit.get("gradient") == "single" else (recipe.evaluation.eot_samples or 1)
        return n_eval * targets * attacks.info(unit["name"]).cost(unit["options"], eot_samples=samples)

    def run(self, unit, ctx):
        """Craft on the source (or this cell's) model and evaluate on this cell's model."""
        from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)

        name = self.label(unit)
        source_model, source_randomized = (
            (ctx.model, ctx.randomized) if unit["source"] is None else ctx.model_of(unit["source"])
        )
        x, y = ctx.x_eval, ctx.y_eval
        targets = None
        if unit["targets"]:
            rng = np.random.default_rng(ctx.evaluation.seed)
            index, targets = targets_for(y, mode=unit["targets"], num_classes=ctx.num_classes, rng=rng)
            x, y = x[index], y[index]
        attack_fn = attacks.get(unit["name"], backend=unit.get("backend", "edgebnn"))
        keywords = attacks.keywords(attack_fn)
        options = common.eot_option(ctx, attacks.info(unit["name"]).canonical(unit["options"]),
                                    gradient=unit["gradient"], randomized=source_randomized,
                                    takes_eot="eot_samples" in keywords)
        if unit["holdout"]:
            options["x_holdout"] = ctx.x_pool[: unit["holdout"]]
        if targets is not None:
            options["targeted"] = True
            attack_labels = targets
        else:
            attack_labels = y if unit["labels"] == "true" else None
        x_adv = common.craft(ctx, source_model, x, attack_labels, attack=attack_fn, eps=unit["eps"], label=name, **options)
        clean_pred = common.predict(ctx, ctx.model, x)
        adv_pred = common.predict(ctx, ctx.model, x_adv)
        metrics = attack_metrics(x=x, x_adv=x_adv, y=y, clean_pred=clean_pred, adv_pred=adv_pred, targets=targets)
        metrics["images"] = int(len(x))
        metrics.update(common.top5(ctx, ctx.model, x_adv, y))
        metrics["eot_samples"] = options.get("eot_samples", 1)
        arrays = {"x_adv": x_adv.astype(np.float32), "y": y}
        if ctx.evaluation.mc_passes:
            mc, uncertainty = common.monte_carlo(ctx, ctx.model, x_adv, y, name)
            metrics.update(mc)
            arrays["uncertainty"] = uncertainty
        cleverhans = attacks.backend_of(attack_fn) == "cleverhans"
        labels = {"attack": unit["name"], "eps": unit["eps"], "targets": unit["targets"], "source": unit["source"],
                  "labels": unit["labels"], "iterations": iterations(unit["name"], unit["options"]),
                  # CleverHans' code takes one sample per gradient, whatever the entry asked.
                  "gradient": "single" if cleverhans else unit["gradient"]}
        if cleverhans:
            labels["implementation"] = f"cleverhans {attacks.cleverhans_backend.version()}"
        return Result(labels=labels, metrics=metrics, arrays=arrays, outcomes={"correct": adv_pred == y})

    def source(self, unit):
        return unit["source"]

    def exports_examples(self, unit):
        """Examples crafted on the cell's own model verify its deployment (transferred ones do not)."""
        return unit["source"] is None

    def table_row(self, record):
        name = record.get("attack", "clean")
        if record.get("targets"):
            name += f" (targets: {record['targets']})"
        if record.get("source"):
            name += f" (from {record['source']})"
        if record.get("gradient") == "single":
            name += " (single-sample)"
        return name, "-" if record.get("eps") is None else format(record["eps"], "g")

    def page_section(self, records):
        return eot_versus_single(records)

    def curve_x(self, record, *, attack, x, targets):
        if record["attack"] != attack or record.get("targets") != targets or record.get("source"):
            return None
        return record.get(x)

    def histogram_set(self, record, *, attacks):
        if attacks is not None and record["attack"] not in attacks:
            return None
        return " ".join([record["attack"]] + ([] if record.get("eps") is None else [f"eps {record['eps']:g}"])
                        + (["single-sample"] if record.get("gradient") == "single" else []))


#: The labels that name one attack setting of a cell; a single-sample result is paired with the EOT
#: result that agrees on all of them (repeats of a setting are averaged).
_SETTING_LABELS = ("cell", "attack", "eps", "iterations", "targets", "source", "labels")


def eot_versus_single(records):
    """Markdown table of every attack setting run both ways (``records``: attack records of one report):
    accuracy (and the MC vote's) single-sample vs EOT, at the same eps, iterations, targets and source."""
    pairs = {}
    for r in records:
        if r.get("gradient") in ("single", "eot"):
            key = tuple(r.get(label) for label in _SETTING_LABELS)
            pairs.setdefault(key, {}).setdefault(r["gradient"], []).append(r)
    rows = [(key, both) for key, both in pairs.items() if set(both) == {"single", "eot"}]
    if not rows:
        return []
    mc = any(r.get("accuracy_mc") is not None for _, both in rows for r in both["single"])

    def mean(records, metric):
        values = [r[metric] for r in records if r.get(metric) is not None]
        return None if not values else sum(values) / len(values)

    def cell_text(both, metric):
        single, eot = mean(both["single"], metric), mean(both["eot"], metric)
        if single is None or eot is None:
            return "-"
        return f"{100 * single:.1f} / {100 * eot:.1f} ({100 * (eot - single):+.1f})"

    lines = ["#### EOT against the single-sample attack", "",
             "Accuracy (%) under the plain attack / under the same attack with EOT gradients (difference in "
             "points); a gain that vanishes under EOT came from noisy gradients, not robustness.", "",
             "| cell | attack | accuracy (S) single / eot |" + (" accuracy (M) single / eot |" if mc else ""),
             "|---|---|---:|" + ("---:|" if mc else "")]
    for (cell, attack, eps, iterations, targets, source, labels), both in rows:
        name = " ".join([attack] + ([] if eps is None else [f"eps {eps:g}"])
                        + ([] if iterations is None else [f"{iterations} iterations"])
                        + ([] if targets is None else [f"targets {targets}"])
                        + ([] if source is None else [f"from {source}"])
                        + ([] if labels is None else [f"{labels} labels"]))
        lines.append(f"| {cell} | {name} | {cell_text(both, 'accuracy')} |"
                     + (f" {cell_text(both, 'accuracy_mc')} |" if mc else ""))
    return lines + [""]


KIND = Attacks()
