"""The results page (``docs/results.md``): every paper recipe's run, the paper's numbers beside ours.

``python -m edgebnn.recipes results RUN_DIR [RUN_DIR ...] --out docs/results.md``
reads the ``report.json`` of each run folder (a folder without one is searched
recursively), and writes one page grouped by paper (the recipe's ``paper`` key), then
by recipe, one section per report (one per dataset or budget run): the data and
budget, the claims with their verdicts, every attack run both ways beside each other
(single-sample and EOT gradients), the masking checks where the run has a strong
evaluation (``[[robustness]]``), the recipe's tables with the paper's values beside
ours, and links to the figures. The header names the command that regenerated it.
The page is generated: edit the recipes or rerun them, never the page.
"""

import json
import os
import tomllib
from pathlib import Path

from edgebnn import _io
from edgebnn.recipes import claims as claims_lib
from edgebnn.recipes import papers
from edgebnn.recipes.claims import PAPERS, VERDICTS, outcome_of
from edgebnn.recipes.evaluations import KINDS
from edgebnn.recipes.runner import INCOMPLETE, PREVIOUS
from edgebnn.recipes.schema import RecipeError

#: Section title of reports whose recipe names no paper.
OTHER = "Other recipes"


#: Folders inside a run folder whose reports are not runs of their own: the store, and the
#: complete report a rerun sets aside while it runs or the report of a rerun that did not complete.
_NOT_RUNS = {"store", PREVIOUS, INCOMPLETE}


def find_reports(run_dirs):
    """``[(run folder, report dict)]`` of every ``report.json`` in or below ``run_dirs``, in path order.

    Raises:
        RecipeError: a folder does not exist, holds no report, or a report is not valid JSON.
    """
    if not run_dirs:
        raise RecipeError("results: give at least one RUN_DIR (a run's --out folder, or a folder above several).")
    found = []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            raise RecipeError(f"results: RUN_DIR {str(run_dir)!r} is not a folder.")
        paths = [run_dir / "report.json"] if (run_dir / "report.json").is_file() else sorted(
            p for p in run_dir.rglob("report.json") if not _NOT_RUNS & set(p.relative_to(run_dir).parts))
        if not paths:
            raise RecipeError(f"results: no report.json in or below RUN_DIR {str(run_dir)!r}.")
        for path in paths:
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise RecipeError(f"results: {path} is not valid JSON ({e}).") from e
            if not isinstance(report, dict) or "recipe" not in report or "records" not in report:
                raise RecipeError(f"results: {path} is not a recipe run's report (no `recipe` / `records`).")
            if path.parent.resolve() not in [p.resolve() for p, _ in found]:
                found.append((path.parent, report))
    return found


def _budget(report):
    """One line: training, evaluation images, MC passes and EOT samples of the run's base recipe."""
    base = report.get("study", {}).get("base", {})
    train, evaluation = base.get("train", {}), base.get("evaluation", {})
    parts = []
    if train:
        parts.append(f"{train.get('epochs')} training epoch(s), batch {train.get('batch_size')}, "
                     f"{train.get('optimizer')} lr {train.get('learning_rate')}")
    if evaluation:
        parts.append(f"attacks on the first {evaluation.get('limit')} test images")
        if evaluation.get("mc_passes"):
            parts.append(f"{evaluation['mc_passes']} Monte-Carlo passes")
        if evaluation.get("eot_samples"):
            parts.append(f"EOT {evaluation['eot_samples']} samples per gradient")
        parts.append(f"attack labels: {evaluation.get('labels')}")
    return "; ".join(parts)


def _images(base):
    """Training and test images of a base recipe's data section, as the summary shows them."""
    data = base.get("data", {})
    split = data.get("split")
    if split:
        return f"{split.get('train'):,} / {split.get('test'):,} of {data.get('dataset')}'s {split.get('source')} split"
    limits = [data.get("train_limit"), data.get("test_limit")]
    return " / ".join("all" if n is None else f"{n:,}" for n in limits) + f" of {data.get('dataset')}"


