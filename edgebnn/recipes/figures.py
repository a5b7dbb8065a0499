"""Study figures drawn with matplotlib, one drawer per ``kind``, each with the data behind it.

- ``accuracy_vs_eps``: a metric (default accuracy) against eps for one attack, one
  curve per value of the ``series`` keys (default: the cell), eps 0 being the clean
  result (Panda et al. Fig. 4 / 5); error bars are the std over repeats. With
  ``x = "iterations"`` the x axis is the attack's iteration count instead (0 being the
  clean result; Galloway et al. Fig. 2, CW-L2 accuracy against iterations); ``targets``
  (``"all"`` or ``"random"``) selects targeted results, which are left out by default.
- ``uncertainty_histogram``: Guan's uncertainty of one cell's clean and adversarial
  inputs (Guan et al. Fig. 2); needs ``evaluation.mc_passes``. Options: ``attacks``
  (names to show), ``bins``, ``upper`` (the last edge, default the largest value; Guan
  uses 100 bins on [0, 0.035]; larger values count in the last bin).

Every figure is written as ``figures/NAME.png`` and the plotted numbers as
``figures/NAME.json``.
"""

import numpy as np

from edgebnn import _io
from edgebnn.recipes.evaluations import KINDS
from edgebnn.recipes.records import lookup
from edgebnn.recipes.schema import RecipeError

_OPTIONS = {
    "accuracy_vs_eps": {"attack": str, "metric": str, "series": list, "where": dict, "x": str, "targets": str},
    "uncertainty_histogram": {"cell": str, "attacks": list, "bins": int, "upper": float},
}
_REQUIRED = {"accuracy_vs_eps": ("attack",), "uncertainty_histogram": ("cell",)}
#: What an accuracy_vs_eps figure can put on its x axis (a label of the attack results).
X_AXES = ("eps", "iterations")
#: Targeted modes an accuracy_vs_eps figure can select (see the ``[[attacks]]`` ``targets`` key).
TARGETS = ("random", "all")
#: Histogram bins when the recipe sets none.
DEFAULT_BINS = 30


def check(spec, *, names):
    """Validate a figure entry: known kind, its options and their types, a known cell."""
    if spec.kind not in _OPTIONS:
        raise RecipeError(f"`kind` must be one of {sorted(_OPTIONS)}, got {spec.kind!r}")
    if not spec.name.replace("_", "").replace("-", "").isalnum():
        raise RecipeError(f"`name` must be letters, digits, _ or -, got {spec.name!r}")
    allowed = _OPTIONS[spec.kind]
    for key, value in spec.options.items():
        if key not in allowed:
            raise RecipeError(f"unknown key `{key}` for a {spec.kind} figure; valid keys: {sorted(allowed)}")
        if not isinstance(value, allowed[key]) or isinstance(value, bool):
            raise RecipeError(f"`{key}` must be a {allowed[key].__name__}, got {value!r}")
    for key in _REQUIRED[spec.kind]:
        if key not in spec.options:
            raise RecipeError(f"a {spec.kind} figure needs `{key}`")
    if spec.options.get("x", "eps") not in X_AXES:
        raise RecipeError(f"`x` must be one of {list(X_AXES)}, got {spec.options['x']!r}")
    if spec.options.get("targets", "random") not in TARGETS:
        raise RecipeError(f"`targets` must be one of {list(TARGETS)}, got {spec.options['targets']!r}")
    if spec.kind == "uncertainty_histogram" and spec.options["cell"] not in names:
        raise RecipeError(f"`cell`: no cell named {spec.options['cell']!r}; cells: {sorted(names)}")


def accuracy_vs_eps_data(spec, records, configs):
    """``{series label: {X: [...], "mean": [...], "std": [...]}}`` of an accuracy_vs_eps figure
    (``X`` is its ``x`` option, ``"eps"`` by default)."""
    attack, metric = spec.options["attack"], spec.options.get("metric", "accuracy")
    x_key, targets = spec.options.get("x", "eps"), spec.options.get("targets")
    series_keys, where = spec.options.get("series", ["cell"]), spec.options.get("where", {})
    points = {}
    for r in records:
        if r.get(metric) is None:
            continue
        x = KINDS[r["evaluation"]].curve_x(r, attack=attack, x=x_key, targets=targets)
        if x is None or not all(lookup(r, k, configs) == v for k, v in where.items()):
            continue
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={lookup(r, k, configs)}" for k in series_keys)
        points.setdefault(label, {}).setdefault(x, []).append(float(r[metric]))
    data = {}
    for label, by_x in points.items():
        xs = sorted(by_x)
        data[label] = {x_key: xs, "mean": [float(np.mean(by_x[x])) for x in xs],
                       "std": [float(np.std(by_x[x])) for x in xs]}
    return data


def _draw_accuracy_vs_eps(spec, records, configs, arrays):
    import matplotlib.pyplot as plt  # noqa: PLC0415

    data = accuracy_vs_eps_data(spec, records, configs)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    x_key = spec.options.get("x", "eps")
    for label, curve in data.items():
        ax.errorbar(curve[x_key], np.array(curve["mean"]) * 100, yerr=np.array(curve["std"]) * 100,
                    marker="o", capsize=3, label=label)
    if x_key == "iterations":
        ax.set_xscale("symlog", linthresh=1)  # 0 (clean) to hundreds of iterations
    ax.set_xlabel("eps (L-inf)" if x_key == "eps" else "attack iterations")
    ax.set_ylabel(f"{spec.options.get('metric', 'accuracy')} (%)")
    ax.set_title(spec.title or f"{spec.options['attack']}: accuracy against eps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig, data


def _draw_uncertainty_histogram(spec, records, configs, arrays):
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cell, wanted = spec.options["cell"], spec.options.get("attacks")
    bins = spec.options.get("bins", DEFAULT_BINS)
    sets = {}
    for r in records:
        if r["cell"] != cell or r["repeat"] != 0:
            continue
        name = KINDS[r["evaluation"]].histogram_set(r, attacks=wanted)
        values = None if name is None else arrays(r, "uncertainty")
        if values is None:
            continue
        sets[name] = np.asarray(values, np.float64)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    top = spec.options.get("upper") or max([v.max() for v in sets.values()] + [1e-12])
    edges = np.linspace(0.0, top, bins + 1)
    data = {}
    for name, values in sets.items():
        shown = np.minimum(values, top)
        counts, _ = np.histogram(shown, bins=edges)
        ax.hist(shown, bins=edges, alpha=0.5, label=name)
        data[name] = {"counts": counts.tolist(), "mean": float(values.mean()), "std": float(values.std())}
    ax.set_xlabel("uncertainty (Guan Eq. 12)")
    ax.set_ylabel("inputs")
    ax.set_title(spec.title or f"uncertainty of {cell}")
    ax.legend(fontsize=7)
    return fig, {"edges": edges.tolist(), "sets": data}


DRAWERS = {"accuracy_vs_eps": _draw_accuracy_vs_eps, "uncertainty_histogram": _draw_uncertainty_histogram}


def draw(spec, records, configs, arrays, out_dir):
    """Draw one figure into ``out_dir``; return ``{"name", "path", "title", "caption", "data"}``."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, data = DRAWERS[spec.kind](spec, records, configs, arrays)
    path = out_dir / f"{spec.name}.png"
    try:
        fig.tight_layout()
        with _io.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    _io.write_json(out_dir / f"{spec.name}.json", {"kind": spec.kind, "options": spec.options, "data": data})
    return {"name": spec.name, "path": f"{out_dir.name}/{spec.name}.png", "title": spec.title or spec.name,
            "kind": spec.kind, "data": data}
