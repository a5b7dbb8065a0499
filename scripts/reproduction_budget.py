"""The reproduction budget table: every offline paper recipe at its paper budget, serial and on N workers.

For each recipe of :data:`edgebnn.recipes.papers.CATALOG` whose data is available
offline, the study is planned at the paper's budget (:mod:`edgebnn.recipes.plan`: every
cell's training and evaluation work, in forward/backward passes) and its cells are
costed in seconds:

- **measured** where a complete paper-budget run of the recipe is given (``--runs``):
  each cell's training, result and conversion seconds as that run (or the run that filled
  its shared cache) spent them, read from the report and the store (``--cache``);
- **estimated** otherwise: the planned work times the parameter count of the cell's
  model times a rate in seconds per (pass x parameter), calibrated per model family and
  phase (training, or one evaluation kind) on every measured cell of the runs given
  (any budget). A family no run measured takes the rate pooled over all families; its
  rows say so.

``serial`` is the sum of the cell costs. ``--workers N`` on this machine puts the cells on
N processes longest first (each cell on the least loaded worker) and multiplies the
makespan by ``--slowdown``: how much slower a cell runs in one of N processes sharing
the cores than alone (measured by comparing the ``computed_seconds`` of a serial and a
``--workers N`` run of the same study). ``N nodes`` is the same schedule on N machines
like this one, each cell at its serial speed. Neither counts process start-up, data
loading or (for a cluster) shipping store entries; a cell whose transfer attack needs
another cell's model is scheduled as if independent.

Usage:
    EDGEBNN_DATA_DIR=/work/shared/data PYTHONPATH=. python scripts/reproduction_budget.py \\
        --runs RUNS_DIR --cache RUNS_DIR/cache --walltimes walltimes.txt --slowdown 1.6 --out docs/reproduction.md
"""

import argparse
import heapq
import json
import os
import re
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import edgebnn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import recipes  # noqa: E402
from edgebnn.recipes import config, papers, steps  # noqa: E402
from edgebnn.recipes import plan as plan_lib  # noqa: E402
from edgebnn.recipes.assemble import without_timings  # noqa: E402

#: Phase of a cell's training in the rate table (its evaluations use their kind's name).
TRAIN = "train"
#: Worker counts of the table's columns.
DEFAULT_WORKERS = (2, 4, 8)
#: A line of a wall-time log: ``guan/table1 exit 0 in 766 s``.
_WALLTIME = re.compile(r"^(\S+) exit 0 in (\d+) s")


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


def rates(samples):
    """``{(family, phase): seconds per (pass x parameter)}`` pooled over ``samples``
    (``(family, phase, work x parameters, seconds)``), plus ``(family, None)`` over a family's
    evaluation phases and ``(None, phase)`` / ``(None, None)`` over every family."""
    sums = {}
    for family, phase, work, seconds in samples:
        if work <= 0:
            continue
        keys = [(family, phase), (None, phase)]
        if phase != TRAIN:
            keys += [(family, None), (None, None)]
        for key in keys:
            w, s = sums.get(key, (0.0, 0.0))
            sums[key] = (w + work, s + seconds)
    return {key: s / w for key, (w, s) in sums.items()}


def rate_of(table, family, phase, *, like=None):
    """``(rate, whether it is the family's own)``: the most specific rate ``table`` has for ``family``,
    else for the family ``like`` maps it to (``{family: measured family of the same layer types}``),
    else pooled over every family."""
    for name in (family, (like or {}).get(family)):
        for key in [(name, phase)] + ([(name, None)] if phase != TRAIN else []):
            if name is not None and key in table:
                return table[key], name == family
    for key in [(None, phase)] + ([(None, None)] if phase != TRAIN else []):
        if key in table:
            return table[key], False
    raise ValueError(f"no measured rate for phase {phase!r} of any family")


def clock(seconds):
    """``1 h 05 min``, ``12 min``, ``45 s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


# --- reading studies, runs and stores ----------------------------------------------------


class Planned:
    """A recipe at its paper budget (or a named smaller ``budget``): its study, plans, and each
    cell's family and parameter count."""

    def __init__(self, name, *, budget=None):
        self.name = name
        self.study = config.load(recipes.find(name), budget=budget)
        session = steps.Session(self.study, Path("."), None)
        self.plans = plan_lib.plan(self.study, session.sizes)
        self.params = {}
        for cell in self.study.cells:
            key = self.plans[cell.id].model_key
            if key not in self.params:
                self.params[key] = _count_params(cell.recipe, session.data_for(cell.recipe))

    def family(self, cell):
        return cell.recipe.model.family

    def phases(self, cell):
        """``[(phase, work x parameters, unit key or None)]`` of ``cell``: its training, then its units."""
        plan = self.plans[cell.id]
        params = self.params[plan.model_key]
        out = [(TRAIN, plan.train_work * params, None)]
        out += [(u.kind, plan.unit_work[u.key] * params, u.key) for u in plan.units]
        return out


