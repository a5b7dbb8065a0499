"""The reproduction budget table: every offline paper recipe at its paper budget, serial and on N workers.

For each recipe of :data:`edgebnn.recipes.papers.CATALOG` whose data is available
offline, the study is planned at the paper's budget (:mod:`edgebnn.recipes.plan`: every
cell's training and evaluation work) and costed in seconds, one model or result at a time:

- **measured** where a complete report under ``--runs`` computed the same store key (a
  model: the report's training seconds, when it trained the model in one go; a result: its
  seconds in the run's own store or one of the ``--cache`` stores);
- **estimated** otherwise: its work (forward/backward passes, :func:`training_passes` for
  training) times the forward FLOP of one image through the cell's model times a rate in
  seconds per (pass x FLOP), calibrated per model family and phase (training, or one
  evaluation kind) on every measured model and result of every report found. Each report is
  planned as it ran: its recipe with the ``--budget`` and ``--set`` options of its command
  line (a run of a subset of the grid calibrates that subset, never the whole recipe). A
  family no report measured takes the rate of the family ``--like`` names, else the rate
  pooled over every family; its rows say so.

Every report is also estimated leave-one-out (rates calibrated on the other reports only),
beside its measured seconds: how far an estimate can be off.

``serial`` is the sum of the costs. ``--workers N`` on this machine puts the cells on N
processes longest first (each cell on the least loaded worker) and multiplies the makespan
by ``--slowdown``: how much slower a cell runs in one of N processes sharing the cores than
alone (measured by comparing the ``computed_seconds`` of a serial and a ``--workers N`` run
of the same study). ``N nodes`` is the same schedule on N machines like this one, each cell
at its serial speed. Neither counts process start-up, data loading or (for a cluster)
shipping store entries; a cell whose transfer attack needs another cell's model is
scheduled as if independent.

Usage (from the repository's root; paths outside it are printed by their file name):
    EDGEBNN_DATA_DIR=/path/to/data PYTHONPATH=. python scripts/reproduction_budget.py \\
        --runs results --cache runs/cache --walltimes walltimes.txt --slowdown 1.51 --out docs/reproduction.md
"""

import argparse
import dataclasses
import heapq
import json
import os
import re
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import edgebnn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.peak import forward_flop  # noqa: E402
from edgebnn import recipes  # noqa: E402
from edgebnn.recipes import config, papers, steps  # noqa: E402
from edgebnn.recipes import plan as plan_lib  # noqa: E402
from edgebnn.recipes.assemble import without_timings  # noqa: E402
from edgebnn.recipes.console import Console  # noqa: E402

#: The repository's root: paths under it are printed relative to it.
REPO = Path(__file__).resolve().parents[1]
#: Phase of a cell's training in the rate table (its evaluations use their kind's name).
TRAIN = "train"
#: Worker counts of the table's columns.
DEFAULT_WORKERS = (2, 4, 8)
#: A line of a wall-time log: ``guan/table1 exit 0 in 766 s`` or
#: ``galloway/table1 --set repeats=1 exit 0 in 2010 s (11:31, ...)``.
_WALLTIME = re.compile(r"^(\S+)(.*?)\s+exit (\d+) in (\d+) s")
#: Exit statuses of a run stopped by a signal (SIGINT, SIGKILL, SIGTERM): its finished work is in the store
#: and the next run of the same command resumes from it.
_STOPPED = {130, 137, 143}


# --- pure core ---------------------------------------------------------------------------


