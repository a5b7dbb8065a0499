"""Study reports: the recipe's tables (mean ± std over repeats) and ``report.md``.

Tables read the flat result records of :mod:`edgebnn.recipes.records`: table keys are
looked up in the record first, then in the cell's resolved configuration
(``model.precision``, ``train.adversarial.method``).
"""

import numpy as np

from edgebnn.evaluation import report as run_report
from edgebnn.recipes import claims as claims_lib
from edgebnn.recipes.evaluations import KINDS
from edgebnn.recipes.evaluations.base import num, pct
from edgebnn.recipes.records import lookup, matches, same

_FORMATS = {
    "percent": lambda v: f"{100 * v:.2f}",
    "fixed2": lambda v: f"{v:.2f}",
    "fixed3": lambda v: f"{v:.3f}",
    "fixed4": lambda v: f"{v:.4f}",
    "scientific": lambda v: f"{v:.2e}",
}


def _label(keys, values):
    parts = []
    as_dict = dict(zip(keys, values))
    for key, value in as_dict.items():
        if value is None or (key == "eps" and as_dict.get("attack") == "clean"):
            continue
        short = key.rsplit(".", 1)[-1]
        text = format(value, "g") if isinstance(value, float) else str(value)
        parts.append(f"{short} {text}" if key in ("eps",) or short in ("input_bits",) else text)
    return " ".join(parts) or "-"


def table_data(spec, records, configs):
    """The numbers behind one table: rows, columns and ``{(row, column): stats}``.

    Records of ``spec.evaluation`` (plus those of kinds in every table, the clean ones, for metrics they carry)
    matching ``spec.where`` are grouped by the row and column keys; each group gives
    the mean, the standard deviation (``ddof=0``) and the number of values (repeats).
    """
    chosen = [
        r for r in records
        if (r["evaluation"] == spec.evaluation or KINDS[r["evaluation"]].in_every_table)
        and r.get(spec.metric) is not None
        and matches(r, spec.where, configs)
    ]
    rows, columns, groups = [], [], {}
    for record in chosen:
        row = tuple(lookup(record, k, configs) for k in spec.rows)
        column = tuple(lookup(record, k, configs) for k in spec.columns)
        if row not in rows:
            rows.append(row)
        if column not in columns:
            columns.append(column)
        groups.setdefault((row, column), []).append(float(record[spec.metric]))
    stats = {
        key: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for key, v in groups.items()
    }
    return rows, columns, stats


def _paper_value(spec, row, column):
    keys = dict(zip(spec.rows, row)) | dict(zip(spec.columns, column))
    for paper in spec.paper:
        if all(k in keys and same(keys[k], v) for k, v in paper.match.items()):
            return paper.value
    return None


def render_table(spec, records, configs, *, caption="", paper_values=True):
    """``(markdown lines, data)`` of one table: ours as mean ± std (over repeats), the paper's beside.

    ``caption`` (which images the numbers come from) ends the table's note; with
    ``paper_values=False`` (numbers on another dataset than the paper's) the paper's
    values are left out.
    """
    rows, columns, stats = table_data(spec, records, configs)
    fmt = _FORMATS[spec.format]
    unit = " (%)" if spec.format == "percent" else ""
    lines = [f"### {spec.title}", ""]
    if not stats:
        return lines + ["(no results yet)", ""], {"title": spec.title, "rows": [], "columns": [], "cells": []}
    header = [" / ".join(k.rsplit(".", 1)[-1] for k in spec.rows)] + [_label(spec.columns, c) for c in columns]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(columns)]
    data_cells = []
    for row in rows:
        texts = [_label(spec.rows, row)]
        for column in columns:
            s = stats.get((row, column))
            paper = _paper_value(spec, row, column) if paper_values else None
            if s is None:
                text = "-"
            else:
                text = fmt(s["mean"]) + (f" ± {fmt(s['std'])}" if s["n"] > 1 else "")
            if paper is not None:
                text += f" (paper {paper})"
            texts.append(text)
            data_cells.append({"row": list(row), "column": list(column), **(s or {}), "paper": paper})
        lines.append("| " + " | ".join(texts) + " |")
    n = max(s["n"] for s in stats.values())
    notes = [f"{spec.metric}{unit}"]
    if n > 1:
        notes.append(f"mean ± std over {n} runs")
    if spec.paper and paper_values:
        notes.append("paper values in parentheses" + (f" ({spec.paper_source})" if spec.paper_source else ""))
    if caption:
        notes.append(f"images: {caption}")
    lines += ["", "; ".join(notes) + ".", ""]
    return lines, {"title": spec.title, "metric": spec.metric, "rows": [list(r) for r in rows],
                   "columns": [list(c) for c in columns], "cells": data_cells}