def _count_params(recipe, data):
    """Parameters of ``recipe``'s model, built in a graph of its own: its variables get shapes but
    no memory (FCN1 holds 118M weights)."""
    import tensorflow as tf  # noqa: PLC0415

    with tf.Graph().as_default():
        return int(steps.build_model(recipe, data).count_params())


def find_reports(folders):
    """``{(paper, recipe name, budget): report}`` of every complete ``report.json`` under ``folders``."""
    found = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("report.json")):
            report = json.loads(path.read_text(encoding="utf-8"))
            if report.get("status") == "complete" and report.get("paper"):
                report["store_folder"] = str(path.parent / "store")  # the run's own store, unless it used --cache
                found[(report["paper"], report["recipe"], report.get("budget"))] = report
    return found


def measured_cells(planned, report, caches):
    """``{cell id: [(phase, work x parameters, seconds)]}`` of a run's report; the results' seconds come from
    the run's own store or one of ``caches`` (results found in neither are left out of their cell)."""
    caches = [report["store_folder"], *caches]
    cells = {c["id"]: c for c in report["cells"]}
    out = {}
    for cell in planned.study.cells:
        entry = cells.get(cell.id)
        if entry is None or (entry.get("train") or {}).get("seconds_last") is None:
            continue
        rows = []
        for phase, work, key in planned.phases(cell):
            if key is None:
                rows.append((phase, work, float(entry["train"]["seconds_last"])))
                continue
            stored = _stored_result(caches, key)
            if stored is not None and "seconds" in stored:
                rows.append((phase, work, float(stored["seconds"])))
        deployed = entry.get("deployed") or {}
        if deployed.get("seconds") is not None:
            rows.append(("deploy", 0.0, float(deployed["seconds"])))
        out[cell.id] = rows
    return out


def _stored_result(caches, key):
    for cache in caches:
        path = Path(cache) / "results" / f"{key}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def walltimes(path):
    """``{recipe: seconds}`` of the first successful run of each recipe in a wall-time log (later runs
    of a recipe find its models and results in their cache)."""
    found = {}
    if path is None:
        return found
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = _WALLTIME.match(line.strip())
        if match:
            found.setdefault(match.group(1), int(match.group(2)))
    return found


def offline_recipes():
    """Every recipe of the catalog whose data needs no download, in catalog order (each once)."""
    names = []
    for items in papers.CATALOG.values():
        for item in items:
            names += [r for r in item.recipes if r not in names]
    return [n for n in names if config.load(recipes.find(n)).base.data.dataset not in papers.DOWNLOAD_ONLY]


# --- the table ---------------------------------------------------------------------------


def rows(planned_list, reports, caches, table, *, walls, workers, slowdown, like):
    """One dict per recipe: its cells, how each was costed, and the serial / parallel seconds."""
    out = []
    for planned in planned_list:
        paper = planned.study.paper
        report = reports.get((paper, planned.study.name, None))
        measured = measured_cells(planned, report, caches) if report is not None else {}
        costs, estimated, borrowed = [], 0, {}
        for cell in planned.study.cells:
            if cell.id in measured:
                costs.append(sum(s for _, _, s in measured[cell.id]))
                continue
            estimated += 1
            total = 0.0
            for phase, work, _ in planned.phases(cell):
                family = planned.family(cell)
                rate, own = rate_of(table, family, phase, like=like)
                if not own:
                    borrowed[family] = like.get(family, "all measured families")
                total += rate * work
            costs.append(total)
        serial = sum(costs)
        out.append({
            "recipe": planned.name, "cells": len(costs), "estimated_cells": estimated, "borrowed": borrowed,
            "serial": serial, "wall": walls.get(planned.name),
            "workers": {n: makespan(costs, n) * slowdown for n in workers if n <= 2},
            "nodes": {n: makespan(costs, n) for n in workers},
        })
    return out


def comparison(folders):
    """Markdown lines comparing runs of one study made with different executors: the first is the reference."""
    reports = [json.loads((Path(f) / "report.json").read_text(encoding="utf-8")) for f in folders]
    reference = without_timings(reports[0])
    first = reports[0]
    recipe = first["command"].split(" run ", 1)[-1].split()[0]
    lines = [f"## One study run by every executor: `{recipe}` --budget {first['budget']}", "",
             "Wall time of each run (its report's `seconds`, from start to report), the compute seconds its "
             "processes spent, and whether its report equals the first one's once timings are dropped. Reports "
             "are bit-identical when every cell runs on as many TensorFlow threads (`--threads 1`, a worker of "
             "`--workers 2` on 2 cores, a Ray task of 1 CPU); a plain serial run uses both cores, adds its "
             "floats in another order and trains the binary CNNs to other weights. The runs shared the machine "
             "with other jobs, so their wall times are noisy.", "",
             "| run | wall | compute | report equal to the first |", "|---|---:|---:|---|"]
    for folder, report in zip(folders, reports):
        same = "(reference)" if report is first else "yes" if without_timings(report) == reference else "NO"
        lines.append(f"| `{report['command'].split(' run ', 1)[-1]}` | {report['seconds']:.0f} s | "
                     f"{report['computed_seconds']:.0f} s | {same} |")
    return lines + [""]