def makespan(costs, workers):
    """Seconds until the last of ``costs`` finishes on ``workers`` workers, longest first, each on the
    least loaded worker (Graham's LPT rule)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    loads = [0.0] * workers
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(loads, loads[0] + cost)
    return max(loads)


def training_phase(train):
    """The rate table's phase of training under the ``[train]`` section ``train``: ``train``, or
    ``train (METHOD)`` with an adversary (its epochs cost more than their passes say)."""
    return TRAIN if train.adversarial is None else f"{TRAIN} ({train.adversarial.method})"


def _training(phase):
    return phase.split(" ", 1)[0] == TRAIN


def rates(samples):
    """``{(family, phase): seconds per (pass x FLOP)}`` pooled over ``samples``
    (``(family, phase, work x FLOP, seconds)``), plus ``(family, None)`` over a family's
    evaluation phases and ``(None, phase)`` / ``(None, None)`` over every family."""
    sums = {}
    for family, phase, work, seconds in samples:
        if work <= 0:
            continue
        keys = [(family, phase), (None, phase)]
        if not _training(phase):
            keys += [(family, None), (None, None)]
        for key in keys:
            w, s = sums.get(key, (0.0, 0.0))
            sums[key] = (w + work, s + seconds)
    return {key: s / w for key, (w, s) in sums.items()}


def rate_of(table, family, phase, *, like=None):
    """``(rate, whether it is the family's own)``: the most specific rate ``table`` has for ``family``
    (then for the family ``like`` maps it to: ``{family: measured family of the same layer types}``):
    the phase's, an evaluation's pooled over the family's evaluation kinds, adversarial training's
    the family's plain training rate; else the phase's rate pooled over every family."""
    names = [n for n in (family, (like or {}).get(family)) if n is not None]
    if _training(phase):
        order = [(n, phase) for n in names] + [(n, TRAIN) for n in names] + [(None, phase), (None, TRAIN)]
    else:
        order = [(n, p) for n in names for p in (phase, None)] + [(None, phase), (None, None)]
    for key in order:
        if key in table:
            return table[key], key[0] == family
    raise ValueError(f"no measured rate for phase {phase!r} of any family")


def clock(seconds):
    """``1 h 05 min``, ``12 min``, ``45 s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


# --- pure parsing ------------------------------------------------------------------------


def invocation(args):
    """``(recipe, budget, overrides)`` of a run's arguments after ``run`` (``shlex`` words or one string):
    the recipe, its ``--budget`` (``None``: the recipe's defaults) and its ``--set`` options in order."""
    words = shlex.split(args) if isinstance(args, str) else list(args)
    if not words:
        raise ValueError("invocation: no recipe in an empty command")
    recipe, budget, overrides, i = words[0], None, [], 1
    while i < len(words):
        word = words[i]
        for option in ("--set", "--budget"):
            if word == option and i + 1 < len(words):
                value, i = words[i + 1], i + 1
            elif word.startswith(option + "="):
                value = word[len(option) + 1:]
            else:
                continue
            if option == "--set":
                overrides.append(value)
            else:
                budget = value
        i += 1
    return recipe, budget, tuple(overrides)


def walltimes(path):
    """``{(recipe, budget, overrides): seconds}`` of the first successful run of each invocation in a
    wall-time log (later runs of it find its models and results in their cache), summed with the runs of
    the same invocation before it that were stopped by a signal (a run resumed over several sittings);
    a line whose command has ``--set`` or ``--budget`` options is a run of that subset, not of the whole
    recipe."""
    found, stopped = {}, {}
    if path is None:
        return found
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = _WALLTIME.match(line.strip())
        if not match:
            continue
        key = invocation([match.group(1), *shlex.split(match.group(2))])
        status, seconds = int(match.group(3)), int(match.group(4))
        if key in found:
            continue
        if status == 0:
            found[key] = stopped.pop(key, 0) + seconds
        elif status in _STOPPED:
            stopped[key] = stopped.get(key, 0) + seconds
    return found


def training_passes(train, n_train):
    """Forward/backward passes of training under the ``[train]`` section ``train`` on ``n_train`` images:
    one per image and epoch; on each adversarial epoch (from ``start_epoch``) also the adversary's steps on
    the images it attacks (all, when augmenting, else its fraction), and the adversaries themselves when
    they are trained on beside their images (augment)."""
    passes = float(train.epochs * n_train)
    adv = train.adversarial
    if adv is None:
        return passes
    steps = adv.steps if adv.method == "pgd" else 1
    share, augment = (1.0, 1.0) if adv.mode == "augment" else (adv.fraction, 0.0)
    return passes + (train.epochs - adv.start_epoch) * n_train * (share * steps + augment)


# --- reading studies, runs and stores ----------------------------------------------------


class Planned:
    """A recipe as one run ran it: at its paper budget, or a named smaller ``budget``, with the ``--set``
    ``overrides``, and each cell's recipe replaced by ``configs[cell id]`` (a dumped recipe) when given;
    its study, plans, and each model's forward FLOP per image.

    Attributes:
        name: the recipe (``galloway/table1``).
        study, plans: the study and ``{cell id: CellPlan}``.
        costs: ``{cell id: [(phase, work x FLOP, store key)]}``: the cell's training (keyed by its
            model), then its results; a model or result another cell of the study already has is
            left out of the later cell (the runner computes it once).
    """

    def __init__(self, name, *, budget=None, overrides=(), configs=None):
        self.name = name
        self.study = config.load(recipes.find(name), budget=budget, overrides=list(overrides))
        if configs is not None:  # each cell's recipe as a report recorded it (the recipe file may have changed since)
            if {c.id for c in self.study.cells} != set(configs):
                raise ValueError(f"{name}: the recorded cells differ from those the recipe file plans")
            model = config.recipe_model()
            cells = [dataclasses.replace(c, recipe=model.model_validate(configs[c.id])) for c in self.study.cells]
            self.study = dataclasses.replace(self.study, cells=cells)
        session = steps.Session(self.study, Path("."), Console(sys.stderr))  # plans only: writes nothing
        self.plans = plan_lib.plan(self.study, session.sizes)
        flop, seen, self.costs, self.families = {}, set(), {}, {}
        for cell in self.study.cells:
            self.families[cell.id] = cell.recipe.model.family
            plan = self.plans[cell.id]
            if plan.model_key not in flop:
                flop[plan.model_key] = _forward_flop(cell.recipe, session.data_for(cell.recipe))
            n_train = session.sizes(cell.recipe)[0]
            work = flop[plan.model_key]
            phases = [(training_phase(cell.recipe.train),
                       training_passes(cell.recipe.train, n_train) * work if plan.train_work else 0.0, plan.model_key)]
            phases += [(u.kind, plan.unit_work[u.key] * work, u.key) for u in plan.units]
            self.costs[cell.id] = [p for p in phases if p[2] not in seen]
            seen.update(p[2] for p in phases)

    def family(self, cell_id):
        return self.families[cell_id]


def _forward_flop(recipe, data):
    """Forward FLOP of one image through ``recipe``'s model (dense and convolution layers), built in a
    graph of its own: its variables get shapes but no memory (FCN1 holds 118M weights)."""
    import tensorflow as tf  # noqa: PLC0415

    with tf.Graph().as_default():
        return forward_flop(steps.build_model(recipe, data))


class Report:
    """A complete paper-recipe report found under ``--runs``, planned as its command ran it.

    Its cells are planned from the recipes it recorded, under the store keys this version of the code
    gives them (what a rerun would compute); a report written by an older version stored its results
    under its own keys, paired with the planned ones cell by cell, in order (:func:`_recorded_keys`).

    Attributes:
        folder: its run folder; ``invocation``: ``(recipe, budget, overrides)`` of its command.
        planned: its :class:`Planned` study.
        seconds: ``{planned store key: seconds}`` of what it measured: each model it trained in one
            go (its report's ``seconds_last``) and each result found in its own store or a cache.
        skipped: how many of its models and results have no measured seconds.
        wall: its recorded wall time (:func:`walltimes`), when the log has its command.
    """

    def __init__(self, folder, report, caches):
        self.folder = Path(folder)
        self.invocation = invocation(report["command"].split(" run ", 1)[1])
        name, budget, overrides = self.invocation
        cells = {c["id"]: c for c in report["cells"]}
        self.planned = Planned(name, budget=budget, overrides=overrides,
                               configs={cell_id: c["config"] for cell_id, c in cells.items()})
        stores = [self.folder / "store", *map(Path, caches)]
        recorded = _recorded_keys(self.planned, report)
        self.seconds, self.skipped, self.wall = {}, 0, None
        for cell_id, phases in self.planned.costs.items():
            train = cells[cell_id].get("train") or {}
            for phase, _, key in phases:
                if _training(phase):  # a resumed training's seconds_last covers its last part only
                    whole = train.get("epochs_run_last") == train.get("epochs")
                    seconds = train.get("seconds_last") if whole else None
                else:
                    seconds = (_stored_result(stores, recorded.get(key)) or {}).get("seconds")
                if seconds is None:
                    self.skipped += 1
                else:
                    self.seconds[key] = float(seconds)

    def samples(self):
        """``{store key: (family, phase, work x FLOP, seconds)}`` of everything it measured."""
        return {key: (self.planned.family(cell_id), phase, work, self.seconds[key])
                for cell_id, phases in self.planned.costs.items()
                for phase, work, key in phases if key in self.seconds}


def _recorded_keys(planned, report):
    """``{planned result key: the key the report stored it under}``: per cell, the report's distinct result
    keys in order, paired with the planned units when their kinds agree (none of the cell's otherwise)."""
    recorded = {}
    for cell in planned.study.cells:
        keys = {}
        for record in report["records"]:
            if (record.get("cell"), record.get("repeat", 0)) == (cell.name, cell.repeat) and "key" in record:
                keys.setdefault(record["key"], record.get("evaluation"))
        units = planned.plans[cell.id].units
        if [u.kind for u in units] == list(keys.values()):
            recorded.update(zip((u.key for u in units), keys))
    return recorded


def _stored_result(stores, key):
    if key is None:
        return None
    for store in stores:
        path = store / "results" / f"{key}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def find_reports(folders, caches):
    """``[Report]`` of every complete paper-recipe ``report.json`` under ``folders`` with a command line
    (one whose cells the recipe file no longer has is skipped, saying so on stderr)."""
    found = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("report.json")):
            report = json.loads(path.read_text(encoding="utf-8"))
            if report.get("status") == "complete" and report.get("paper") and " run " in report.get("command", ""):
                try:
                    found.append(Report(path.parent, report, caches))
                except ValueError as e:
                    print(f"skipped {path}: {e}", file=sys.stderr)
    return found


