"""Assembling a run's report from its plan and what its steps found or computed.

``report.json`` holds the study, one entry per cell (its model, training, results
and deployment), the flat records every table, figure and claim reads, the tables,
figures and claim verdicts, and the run's status and times; ``report.md`` renders it
(:func:`edgebnn.recipes.report.to_markdown`). A single-cell recipe's report also
carries the keys of the run reports written before studies existed (:func:`legacy`).
"""

from edgebnn import _io
from edgebnn.recipes import claims as claims_lib
from edgebnn.recipes import figures as figures_lib
from edgebnn.recipes import report as report_lib
from edgebnn.recipes.config import flatten
from edgebnn.recipes.evaluations import KINDS
from edgebnn.recipes.evaluations.base import CHECK, FAILED
from edgebnn.recipes.evaluations.common import eot_samples


def records(study, plans, results):
    """The flat records of every stored result, cell by cell in plan order."""
    out = []
    for cell in study.cells:
        for unit in plans[cell.id].units:
            stored = results.get(unit.key)
            if stored is None:
                continue
            out.append({"cell": cell.name, "repeat": cell.repeat, "evaluation": unit.kind,
                        **stored["labels"], **stored["metrics"], "key": unit.key})
    return out


def check_records(all_records, store):
    """Add each record's :meth:`~edgebnn.recipes.evaluations.base.Kind.check_record` against the other
    results of its cell (and repeat) to it, under :data:`~edgebnn.recipes.evaluations.base.CHECK`; the
    other results' per-image outcomes are read from ``store`` only for a kind that checks."""
    for record in all_records:
        others = [r for r in all_records
                  if r is not record and r["cell"] == record["cell"] and r["repeat"] == record["repeat"]]

        def attacks_at(eps, others=others):
            merged = {}
            for other in others:
                found = KINDS[other["evaluation"]].attack_outcomes(other, store.load_outcomes(other["key"]), eps=eps)
                for name, outcomes in found.items():
                    merged[name if name not in merged else f"{name} ({other['key']})"] = outcomes
            return merged

        check = KINDS[record["evaluation"]].check_record(record, attacks_at)
        if check is not None:
            record[CHECK] = check


def failed_checks(report):
    """The one-line messages of a report's failed record checks, ``cell: message``."""
    return [f"cell {r['cell']!r}: {r[CHECK]['message']}" for r in report["records"]
            if r.get(CHECK, {}).get("status") == FAILED]


def caption(session, plans):
    """Which images the numbers come from, one phrase per distinct data and evaluation split."""
    captions = []
    for cell in session.study.cells:
        d = session.data_for(cell.recipe)
        text = f"{d.caption}; evaluations on the first {plans[cell.id].n_eval:,} images of the test part"
        if text not in captions:
            captions.append(text)
    text = " | ".join(captions)
    if session.study.budget is not None:
        text = f"budget {session.study.budget!r} (a smaller profile, not the recipe's full budget): {text}"
    return text


def configs(study):
    """``{cell name: flat configuration}`` of the first repeat of every cell."""
    return {c.name: flatten(c.recipe.model_dump(mode="json")) for c in study.cells if c.repeat == 0}


def draw_figures(session, plans, all_records, *, data_caption):
    """Draw the study's figures into ``out/figures``; their report entries."""
    def arrays(record, name):
        stored = session.store.load_arrays(record["key"])
        return None if stored is None else stored.get(name)

    drawn = []
    for spec in session.study.figures:
        figure = figures_lib.draw(spec, all_records, configs(session.study), arrays, session.out / "figures")
        figure["caption"] = f"{figure['title']}. Data: {data_caption}."
        drawn.append(figure)
    return drawn


def cell_reports(session, plans, all_records):
    """One report entry per cell: configuration, model, training, results, deployment."""
    cells = []
    for cell in session.study.cells:
        model_key = plans[cell.id].model_key
        entry = session.models.get(model_key)
        cell_report = {"id": cell.id, "name": cell.name, "repeat": cell.repeat, "overrides": cell.overrides,
                       "seed": cell.recipe.train.seed, "config": cell.recipe.model_dump(mode="json"),
                       "model_key": model_key,
                       "results": [r for r in all_records if r["cell"] == cell.name and r["repeat"] == cell.repeat]}
        if entry is not None:
            model, randomized, info = entry
            cell_report["model"] = {"name": model.name, "parameters": int(model.count_params()),
                                    "randomized": randomized}
            cell_report["train"] = info
            cell_report["eot_samples"] = eot_samples(cell.recipe.evaluation, randomized)
        if cell.id in session.deployed:
            cell_report["deployed"] = session.deployed[cell.id]
        cells.append(cell_report)
    return cells


def work_seconds(results, all_records, cells):
    """Compute time behind the report's numbers (training and every result), whichever run spent it."""
    train = {c["model_key"]: (c.get("train") or {}).get("seconds_last") or 0.0 for c in cells}
    return float(sum(train.values()) + sum(results[r["key"]].get("seconds", 0.0) for r in all_records))