def markdown(table_rows, *, workers, slowdown, command, compared=()):
    lines = [
        "# Reproduction budget",
        "",
        "Every paper recipe whose data is available offline, at the paper's budget (`python -m edgebnn.recipes "
        "run NAME` without `--budget`), on this project's 2-core machine. Generated by "
        "`scripts/reproduction_budget.py`; see its docstring for the method.",
        "",
        "- **measured**: compute seconds of a complete paper-budget run (training, every result, conversion), "
        "read from its report and store; *wall* is that run's recorded wall time where one was logged "
        "(the machine was shared with other jobs, and runs sharing a cache skip what an earlier run trained).",
        "- **estimated**: planned work (forward/backward passes) x parameters x a rate per model family and "
        "phase, calibrated on the measured cells (any budget); `*` marks a family no run measured, costed at "
        "the rate of a family of the same layer types (see the note under the table).",
        f"- **--workers 2**: the cells on 2 processes of this machine, longest first, times the measured "
        f"slowdown of a cell in one of 2 processes sharing the 2 cores ({slowdown:.2f}x).",
        "- **N nodes**: the same schedule on N machines like this one (`--executor ray`), each cell at serial "
        "speed; process start-up, data loading and shipping store entries are not counted.",
        "",
        "| recipe | cells | costed | serial | wall (recorded) | --workers 2 | "
        + " | ".join(f"{n} nodes" for n in workers) + " |",
        "|---|---:|---|---:|---:|---:|" + "---:|" * len(workers),
    ]
    for row in table_rows:
        n, e = row["cells"], row["estimated_cells"]
        costed = "measured" if e == 0 else "estimated" if e == n else f"{n - e} measured, {e} estimated"
        star = "*" if row["borrowed"] else ""
        lines.append(
            f"| `{row['recipe']}`{star} | {n} | {costed} | {clock(row['serial'])} | "
            f"{clock(row['wall']) if row['wall'] else ''} | {clock(row['workers'][2])} | "
            + " | ".join(clock(row["nodes"][k]) for k in workers) + " |")
    borrowed = {f: other for r in table_rows for f, other in r["borrowed"].items()}
    for family, other in sorted(borrowed.items()):
        lines += ["", f"`*` no run measured `{family}`: its cells are costed at the rate of `{other}` "
                      "per pass and parameter."]
    if compared:
        lines += [""] + comparison(compared)
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=[], help="folders searched for complete report.json files")
    parser.add_argument("--cache", nargs="*", default=[],
                        help="stores those runs wrote to with --cache (per-result seconds); "
                             "a run's own store is read too")
    parser.add_argument("--walltimes", help="a log of `RECIPE exit 0 in N s` lines (recorded wall times)")
    parser.add_argument("--slowdown", type=float, required=True,
                        help="measured slowdown of a cell in one of 2 worker processes against serial")
    parser.add_argument("--workers", type=int, nargs="+", default=list(DEFAULT_WORKERS))
    parser.add_argument("--like", nargs="*", default=[], metavar="FAMILY=MEASURED",
                        help="cost an unmeasured family at a measured family's rate (same layer types, "
                             "e.g. panda_fcn1=panda_fcn2: dense layers cost the same per pass and parameter)")
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
    reports = find_reports(args.runs)
    planned = [Planned(name) for name in offline_recipes()]
    by_study = {(p.study.paper, p.study.name): p for p in planned}
    samples = []
    for (paper, name, budget), report in reports.items():
        if (paper, name) not in by_study:
            continue
        source = by_study[(paper, name)]
        if budget is not None:  # a smaller budget's run: its own plan
            source = Planned(source.name, budget=budget)
        samples += _samples(source, report, args.cache)
    table = rates(samples)
    table_rows = rows(planned, reports, args.cache, table, walls=walltimes(args.walltimes),
                      workers=args.workers, slowdown=args.slowdown, like=like)
    command = "python scripts/reproduction_budget.py " + " ".join(argv if argv is not None else os.sys.argv[1:])
    page = markdown(table_rows, workers=args.workers, slowdown=args.slowdown, command=command, compared=args.compare)
    Path(args.out).write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")


def _samples(planned, report, caches):
    """``(family, phase, work x parameters, seconds)`` of every measured cell phase of ``report``."""
    cells = {c.id: c for c in planned.study.cells}
    return [(planned.family(cells[cell_id]), phase, work, seconds)
            for cell_id, cell_rows in measured_cells(planned, report, caches).items()
            for phase, work, seconds in cell_rows if phase != "deploy"]


if __name__ == "__main__":
    main()