def offline_recipes():
    """Every recipe of the catalog whose data needs no download, in catalog order (each once)."""
    names = []
    for items in papers.CATALOG.values():
        for item in items:
            names += [r for r in item.recipes if r not in names]
    return [n for n in names if config.load(recipes.find(n)).base.data.dataset not in papers.DOWNLOAD_ONLY]


# --- the table ---------------------------------------------------------------------------


def cost(planned, table, *, measured, like):
    """``(cell costs, counts, borrowed)`` of ``planned``: each cell's seconds (measured where
    ``measured`` (``{store key: seconds}``) has the key, else estimated from ``table``),
    ``counts`` of ``"measured"`` / ``"estimated"`` models and results, and ``{family: the family
    or pool whose rate it borrowed}``."""
    costs, counts, borrowed = {}, {"measured": 0, "estimated": 0}, {}
    for cell_id, phases in planned.costs.items():
        total = 0.0
        for phase, work, key in phases:
            if key in measured:
                total += measured[key]
                counts["measured"] += 1
                continue
            family = planned.family(cell_id)
            rate, own = rate_of(table, family, phase, like=like)
            if not own:
                borrowed[family] = like.get(family, "all measured families")
            total += rate * work
            counts["estimated"] += 1
        costs[cell_id] = total
    return costs, counts, borrowed