def short_budget(report):
    """``ours`` in a few words: images, epochs, evaluated images and runs of the report's study."""
    study = report.get("study") or {}
    base = study.get("base") or {}
    epochs = (base.get("train") or {}).get("epochs")
    limit = (base.get("evaluation") or {}).get("limit")
    runs = study.get("repeats", 1)
    profile = f" (budget {report['budget']!r})" if report.get("budget") else ""
    return (f"{_images(base)}, {epochs} epochs, {'all' if limit is None else f'{limit:,}'} evaluated, "
            f"{runs} run{'s' if runs != 1 else ''}{profile}")


def _recipe_dataset(recipe):
    """The dataset a recipe file trains on by default (its ``[data] dataset``)."""
    from edgebnn import recipes  # noqa: PLC0415

    table = tomllib.loads(recipes.find(recipe).read_text(encoding="utf-8"))
    return (table.get("data") or {}).get("dataset", "fashion_mnist")


def coverage(paper, reports):
    """Markdown table of every table and figure of ``paper``: the recipes, what ran (dataset, budget) or why not."""
    by_recipe = {}
    for _, report in reports:
        by_recipe.setdefault(report["recipe"], []).append(report)
    lines = ["| item | shows | recipe | run here (data: ours) | paper's budget |", "|---|---|---|---|---|"]
    for item in papers.CATALOG.get(paper, ()):
        for recipe in item.recipes:
            runs = by_recipe.get(recipe.replace("/", "_"), [])
            ran = "; ".join(f"{_dataset(r)}: {short_budget(r)}" for r in runs) or \
                papers.not_run_reason(_recipe_dataset(recipe))
            lines.append(f"| {item.name} | {item.shows} | `{recipe}` | {ran} | {item.budget} |")
    return lines + [""]


def _verdict_counts(claims):
    counts = dict.fromkeys(VERDICTS, 0)
    for c in claims:
        counts[outcome_of(c)] += 1
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "none"


def _kind_sections(report):
    """What each evaluation kind shows of the report's records (single-sample against EOT attacks,
    the masking checks of strong evaluations), in registry order."""
    lines = []
    for name, kind in KINDS.items():
        records = [r for r in report["records"] if r.get("evaluation") == name]
        if records:
            lines += kind.page_section(records)
    return lines


def _demote(markdown_lines, levels):
    return [("#" * levels + line) if line.startswith("#") else line for line in markdown_lines]


def _dataset(report):
    """The datasets a report's cells ran on (their ``data.dataset``, in cell order), else its base recipe's."""
    cells = [c.get("config", {}).get("data", {}).get("dataset") for c in report.get("cells") or []]
    names = list(dict.fromkeys(name for name in cells if name))
    if names:
        return ", ".join(names)
    return ((report.get("study") or {}).get("base") or {}).get("data", {}).get("dataset", "n/a")


def _section(run_dir, report, out_dir):
    swap = report.get("substitute")
    data = _dataset(report) + (f", a substitute for {swap['paper_dataset']}" if swap else "") + \
        (f", budget {report['budget']!r}" if report.get("budget") else "")
    lines = [f"### {report['recipe']} ({data})", ""]
    if report.get("description"):
        lines += [report["description"], ""]
    status = report.get("status")
    if status == "running":  # a report is rewritten after every result: this one never reached the end
        status = "incomplete (the run had not finished when its report was read; numbers so far)"
    if swap:
        lines += [f"**Substitute data:** {swap['dataset']} instead of the paper's {swap['paper_dataset']}; the "
                  f"paper's values are not shown beside these numbers, and its clean accuracies do not gate the "
                  f"claims.", ""]
    if report.get("command"):
        lines += [f"- command: `{report['command']}` (edgebnn {report.get('versions', {}).get('edgebnn', 'n/a')})"]
    lines += [f"- data: {report.get('data_caption', 'n/a')}",
              f"- budget: {_budget(report) or 'n/a'}",
              f"- run: status **{status}**" + (f" ({report['error']})" if report.get("error") else "")
              + f"; wall time {report.get('seconds', 0):.1f} s, {report.get('computed_seconds', 0):.1f} s of it computed "
              f"in this run (the rest came from the cache)"
              + (f"; {report['work_seconds']:.0f} s of compute behind these numbers (training and every result, "
                 f"whichever run spent it)" if report.get("work_seconds") is not None else "")
              + f"; run folder `{run_dir}`", ""]
    claims = report.get("claims") or []
    if claims:
        lines += claims_lib.to_markdown(claims, heading="#### Claims")
    flags = claims_lib.anomalies(report.get("records") or [])
    if flags:
        lines += ["#### Anomalies (label leaking or masked gradients)", ""]
        lines += [f"- cell {f['cell']}" + (f" (repeat {f['repeat']})" if f["repeat"] else "") + f": {f['message']}"
                  for f in flags]
        lines.append("")
    lines += _kind_sections(report)
    if report.get("tables"):
        lines += ["#### Tables", ""]
        for table in report["tables"]:
            lines += _demote(table["markdown"], 1)
    if report.get("figures"):
        lines += ["#### Figures", ""]
        for figure in report["figures"]:
            target = os.path.relpath(Path(run_dir) / figure["path"], out_dir)
            lines.append(f"- [{figure['title']}]({target})")
        lines.append("")
    return lines