def _accuracy_table(rows):
    """The cell's accuracy table: ``rows`` are ``(record, name, eps text)`` of the kinds with a table row."""
    mc = any("accuracy_mc" in r for r, _, _ in rows)
    lines = ["", "| attack | eps | accuracy" + (" (S) | accuracy (M) | uncertainty" if mc else "")
             + " | success rate | mean L2 | median L2 | mean Linf |",
             "|---|---:|---:|" + ("---:|---:|" if mc else "") + "---:|---:|---:|---:|"]
    for r, name, eps in rows:
        mc_part = (f" | {pct(r.get('accuracy_mc'))} | {num(r.get('uncertainty_mean'), 4)}"
                   f" ± {num(r.get('uncertainty_std'), 4)}") if mc else ""
        lines.append(f"| {name} | {eps} | {pct(r.get('accuracy'))}{mc_part} | {pct(r.get('success_rate'))} | "
                     f"{num(r.get('l2_mean'))} | {num(r.get('l2_median'))} | {num(r.get('linf_mean'))} |")
    return lines


def _cell_section(cell_report):
    """Per-cell details: model, training, the accuracy table, every other result as its kind renders it."""
    lines = [f"### {cell_report['id']}", ""]
    model, train = cell_report.get("model"), cell_report.get("train")
    if model:
        lines.append(f"- model `{model['name']}`: {model['parameters']:,} parameters"
                     + (" (randomized at inference: attacked with EOT, "
                        f"{cell_report.get('eot_samples')} samples per gradient)" if model.get("randomized") else ""))
    if train and not train["epochs"]:
        lines.append(f"- your saved model `{train['file']}` (sha256 `{train['file_sha256']}`), not trained "
                     f"(no [train] table); cache key `{train['key']}`")
    elif train:
        lines.append(f"- trained {train['epochs']} epoch(s), seed {train['seed']}"
                     + (f", adversarial: {train['adversarial']}" if train.get("adversarial") else "")
                     + (f" (training adversaries within L-inf {train['adversarial_linf_bound']:g} of their images)"
                        if train.get("adversarial_linf_bound") is not None else "")
                     + f"; cache key `{train['key']}`")
    results = cell_report.get("results", [])
    rows = [(r, *row) for r in results if (row := KINDS[r["evaluation"]].table_row(r)) is not None]
    if rows:
        lines += _accuracy_table(rows)
    for r in results:
        lines += KINDS[r["evaluation"]].markdown(r)
    deployed = cell_report.get("deployed")
    if deployed is not None and not deployed.get("deployed", True):
        lines.append(f"- not deployed: {deployed['reason']}")
    elif deployed:
        lines.append(f"- deployed ({deployed['target']}): {deployed['tflite_bytes']:,} bytes"
                     + (f", clean agreement with Keras {pct(deployed.get('agreement_clean'))}"
                        if "agreement_clean" in deployed else ""))
    return lines + [""]


def to_markdown(report, study):
    """``report.md`` of a study: data caption, the recipe's tables, figures, then every cell."""
    if study.single and report.get("model"):  # a single run: the run report first, as before studies
        deployed = report.get("deployed")
        run = {**report, "deployed": deployed if deployed and deployed.get("deployed") else None}
        head = run_report.to_markdown(run).rstrip("\n").split("\n")
    else:
        head = [f"# edgebnn study: {report['recipe']}"]
    lines = head + [""]
    if report.get("description"):
        lines += [f"{report['description']}", ""]
    status = report["status"]
    lines += [f"- status: **{status}**" + (f" ({report['error']})" if report.get("error") else ""),
              f"- data: {report['data_caption']}",
              f"- cells: {len(study.cells)} ({study.repeats} run(s) each); wall time {report['seconds']:.1f} s "
              f"({report['computed_seconds']:.1f} s computed in this run, the rest from the cache"
              + (f"; {report['work_seconds']:.1f} s of compute behind these numbers"
                 if report.get("work_seconds") is not None else "") + ")",
              "- white-box attacks see through discretization and sign with straight-through gradients (BPDA); "
              "randomized models are attacked with expectation over their randomness (EOT) unless the result's "
              "`gradient` is `single` (the plain attack, one stochastic pass per gradient)", ""]
    lines += ["## Tables", ""]
    for table in report["tables"]:
        lines += table["markdown"]
    if report.get("figures"):
        lines += ["## Figures", ""]
        for figure in report["figures"]:
            lines += [f"![{figure['title']}]({figure['path']})", "", f"{figure['caption']}", ""]
    if study.claims:
        lines += claims_lib.to_markdown(report["claims"], heading="## Claims")
    lines += ["## Cells", ""]
    for cell_report in report["cells"]:
        lines += _cell_section(cell_report)
    return "\n".join(lines) + "\n"
