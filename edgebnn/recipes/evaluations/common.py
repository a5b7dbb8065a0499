"""What every evaluation kind gets from the runner, and the helpers they share.

Randomized models (stochastic binarization, dropout kept on at inference) are
attacked with expectation over their randomness (EOT, Athalye et al. 2018) unless the
recipe says otherwise (an entry's ``gradient = "single"`` asks for the plain attack, one
sample per gradient, as CleverHans runs it), and predicted with one stochastic pass ("S"); with
``evaluation.mc_passes = K`` also with the K-pass Monte-Carlo vote ("M", Guan et al.).
"""

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgebnn.recipes import interrupts
from edgebnn.recipes.schema import RecipeError

#: EOT passes per gradient for randomized models when the recipe sets none: enough to
#: average out per-pass sampling noise in the gradient sign at a tenth of the cost of
#: Athalye et al.'s larger budgets; recipes raise it with ``evaluation.eot_samples``.
DEFAULT_EOT_SAMPLES = 10
#: How an attack entry computes gradients on a randomized model: averaged over samples
#: of its randomness (``"eot"``), or from one sample per step (``"single"``, the plain attack).
GRADIENTS = ("eot", "single")


def default_eot_samples(randomized):
    """EOT passes per gradient when the recipe sets none: :data:`DEFAULT_EOT_SAMPLES` for a
    randomized model, 1 for a deterministic one."""
    return DEFAULT_EOT_SAMPLES if randomized else 1


def eot_samples(evaluation, randomized):
    """EOT passes for attacking a model: ``evaluation.eot_samples`` if the recipe sets it, else
    :func:`default_eot_samples`."""
    if evaluation.eot_samples is not None:
        return evaluation.eot_samples
    return default_eot_samples(randomized)


def check_gradient(spec_gradient, *, options, fields_set, takes_eot, where):
    """Validate an entry's ``gradient`` key against its options and its attack."""
    if spec_gradient == "single" and "eot_samples" in options:
        raise RecipeError(f"`{where}.gradient`: \"single\" is one sample per gradient; remove `eot_samples`.")
    if "gradient" in fields_set and not takes_eot:
        raise RecipeError(f"`{where}.gradient`: this attack takes no gradient samples (no `eot_samples`).")


def eot_option(ctx, options, *, gradient, randomized, takes_eot):
    """``options`` with ``eot_samples`` set: 1 for ``gradient="single"``, else the recipe's / default EOT."""
    options = dict(options)
    if takes_eot:
        options.setdefault("eot_samples", 1 if gradient == "single" else ctx.eot_samples(randomized))
    return options


@dataclass
class EvalContext:
    """One cell's trained model, its evaluation images and the study around it.

    Attributes:
        cell: the cell's name.
        model: the cell's trained Keras model (logits).
        randomized: whether its inference samples (see ``edgebnn.introspect.random_inference_layers``).
        model_of: ``cell name -> (model, randomized)`` of another cell of the same repeat
            (trained on demand), for transfer attacks.
        x_eval, y_eval: the evaluated test images (``evaluation.limit``).
        x_pool, y_pool: test images apart from the evaluated ones (held-out sets of the
            substitute attack, the detector's fitting set).
        x_test, y_test: the whole test part (clean accuracy).
        num_classes: classes of the dataset.
        evaluation: the cell's ``[evaluation]`` section.
        progress: ``(label, done, total) -> None`` for long loops.
        batches: the finished batches of the result being computed
            (:class:`edgebnn.recipes.store.Batches`), kept across interruptions; ``None``: none kept.
    """

    cell: str
    model: Any
    randomized: bool
    model_of: Callable
    x_eval: np.ndarray
    y_eval: np.ndarray
    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    evaluation: Any
    progress: Callable
    batches: Any = None
    #: ``options -> (model, flatbuffer)`` of :meth:`converted`: lives and dies with this context.
    _converted: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def eot_samples(self, randomized):
        """EOT passes for attacking a model (:func:`eot_samples` of the cell's evaluation settings)."""
        return eot_samples(self.evaluation, randomized)

    def converted(self, **options):
        """The cell's model as a TFLite flatbuffer, ``edgebnn.deploy.convert.convert(model, **options)``,
        converted the first time the cell's evaluations or deployment ask for it with these options
        (options left out are their defaults: ``target="lce"`` is ``target="lce", weights="exact"``).

        The conversion is kept with the model object it was made from: a context whose ``model``
        is replaced converts the new one.
        """
        from edgebnn.deploy.convert import convert  # noqa: PLC0415 (TensorFlow, LCE converter)

        arguments = inspect.signature(convert).bind(self.model, **options)
        arguments.apply_defaults()
        key = tuple(sorted((name, value) for name, value in arguments.arguments.items() if name != "model"))
        model, flatbuffer = self._converted.get(key, (None, None))
        if model is not self.model:
            flatbuffer = convert(self.model, **options)
            self._converted[key] = (self.model, flatbuffer)
        return flatbuffer


def predict(ctx, model, x, label=None):
    """Arg-max predictions of one forward pass (one stochastic pass for a randomized model)."""
    from edgebnn.evaluation import predict_labels  # noqa: PLC0415 (TensorFlow)

    batch = ctx.evaluation.batch_size
    out = []
    for i in range(0, len(x), batch):
        out.append(predict_labels(model, x[i : i + batch], batch_size=batch))
        if label:
            ctx.progress(label, min(i + batch, len(x)), len(x))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


