"""Training fidelity: did each model behind the published results reach the paper's clean accuracy?

A robustness verdict means little on a model that trained far below the paper's clean
accuracy. This module reads the run reports behind the results page (``report.json``
of every run under ``results/``) and sets each model's clean accuracy, as the run
measured it, beside the paper's clean accuracy, read from the paper values of the
run's own tables (never typed here), with the training that produced it: data,
epochs, adversarial training, the last epoch's training accuracy and the time per
epoch. A model used by several runs (the same store key) is one row naming every run.

The verdict is the claims' gate (:func:`edgebnn.recipes.claims.gate`): a model more
than :data:`~edgebnn.recipes.claims.UNDERTRAINED_POINTS` below the paper's clean
accuracy, or near chance, is under-trained, and the claims resting on it are not
evaluated. No TensorFlow: the page is made from the reports alone.

:func:`rows` builds the table, :func:`to_markdown` the page, :func:`page` both.
"""

import tomllib
from pathlib import Path

from edgebnn import data as data_lib
from edgebnn import recipes
from edgebnn.recipes import claims
from edgebnn.recipes.config import TableSpec, flatten


def _clean(records, cell):
    """Mean clean accuracy (fraction) of ``cell`` over its repeats and how many repeats, or ``(None, 0)``."""
    values = [float(r["accuracy"]) for r in records if r.get("cell") == cell and r.get("evaluation") == "clean"
              and r.get("accuracy") is not None]
    return (sum(values) / len(values), len(values)) if values else (None, 0)


def _training(cell):
    """What the report says of a cell's training: epochs, last training accuracy (%), seconds per epoch."""
    train = cell.get("train") or {}
    config = cell["config"]["train"]
    accuracy = (train.get("history") or {}).get("accuracy") or []
    ran, seconds = train.get("epochs_run_last"), train.get("seconds_last")
    adversarial = config.get("adversarial")
    return {
        "epochs": config["epochs"],
        "adversarial": None if adversarial is None else
        f"{adversarial['method']} from epoch {adversarial.get('start_epoch', 0)}",
        "train_accuracy": round(100.0 * accuracy[-1], 1) if accuracy else None,
        "seconds_per_epoch": round(seconds / ran, 1) if ran and seconds else None,
    }


def verdict(row, *, chance):
    """``"ok"``, ``"under-trained"`` (the claims' gate) or ``"no paper value"`` of a row's clean accuracies (%)."""
    gated = claims.gate([row["cell"]], [{"cell": row["cell"], "evaluation": "clean", "accuracy": row["ours"] / 100}],
                        paper_clean=None if row["paper_value"] is None else {row["cell"]: row["paper_value"] / 100},
                        chance=chance)
    if gated is not None:
        return "under-trained"
    return "no paper value" if row["paper_value"] is None else "ok"


def rows(reports, *, root=None):
    """One row per model of the reports: ours vs the paper's clean accuracy and the training behind it.

    Args:
        reports: ``[(run folder, report dict)]``, e.g. :func:`edgebnn.recipes.results.find_reports`'s.
        root: folder the run folders are shown relative to (default: as given).

    Returns:
        A list of JSON-able dicts, in report order; a model (store key) used by several
        runs is one row whose ``runs`` names them all.
    """
    by_key = {}
    for run_dir, report in reports:
        study = report["study"]
        tables = [TableSpec.model_validate(t) for t in study["tables"]]
        first = {c["name"]: c for c in report["cells"] if c["repeat"] == 0}
        configs = {name: flatten(c["config"]) for name, c in first.items()}
        paper_clean = claims.paper_clean(tables, configs)
        run = str(run_dir.relative_to(root)) if root is not None else str(run_dir)
        for name, cell in first.items():
            ours, repeats = _clean(report["records"], name)
            if ours is None:
                continue
            key = cell.get("model_key") or f"{run}:{name}"
            if key in by_key:
                by_key[key]["runs"].append(run)
                if by_key[key]["paper_value"] is None and name in paper_clean:
                    by_key[key]["paper_value"] = round(100 * paper_clean[name], 2)
                continue
            paper = paper_clean.get(name)
            data = cell["config"]["data"]
            split = data.get("split")
            by_key[key] = {
                "paper": report.get("paper") or "-", "recipe": report["recipe"], "cell": name,
                "key": key, "runs": [run], "dataset": data["dataset"],
                "train_images": split["train"] if split else data.get("train_limit"),
                **_training(cell), "repeats": repeats, "ours": round(100 * ours, 2),
                "paper_value": None if paper is None else round(100 * paper, 2),
                "chance": 100.0 / data_lib.get_info(data["dataset"]).num_classes,
            }
    table = list(by_key.values())
    for row in table:
        row["gap"] = None if row["paper_value"] is None else round(row["ours"] - row["paper_value"], 2)
        row["verdict"] = verdict(row, chance=row["chance"] / 100)
    return table