def rows(planned_list, reports, table, *, walls, workers, slowdown, like):
    """One dict per recipe: how its models and results were costed, which reports measured some,
    and the serial / parallel seconds."""
    measured = {key: s for report in reports for key, s in report.seconds.items()}
    out = []
    for planned in planned_list:
        costs, counts, borrowed = cost(planned, table, measured=measured, like=like)
        keys = {key for phases in planned.costs.values() for _, _, key in phases}
        sources = [r for r in reports if keys & set(r.seconds)]
        others = [r for r in reports if r.invocation[0] == planned.name and r not in sources]
        values = list(costs.values())
        out.append({
            "recipe": planned.name, "cells": len(values), "counts": counts, "borrowed": borrowed,
            "sources": sources, "other_runs": others, "serial": sum(values), "wall": walls.get((planned.name, None, ())),
            "epochs": sorted({cell.recipe.train.epochs for cell in planned.study.cells}),
            "workers": {n: makespan(values, n) * slowdown for n in workers if n <= 2},
            "nodes": {n: makespan(values, n) for n in workers},
        })
    return out


def checks(reports, *, like):
    """Per report: ``(measured seconds, leave-one-out estimate)`` of what it measured, the estimate's
    rates calibrated on every other report (a model or result two reports share is left out of both)."""
    out = []
    for report in reports:
        own = set(report.seconds)
        others = {k: v for r in reports if r is not report for k, v in r.samples().items() if k not in own}
        table = rates(others.values())
        own_samples = report.samples().values()
        estimate = sum(rate_of(table, family, phase, like=like)[0] * work for family, phase, work, _ in own_samples)
        out.append((report, sum(seconds for *_, seconds in own_samples), estimate))
    return out