#: Top-5 accuracy is reported for datasets with more classes than this (CIFAR-100, ImageNet).
TOP5_MIN_CLASSES = 10


def top5_metrics(recipe):
    """``("top5_accuracy",)`` when :func:`top5` reports it for ``recipe``'s data: a built-in dataset of more
    than :data:`TOP5_MIN_CLASSES` classes, or data whose classes are counted only when it loads (your
    ``.npz`` file, a tensorflow-datasets name); else ``()``."""
    from edgebnn import data  # noqa: PLC0415 (NumPy only)

    info = data.DATASETS.get(recipe.data.dataset) if recipe.data.files is None else None
    return ("top5_accuracy",) if info is None or info.num_classes > TOP5_MIN_CLASSES else ()


def top5(ctx, model, x, y):
    """``{"top5_accuracy": ...}`` for datasets of more than :data:`TOP5_MIN_CLASSES` classes, else ``{}``."""
    from edgebnn.evaluation import top_k_accuracy  # noqa: PLC0415 (TensorFlow)

    if ctx.num_classes <= TOP5_MIN_CLASSES:
        return {}
    return {"top5_accuracy": top_k_accuracy(model, x, y, k=5, batch_size=ctx.evaluation.batch_size)}


#: The metrics of :func:`monte_carlo`.
MC_METRICS = ("accuracy_mc", "uncertainty_mean", "uncertainty_std")


def mc_metrics(recipe):
    """:data:`MC_METRICS` when ``recipe`` asks for the Monte-Carlo vote (``evaluation.mc_passes``), else ``()``."""
    return MC_METRICS if recipe.evaluation.mc_passes else ()


def monte_carlo(ctx, model, x, y, label):
    """``({accuracy_mc, uncertainty_mean, uncertainty_std}, uncertainty array)`` of the K-pass vote."""
    from edgebnn.evaluation import predict_mc  # noqa: PLC0415 (TensorFlow)

    batch, passes = ctx.evaluation.batch_size, ctx.evaluation.mc_passes
    classes, uncertainty = [], []
    for i in range(0, len(x), batch):
        result = predict_mc(model, x[i : i + batch], samples=passes, batch_size=batch)
        classes.append(result.classes)
        uncertainty.append(result.uncertainty)
        ctx.progress(f"{label} ({passes} MC passes)", min(i + batch, len(x)), len(x))
    classes, uncertainty = np.concatenate(classes), np.concatenate(uncertainty)
    metrics = {
        "accuracy_mc": float(np.mean(classes == y)),
        "uncertainty_mean": float(uncertainty.mean()),
        "uncertainty_std": float(uncertainty.std()),
    }
    return metrics, uncertainty


def craft(ctx, model, x, y, *, attack, eps, label, **options):
    """Adversarial examples of ``x`` batch by batch (with progress), via :func:`edgebnn.evaluation.craft`.

    ``attack`` is a registry name or an attack function (e.g. a CleverHans wrapper).
    """
    from edgebnn import attacks  # noqa: PLC0415 (TensorFlow)
    from edgebnn.evaluation import craft as craft_batches  # noqa: PLC0415

    batch = ctx.evaluation.batch_size
    fn = attacks.get(attack) if isinstance(attack, str) else attack
    if attacks.eager_only(fn):
        # One call on all of x, with the entry's options as they are: a black-box attack's own
        # options (the substitute's training ``batch_size``) must not meet the evaluation batch.
        ctx.progress(label, 0, len(x))
        budget = {} if eps is None else {"eps": eps}
        x_adv = np.asarray(fn(model, x, y=y, **budget, **options), np.float32)
        ctx.progress(label, len(x), len(x))
        return x_adv
    out = kept_batches(ctx, x, y, lambda xb, yb, seed: craft_batches(
        model, xb, yb, attack=attack, eps=eps, batch_size=batch, seed=seed, **options), label=label)
    return np.concatenate(out) if out else np.zeros_like(x)


def kept_batches(ctx, x, y, compute, *, label):
    """``[compute(x_batch, y_batch, seed), ...]`` over ``x`` (and ``y``, or ``None``) in batches of the
    evaluation's ``batch_size``, with progress under ``label``: one call of the result's
    :attr:`EvalContext.batches`.

    Every batch's array is stored as it finishes and computed under the seed of its position
    (``None`` when the context keeps no batches), so that a run stopped in the middle and started
    again computes only the batches left, and the same numbers; a pending interrupt stops the
    loop between two batches.
    """
    batch = ctx.evaluation.batch_size
    stored = ctx.batches
    call = None if stored is None else stored.next_call()
    out = []
    for index, i in enumerate(range(0, len(x), batch)):
        interrupts.check()
        done = None if stored is None else stored.load(call, index)
        if done is None:
            yb = None if y is None else y[i : i + batch]
            done = compute(x[i : i + batch], yb, None if stored is None else stored.seed(call, index))
            if stored is not None:
                stored.save(call, index, done)
        out.append(done)
        ctx.progress(label, min(i + batch, len(x)), len(x))
    return out