def render(reports, *, command, out_dir="."):
    """The page's Markdown for ``[(run folder, report)]``; ``command`` goes in the header."""
    groups = {}
    for run_dir, report in reports:
        groups.setdefault(report.get("paper") or None, []).append((run_dir, report))
    # every paper has a section, run or not: its coverage table says what ran and why the rest did not
    order = list(PAPERS) + ([None] if None in groups else [])
    lines = ["# Results: the papers' tables and claims, reproduced", "",
             f"Generated by `{command}` from the run folders named there; do not edit by hand.", "",
             "Each claim's criterion was written in its recipe before any number was seen. Every comparison "
             "carries a 95% interval of its difference (a paired bootstrap over the images where per-image "
             "outcomes are stored, else over repeated runs, else the binomial interval over the images); it "
             "holds (or fails) only when its margin holds (or fails) over the whole interval, and is undecided "
             "otherwise. A claim **holds** when the required number of its comparisons hold, **does not hold "
             "(k of n, r required)** when even the undecided ones could not make up the required number, and is "
             "**inconclusive** otherwise. It is **not evaluated** when a number it needs is missing, or when a "
             "model behind it is under-trained (clean accuracy more than 5 points below the paper's, or near "
             "chance). Claims marked *beyond the paper* (PGD and strong-attack variants, masking and EOT checks) "
             "are counted apart from the paper's own. "
             "Accuracies are in percent; paper values in parentheses. `single` is the plain attack (one stochastic "
             "pass per gradient, as the papers ran it), `eot` the same attack with gradients averaged over the "
             "model's randomness.", ""]
    lines += ["## Summary", "", "| paper | recipe | data | budget (ours) | claim | verdict |",
              "|---|---|---|---|---|---|"]
    for paper in order:
        for _, report in sorted(groups.get(paper, []), key=lambda item: item[1]["recipe"]):
            for c in report.get("claims") or []:
                beyond = " *(beyond the paper)*" if c.get("extension") else ""
                lines.append(f"| {PAPERS.get(paper, OTHER)} | {report['recipe']} | {_dataset(report)} | "
                             f"{short_budget(report)} | {c['id']}: {c['claim']}{beyond} | {c['verdict']} |")
    if not any(r.get("claims") for _, r in reports):
        lines.append("| - | - | - | - | (no claims in these reports) | - |")
    lines.append("")
    for paper in order:
        entries = sorted(groups.get(paper, []), key=lambda item: (item[1]["recipe"], str(item[0])))
        all_claims = [c for _, r in entries for c in r.get("claims") or []]
        lines += [f"## {PAPERS.get(paper, OTHER)}", ""]
        if paper in papers.CATALOG:
            lines += ["### What the paper reports and what ran here", "", *coverage(paper, entries)]
        if all_claims:
            own = [c for c in all_claims if not c.get("extension")]
            extensions = [c for c in all_claims if c.get("extension")]
            lines += [f"{len(own)} claims of the paper: {_verdict_counts(own)}."
                      + (f" {len(extensions)} beyond the paper: {_verdict_counts(extensions)}." if extensions else ""),
                      ""]
        for run_dir, report in entries:
            lines += _section(run_dir, report, out_dir)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_page(run_dirs, out, *, command):
    """Find the reports below ``run_dirs`` and write the page to ``out`` (atomically); return its text."""
    reports = find_reports(run_dirs)
    out = Path(out)
    text = render(reports, command=command, out_dir=out.parent.resolve())
    _io.write_text(out, text)
    return text