def comparison(folders):
    """Markdown lines comparing runs of one study made with different executors: the first is the reference."""
    reports = [json.loads((Path(f) / "report.json").read_text(encoding="utf-8")) for f in folders]
    reference = without_timings(reports[0])
    first = reports[0]
    recipe = first["command"].split(" run ", 1)[-1].split()[0]
    budget = "at its paper budget" if first["budget"] is None else f"--budget {first['budget']}"
    lines = [f"## One study run by every executor: `{recipe}` {budget}", "",
             "Wall time of each run (its report's `seconds`, from start to report), the compute seconds its "
             "processes spent, and whether its report equals the first one's once timings are dropped. Reports "
             "are bit-identical when every cell runs on as many TensorFlow threads (`--threads 1`, a worker of "
             "`--workers 2` on 2 cores, a Ray task of 1 CPU); a plain serial run uses both cores and may add its "
             "floats in another order (Galloway's binary CNNs then train to other weights). The runs shared the "
             "machine with other jobs, so their wall times are noisy.", "",
             "| run | wall | compute | report equal to the first |", "|---|---:|---:|---|"]
    for report in reports:
        same = "(reference)" if report is first else "yes" if without_timings(report) == reference else "NO"
        lines.append(f"| `{report['command'].split(' run ', 1)[-1]}` | {report['seconds']:.0f} s | "
                     f"{report['computed_seconds']:.0f} s | {same} |")
    return lines + [""]