def legacy(session, plans, cell_report, *, versions):
    """The single-run report keys (``dataset``, ``model``, ``clean_accuracy``, ``attacks``, ``deployed``)
    of the run reports written before studies existed; ``None`` before the model exists."""
    if "model" not in cell_report:
        return None
    study = session.study
    cell = study.cells[0]
    d = session.data_for(cell.recipe)
    results = cell_report["results"]
    clean_rows = [r for r in results if r["evaluation"] == "clean"]
    return {
        "recipe": study.name,
        "dataset": {"name": cell.recipe.data.dataset, "train_size": len(d.x_train), "test_size": len(d.x_test),
                    "attack_size": plans[cell.id].n_eval},
        "model": {"name": cell_report["model"]["name"], "family": cell.recipe.model.family,
                  "precision": cell.recipe.model.precision, "input_bits": cell.recipe.model.input_bits,
                  "parameters": cell_report["model"]["parameters"]},
        "clean_accuracy": clean_rows[0]["accuracy"] if clean_rows else None,
        "attacks": [{"name": r["attack"], **{k: v for k, v in r.items()
                                             if k not in ("cell", "repeat", "evaluation", "attack", "key")}}
                    for r in results if r["evaluation"] == "attacks"],
        "deployed": {k: v for k, v in cell_report.get("deployed", {}).items() if k != "seconds"} or None,
        "config": cell.recipe.model_dump(mode="json"),
        "versions": versions,
        "seconds": session.console.elapsed(),
    }


def per_image(store):
    """``outcomes(record, metric)`` for the claims' paired bootstrap: a result's stored per-image correctness.

    ``accuracy`` is the mean of the stored ``correct`` vector; a clean result's
    ``accuracy_eval`` is the mean of its first ``images_eval`` entries (the evaluated
    images lead the test part). Other metrics have no per-image values here.
    """
    def outcomes(record, metric):
        if metric not in ("accuracy", "accuracy_eval") or "key" not in record:
            return None
        correct = (store.load_outcomes(record["key"]) or {}).get("correct")
        if correct is None:
            return None
        if metric == "accuracy_eval":
            n = record.get("images_eval") if record.get("evaluation") == "clean" else None
            return None if n is None else correct[:n]
        return correct

    return outcomes


def substitute(study):
    """``{"dataset", "paper_dataset"}`` when a paper recipe runs on other data than its own, else ``None``."""
    dataset = study.base.data.dataset
    if study.paper is None or study.recipe_dataset in (None, dataset):
        return None
    return {"dataset": dataset, "paper_dataset": study.recipe_dataset}


def judge_claims(session, all_records, cell_configs, *, paper_values=True):
    """The study's claims on ``all_records``, with intervals from the stored per-image outcomes and the gates.

    The paper's clean accuracies gate the claims only when the run is on the paper's data.
    """
    study = session.study
    classes = {session.data_for(cell.recipe).num_classes for cell in study.cells}
    paper_clean = claims_lib.paper_clean(study.tables, cell_configs) if paper_values else None
    return claims_lib.evaluate_all(study.claims, all_records, cell_configs, paper_clean=paper_clean,
                                   outcomes=per_image(session.store),
                                   chance=1 / classes.pop() if len(classes) == 1 else 0.1)


#: Report keys that hold timings or the command line: they differ between runs of the same study.
VOLATILE = ("seconds", "computed_seconds", "work_seconds", "seconds_last", "command")


def without_timings(value):
    """A report (or any part of one) without its :data:`VOLATILE` keys, at every depth: what two runs
    of one study must agree on."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def build(session, plans, *, status, error, figures, versions):
    """The report dict of the run so far."""
    study = session.study
    all_records = records(study, plans, session.results)
    check_records(all_records, session.store)
    data_caption = caption(session, plans)
    cell_configs = configs(study)
    swap = substitute(study)
    tables = []
    for spec in study.report_tables():
        markdown, table = report_lib.render_table(spec, all_records, cell_configs, caption=data_caption,
                                                  paper_values=swap is None)
        tables.append({**table, "markdown": markdown})
    cells = cell_reports(session, plans, all_records)
    report = {
        "recipe": study.name, "description": study.description, "status": status, "error": error,
        "data_caption": data_caption, "study": study.to_dict(), "cells": cells, "records": all_records,
        "tables": tables, "figures": [dict(f) for f in figures],
        "paper": study.paper, "substitute": swap, "command": session.command, "budget": study.budget,
        "claims": judge_claims(session, all_records, cell_configs, paper_values=swap is None),
        "versions": versions, "seconds": session.console.elapsed(), "computed_seconds": session.computed_seconds,
        "work_seconds": work_seconds(session.results, all_records, cells),
    }
    if study.single:
        report.update(legacy(session, plans, cells[0], versions=versions) or {})
    return report


def write(out, report, study):
    """Write ``report.json`` and ``report.md`` into the run folder ``out`` (atomically)."""
    _io.write_json(out / "report.json", report)
    _io.write_text(out / "report.md", report_lib.to_markdown(report, study))
