"""Run a :class:`~edgebnn.recipes.config.Study`: train every cell, evaluate, deploy, report.

Three parts and an executor: :mod:`edgebnn.recipes.plan` plans the cells' units and their
store keys, :mod:`edgebnn.recipes.steps` trains, evaluates and deploys one cell,
:mod:`edgebnn.recipes.assemble` builds the report, and an executor of
:mod:`edgebnn.recipes.executors` runs the cells (in this process, in local worker
processes, or as Ray tasks).

Everything is cached in the run folder under keys derived from the configuration
that produced it (see :mod:`edgebnn.recipes.store`): rerunning a command after a
kill recomputes nothing that had finished, an interrupted training resumes from its
last finished epoch (only with the same configuration), and an added evaluation
computes only itself. The report is rewritten after every result, so whatever has
finished reaches ``report.json`` / ``report.md`` even if a later step fails.
"""

import json
import os
import shutil
from pathlib import Path

from edgebnn import EdgebnnError
from edgebnn.recipes import assemble, executors, interrupts, steps
from edgebnn.recipes import plan as plan_lib
from edgebnn.recipes.console import Console, quiet_tensorflow
from edgebnn.recipes.store import RunLock

#: Top-level files a run regenerates; removed when a run starts so that a failed run
#: never leaves a previous run's report or model beside its own.
_OUTPUTS = ("report.json", "report.md", "model.keras", "model.tflite")
#: Folders a run regenerates, removed when it starts for the same reason.
_OUTPUT_FOLDERS = ("figures", steps.BUNDLE, "bundles")
#: Where a complete earlier run's outputs wait while a rerun runs: put back if the rerun
#: does not complete, so a complete report is never replaced by a failed or interrupted one.
PREVIOUS = ".previous"
#: Where the report of a run that did not complete goes when a complete one was kept.
INCOMPLETE = "incomplete"


class FailedCheckError(EdgebnnError):
    """A complete run whose report shows a failed check of a result against the other results of its
    cell (an image certified robust that an attack broke)."""


def run(study, out, *, console=None, cache=None, command=None, executor=None):
    """Run ``study`` into folder ``out`` (locked for the run); return the report dict.

    Args:
        study: a :class:`~edgebnn.recipes.config.Study`.
        out: the run folder (report, figures; the store unless ``cache`` is given).
        console: where progress goes (default: stderr).
        cache: a folder for trained models and results shared with other runs
            (see :mod:`edgebnn.recipes.store`); default ``out/store``.
        command: the command line that started the run, recorded in the report.
        executor: where the cells run (:mod:`edgebnn.recipes.executors`); default one
            after another in this process.

    Raises:
        RecipeError: another run holds the folder, or a check that needs the data or
            a built model failed (before any training).
        FailedCheckError: the run completed, but its report shows a failed check of a result
            against its cell's other results (:func:`edgebnn.recipes.assemble.failed_checks`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        return _run(steps.Session(study, out, console or Console(), cache=cache, command=command),
                    executor or executors.Serial())


def _run(session, executor):
    study, console = session.study, session.console
    session.strategy, session.chief = steps.make_strategy(study)
    quiet_tensorflow()
    versions = steps.versions()
    kept = _set_aside_outputs(session.out)
    console.note(f"recipe {study.name!r} -> {session.out}: {steps.plural(len(study.cells), 'cell')}")
    plans = plan_lib.plan(study, session.sizes)
    steps.check_models(session, plans)
    console.note(f"data: {assemble.caption(session, plans)}")
    console.total_work += sum(p.train_work + sum(p.unit_work.values()) for p in plans.values())
    state = {"status": "running", "error": None, "figures": []}

    def write_report(*, with_figures):
        if with_figures and study.figures:
            all_records = assemble.records(study, plans, session.results)
            state["figures"] = assemble.draw_figures(session, plans, all_records,
                                                     data_caption=assemble.caption(session, plans))
        report = assemble.build(session, plans, versions=versions, **state)
        assemble.write(session.out, report, study)
        return report

    try:
        executor.run(session, plans, after_each=lambda: write_report(with_figures=False))
        state["status"] = "complete"
    except BaseException as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        state["status"] = "interrupted" if interrupted else "failed"
        state["error"] = f"interrupted ({interrupts.cause(e)})" if interrupted else f"{type(e).__name__}: {e}"
        write_report(with_figures=True)
        if kept:
            _put_back_outputs(session.out, session.out / INCOMPLETE)
            console.note(f"this run did not complete ({state['status']}); the earlier complete report is kept in "
                         f"{session.out / 'report.md'}, this run's in {session.out / INCOMPLETE / 'report.md'}")
        raise
    report = write_report(with_figures=True)
    shutil.rmtree(session.out / PREVIOUS, ignore_errors=True)
    shutil.rmtree(session.out / INCOMPLETE, ignore_errors=True)
    if study.single:
        _copy_single(session, plans[study.cells[0].id])
    console.note(f"done in {report['seconds']:.1f} s ({session.computed_seconds:.1f} s computed): "
                 f"{session.out / 'report.md'}")
    failed = assemble.failed_checks(report)
    if failed:
        raise FailedCheckError(f"{'; '.join(failed)} (the report is written: {session.out / 'report.md'})")
    return report


def _complete(out):
    """Whether ``out/report.json`` is the report of a complete run."""
    try:
        return json.loads((out / "report.json").read_text(encoding="utf-8")).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


def _outputs(out):
    return [out / name for name in (*_OUTPUTS, *_OUTPUT_FOLDERS) if (out / name).exists()]


def _set_aside_outputs(out):
    """Clear the outputs of an earlier run from ``out`` before a run; a complete run's are moved
    to :data:`PREVIOUS` instead of removed. Returns whether they were kept.

    Outputs a killed run left set aside are first put back (the killed run's own, incomplete, removed).
    """
    previous = out / PREVIOUS
    if previous.is_dir():
        _put_back_outputs(out, None)
    if _complete(out):
        previous.mkdir()
        for path in _outputs(out):
            os.replace(path, previous / path.name)
        return True
    for path in _outputs(out):
        _remove(path)
    return False


def _put_back_outputs(out, incomplete):
    """Move this run's outputs to ``incomplete`` (or remove them, with ``None``) and put the kept ones back."""
    if incomplete is not None:
        shutil.rmtree(incomplete, ignore_errors=True)
        incomplete.mkdir()
    for path in _outputs(out):
        if incomplete is None:
            _remove(path)
        else:
            os.replace(path, incomplete / path.name)
    previous = out / PREVIOUS
    for path in previous.iterdir():
        os.replace(path, out / path.name)
    previous.rmdir()


def _remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _copy_single(session, cell_plan):
    """A single-cell recipe's model (and converted model) beside its report."""
    cell = session.study.cells[0]
    steps.copy_file(session.store.model_dir(cell_plan.model_key) / "model.keras", session.out / "model.keras")
    if session.deployed.get(cell.id, {}).get("deployed"):
        steps.copy_file(session.deploy_dirs[cell.id] / "model.tflite", session.out / "model.tflite")