def shown(path):
    """``path`` relative to the repository when it lies in it (as given, when relative), else its file name."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name


def _run_words(inv):
    recipe, budget, overrides = inv
    return " ".join([recipe, *([f"--budget {budget}"] if budget else []),
                     *(f"--set {shlex.quote(o)}" for o in overrides)])


def _costed(counts):
    m, e = counts["measured"], counts["estimated"]
    return "measured" if e == 0 else "estimated" if m == 0 else f"{m} measured, {e} estimated"


def markdown(table_rows, checked, rate_table, *, workers, slowdown, command, outside, compared=()):
    lines = [
        "# Reproduction budget",
        "",
        "Every paper recipe whose data is available offline, at the paper's budget (`python -m edgebnn.recipes "
        "run NAME` without `--budget` or `--set`), on this project's 2-core machine. Generated by "
        "`scripts/reproduction_budget.py`; see its docstring for the method.",
        "",
        "- A recipe's cost is the sum over its models (training) and results (evaluations); *costed* counts "
        "how many of them are **measured** and how many **estimated**, and *measured in* names the reports "
        "that measured some (see *Measured reports* below).",
        "- **measured**: a complete report computed the same store key (same data, model, training and "
        "evaluation settings): its training seconds (when it trained the model in one go) or the result's "
        "seconds in the store.",
        "- **estimated**: planned work (forward/backward passes) x forward FLOP per image x a rate per model "
        "family and phase, calibrated on everything the reports below measured, each report planned with "
        "its own `--budget` and `--set` options; `*` marks a family no report measured (see the note under "
        "the table). Within a family cost is taken to grow with FLOP (Galloway's K = 128 and 256 models at "
        "the rate measured on K = 64) and with epochs.",
        "- *wall (recorded)*: the logged wall time of a run of the whole recipe at this budget, where one "
        "was logged, summed over the sittings of a run that was stopped and resumed (the machine was shared "
        "with other jobs, and runs sharing a cache skip what an earlier run trained).",
        f"- **--workers 2**: the cells on 2 processes of this machine, longest first, times the measured "
        f"slowdown of a cell in one of 2 processes sharing the 2 cores ({slowdown:.2f}x).",
        "- **N nodes**: the same schedule on N machines like this one (`--executor ray`), each cell at serial "
        "speed; process start-up, data loading and shipping store entries are not counted.",
        "",
        "| recipe | epochs | cells | costed | measured in | serial | wall (recorded) | --workers 2 | "
        + " | ".join(f"{n} nodes" for n in workers) + " |",
        "|---|---:|---:|---|---|---:|---:|---:|" + "---:|" * len(workers),
    ]
    for row in table_rows:
        star = "*" if row["borrowed"] else ""
        sources = ", ".join(f"`{shown(r.folder)}`" for r in row["sources"]) or "--"
        lines.append(
            f"| `{row['recipe']}`{star} | {'/'.join(map(str, row['epochs']))} | {row['cells']} | "
            f"{_costed(row['counts'])} | {sources} | {clock(row['serial'])} | "
            f"{clock(row['wall']) if row['wall'] else ''} | {clock(row['workers'][2])} | "
            + " | ".join(clock(row["nodes"][k]) for k in workers) + " |")
    borrowed = {f: other for r in table_rows for f, other in r["borrowed"].items()}
    for family, other in sorted(borrowed.items()):
        lines += ["", f"`*` no report measured `{family}`: its cells are costed at the rate of `{other}` "
                      "per pass and FLOP."]
    for row in table_rows:
        for report in row["other_runs"]:
            epochs = sorted({c.recipe.train.epochs for c in report.planned.study.cells})
            lines += ["", f"`{row['recipe']}`: `{shown(report.folder)}` ran `{_run_words(report.invocation)}` with "
                          f"cells of {'/'.join(map(str, epochs))} epochs; the recipe at its paper budget shares "
                          "none of its models or results, so it calibrates the rates only."]
    lines += ["", "## Measured reports", "",
              "Every complete report found, planned with its own command's options: what it measured (compute "
              "seconds of its models and results, whichever run computed them), and the estimate of the same "
              "work from rates calibrated on the *other* reports only (leave-one-out: how far an estimate can "
              "be off; a family no other report measured is estimated at the rate pooled over the other "
              "families).", "",
              "| report | run | cells | measured | leave-one-out estimate | estimate / measured | wall (recorded) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for report, measured, estimate in checked:
        wall = report.wall
        lines.append(f"| `{shown(report.folder)}` | `{_run_words(report.invocation)}` | "
                     f"{len(report.planned.costs)} | {clock(measured)} | {clock(estimate)} | "
                     f"{estimate / measured:.2f} | {clock(wall) if wall else ''} |")
    lines += ["", "Calibrated rates (all reports): effective GFLOP/s of a pass, per family and phase.", "",
              "| family | phase | GFLOP/s |", "|---|---|---:|"]
    for (family, phase), rate in sorted(rate_table.items(), key=lambda kv: (kv[0][0] or "~", kv[0][1] or "~")):
        lines.append(f"| {family or 'all families'} | {phase or 'evaluations'} | {1e-9 / rate:.1f} |")
    if compared:
        lines += [""] + comparison(compared)
    lines += ["", f"Command (from the repository's root): `{command}`"]
    if outside:
        lines += ["", "Named by their file name, outside the repository: " + ", ".join(f"`{o}`" for o in outside)
                  + " (the wall-time log holds `RECIPE [OPTIONS] exit STATUS in N s` lines of the paper runs)."]
    return "\n".join(lines + [""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["results"], help="folders searched for complete report.json files")
    parser.add_argument("--cache", nargs="*", default=[],
                        help="stores those runs wrote to with --cache (per-result seconds); "
                             "a run's own store is read too")
    parser.add_argument("--walltimes", help="a log of `RECIPE [OPTIONS] exit STATUS in N s` lines (recorded wall times)")
    parser.add_argument("--slowdown", type=float, required=True,
                        help="measured slowdown of a cell in one of 2 worker processes against serial")
    parser.add_argument("--workers", type=int, nargs="+", default=list(DEFAULT_WORKERS))
    parser.add_argument("--like", nargs="*", default=[], metavar="FAMILY=MEASURED",
                        help="cost an unmeasured family at a measured family's rate (same layer types, "
                             "e.g. panda_fcn1=panda_fcn2: dense layers cost the same per pass and FLOP)")
    parser.add_argument("--compare", nargs="*", default=[], metavar="RUN_DIR",
                        help="run folders of one study made with different executors (the first is the reference)")
    parser.add_argument("--out", default=os.path.join("docs", "reproduction.md"))
    args = parser.parse_args(argv)
    if args.slowdown <= 0:
        parser.error(f"--slowdown must be positive, got {args.slowdown}")
    if any(n < 1 for n in args.workers):
        parser.error(f"--workers must be positive, got {args.workers}")
    like = dict(pair.split("=", 1) for pair in args.like if "=" in pair)
    if len(like) != len(args.like):
        parser.error(f"--like takes FAMILY=MEASURED pairs, got {args.like}")
    reports = find_reports(args.runs, args.cache)
    if not reports:
        parser.error(f"--runs: no complete paper-recipe report.json under {args.runs}")
    walls = walltimes(args.walltimes)
    for report in reports:
        report.wall = walls.get(report.invocation)
    samples = {key: v for report in reports for key, v in report.samples().items()}
    table = rates(samples.values())
    planned = [Planned(name) for name in offline_recipes()]
    table_rows = rows(planned, reports, table, walls=walls, workers=args.workers, slowdown=args.slowdown, like=like)
    paths = [*args.runs, *args.cache, *([args.walltimes] if args.walltimes else []), *args.compare, args.out]
    outside = [Path(p).name for p in paths if Path(p).is_absolute() and not Path(p).is_relative_to(REPO)]
    words = [shown(w) if os.sep in w and Path(w).is_absolute() else w
             for w in (argv if argv is not None else sys.argv[1:])]
    command = "python scripts/reproduction_budget.py " + " ".join(words)
    page = markdown(table_rows, checks(reports, like=like), table, workers=args.workers, slowdown=args.slowdown,
                    command=command, outside=outside, compared=args.compare)
    Path(args.out).write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