def _number(value, spec):
    return "-" if value is None else format(value, spec)


def to_markdown(table, *, command, missing=()):
    """The docs page of :func:`rows`' ``table``, with the command that made it.

    Args:
        table: :func:`rows`' list.
        command: the command that regenerates the page.
        missing: paper recipes with no report among the runs (listed as not run).
    """
    limit = 100 * claims.UNDERTRAINED_POINTS
    lines = [
        "# Training fidelity",
        "",
        "Clean accuracy of every model behind the results page, as its run measured it, beside the paper's "
        "clean accuracy (the paper values of the run's own tables), with the training that produced it. "
        f"A model more than {limit:g} points below the paper's, or within "
        f"{100 * claims.CHANCE_POINTS:g} points of chance, is under-trained, and the claims resting on it "
        "are not evaluated (the results page's gate). Generated from the run reports by",
        "",
        f"    {command}",
        "",
        "| paper | recipe / cell | data | train images | epochs | adversarial training | train acc (%) | ours (%) | paper (%) | gap | "
        "s / epoch | verdict | runs |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in table:
        ours = f"{r['ours']:.1f}" + (f" ({r['repeats']} runs)" if r["repeats"] > 1 else "")
        runs = ", ".join(f"`{run}`" for run in r["runs"])
        lines.append(
            f"| {r['paper']} | `{r['recipe']}` / `{r['cell']}` | {r['dataset']} | "
            f"{_number(r['train_images'], ',') if r['train_images'] else 'all'} | {r['epochs']} | "
            f"{r['adversarial'] or '-'} | {_number(r['train_accuracy'], '.1f')} | {ours} | "
            f"{_number(r['paper_value'], '.1f')} | {_number(r['gap'], '+.1f')} | "
            f"{_number(r['seconds_per_epoch'], 'g')} | {r['verdict']} | {runs} |")
    if missing:
        lines += ["", "Paper recipes with no published run yet: " + ", ".join(f"`{m}`" for m in missing) + "."]
    lines += ["", "Clean accuracy is the run's clean evaluation of its whole evaluated test part (one stochastic "
              "pass for models that sample at inference, as the papers' single-pass columns), the mean over "
              "repeats when the run has several; train acc is the last epoch's training accuracy as Keras logs "
              "it (training mode, on the batches as trained: with adversarial training, clean and adversarial "
              "examples together; \"-\" when the run loaded its model from the store), which tells a model that "
              "under-fits (low) from one that fits its training images but generalizes worse (high); "
              "s / epoch is the wall time of the training that ran, on this project's shared 2-core machine."]
    return "\n".join(lines) + "\n"


def missing_recipes(reports):
    """Paper recipes (a ``paper`` key) none of whose runs is among ``reports``; read as TOML, not validated."""
    ran = {report["recipe"] for _, report in reports}
    missing = []
    for name, path in sorted(recipes.available().items()):
        table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        if table.get("paper") is not None and table.get("name") not in ran:
            missing.append(name)
    return missing


def page(reports, *, command, root=None):
    """The training-fidelity page of ``reports`` (:func:`rows`, :func:`to_markdown`, :func:`missing_recipes`)."""
    return to_markdown(rows(reports, root=root), command=command, missing=missing_recipes(reports))


__all__ = ["missing_recipes", "page", "rows", "to_markdown", "verdict"]
