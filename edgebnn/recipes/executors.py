"""Where a study's cells run: one after another in this process, in N local processes, or as Ray tasks.

An executor runs the cells of a planned study and hands each finished cell back to
the driver, which reads it from the store into its :class:`~edgebnn.recipes.steps.Session`
(:func:`collect`) and rewrites the report. The cells' units, keys and seeds come from
the planner, so where a cell ran never changes what it computes:

- :class:`Serial`: every cell in this process, in study order (the default);
- :class:`Processes`: ``workers`` local processes sharing the store through its
  per-key locks (:meth:`~edgebnn.recipes.store.Store.lock`), each with its share of the
  cores as TensorFlow threads; their progress lines reach this console;
- :class:`Ray`: each cell as a Ray task (``pip install edgebnn[ray]``). The driver
  ships the task the store entries its cell already has (a rerun resumes), the task
  computes in a folder of its own and returns the bytes of every entry it wrote, and
  the driver writes them into its store: the cluster needs no shared filesystem, only
  the data (``EDGEBNN_DATA_DIR`` or tensorflow-datasets) and edgebnn on every node. A
  task whose worker dies is retried (``max_retries``).

Numbers are bit-identical between executors when every cell runs with the same number of
TensorFlow threads (``--threads``): a float sum split over more threads adds in another
order, and a few training steps of a binary network turn that last-bit difference into
different weights. A serial run uses every core unless told otherwise, a worker
``cores / workers`` threads, a Ray task the CPUs it asks for; so ``run X --threads 1``
gives the numbers of ``run X --workers 2`` on two cores, and of ``--executor ray``.

A cell that depends on another cell's model (a transfer attack's ``source``) finds it in
the store when it is there; otherwise the cell trains it itself under the model's lock,
with the same seed and so the same weights.
"""

import dataclasses
import os
import queue
import signal
import tempfile
import time
import traceback
from pathlib import Path

from edgebnn import _io
from edgebnn.recipes import config, interrupts, steps
from edgebnn.recipes import plan as plan_lib
from edgebnn.recipes.console import Console, quiet_tensorflow
from edgebnn.recipes.schema import RecipeError

#: Names accepted by ``run --executor``.
EXECUTORS = ("serial", "processes", "ray")
#: Seconds between two checks that the worker processes are still alive.
_POLL_SECONDS = 1.0
#: Seconds a terminated worker process gets to exit before it is killed.
_STOP_SECONDS = 10.0
#: Ray retries of a task whose worker died (a killed node, an out-of-memory kill).
DEFAULT_MAX_RETRIES = 3
#: Store files whose presence marks an entry as finished; written after the rest of their entry.
_MARKERS = ("model.keras", "deploy.json")


def cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make(name, *, workers=None, threads=None, address=None, max_retries=DEFAULT_MAX_RETRIES):
    """The executor called ``name`` (one of :data:`EXECUTORS`).

    Args:
        name: ``serial``, ``processes`` or ``ray``.
        workers: local worker processes (``processes``; default: one per core).
        threads: TensorFlow threads of each process computing cells (default: every core for
            ``serial``, which sets them in this process now; ``cores / workers`` for ``processes``;
            one, the CPUs each task asks for, for ``ray``).
        address: the Ray cluster to join (``ray``; default: ``RAY_ADDRESS``, else a local Ray).
        max_retries: Ray retries of a task whose worker died.

    Raises:
        ValueError: an unknown name, or an option the executor does not take, naming it.
    """
    if name not in EXECUTORS:
        raise ValueError(f"--executor must be one of {list(EXECUTORS)}, got {name!r}")
    if address is not None and name != "ray":
        raise ValueError(f"--address is the Ray cluster's address; it needs --executor ray, not {name!r}")
    if name == "ray":
        if workers is not None:
            raise ValueError("--workers is for local processes; with --executor ray the cluster's CPUs decide")
        return Ray(address=address, max_retries=max_retries, threads=threads or 1)
    if name == "serial":
        if workers not in (None, 1):
            raise ValueError(f"--workers {workers} needs --executor processes (the default when --workers > 1)")
        if threads is not None:
            set_threads(check_positive(threads, "--threads"))
        return Serial()
    return Processes(workers=cores() if workers is None else workers, threads=threads)


def check_positive(value, name):
    """``value`` if it is a positive int.

    Raises:
        ValueError: it is not, naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def cell_done(session, cell, cell_plan):
    """Whether the store holds everything ``cell`` computes: its model, every result, its deployment."""
    store = session.store
    if not (store.model_dir(cell_plan.model_key) / "model.keras").is_file():
        return False
    if not all(store.result_path(u.key).is_file() for u in cell_plan.units):
        return False
    deploy = cell.recipe.deploy
    return not deploy.enabled or (store.deploy_dir(cell_plan.deploy_key(deploy)) / "deploy.json").is_file()


def portable(study):
    """``study`` with its recipes as plain dicts, to cross a process boundary (the recipe class is
    made at run time from the evaluation kinds, so its instances do not pickle)."""
    def dump(recipe):
        return recipe.model_dump()

    return dataclasses.replace(study, base=dump(study.base),
                               cells=[dataclasses.replace(c, recipe=dump(c.recipe)) for c in study.cells])


def restored(study, plans):
    """The study :func:`portable` made, its recipes validated again; checked against the driver's
    ``plans`` (``{cell id: CellPlan}`` of the cells to run), so that a worker never computes under
    other keys than the driver's.

    Raises:
        RecipeError: a cell's model key differs from the driver's plan.
    """
    model = config.recipe_model()
    study = dataclasses.replace(study, base=model.model_validate(study.base),
                                cells=[dataclasses.replace(c, recipe=model.model_validate(c.recipe))
                                       for c in study.cells])
    for cell in study.cells:
        if cell.id in plans and plan_lib.model_key(cell.recipe) != plans[cell.id].model_key:
            raise RecipeError(f"cell {cell.id!r}: its recipe changed on the way to the worker (model key "
                              f"{plan_lib.model_key(cell.recipe)} instead of {plans[cell.id].model_key})")
    return study


class _Muted(Console):
    """A console that prints nothing and keeps the clock of ``clock`` (a driver reading finished cells)."""

    def __init__(self, clock):
        super().__init__()
        self.start = clock.start

    def line(self, message):
        pass

    def note(self, message):
        pass

    def progress(self, label, done, total):
        pass


def collect(session, cell, cell_plan):
    """Read a finished ``cell`` from the store into the driver's ``session`` (model, results, deployment)
    without printing its cached lines; returns nothing, computes nothing."""
    console = session.console
    session.console = _Muted(console)
    try:
        steps.run_cell(session, cell, cell_plan, after_each=lambda: None)
    finally:
        session.console = console


class Serial:
    """Every cell in this process, in study order."""

    name = "serial"

    def run(self, session, plans, *, after_each):
        cells = session.study.cells
        for index, cell in enumerate(cells, 1):
            interrupts.check()
            session.console.line(f"cell {index}/{len(cells)} {cell.id!r}")
            steps.run_cell(session, cell, plans[cell.id], after_each=after_each)


# --- local processes -------------------------------------------------------------------


class _EventConsole(Console):
    """A worker's console: every line and every unit of work done goes to the driver as an event."""

    def __init__(self, events, worker):
        super().__init__()
        self.events, self.worker = events, worker

    def line(self, message):
        self.events.put(("line", self.worker, message))

    def note(self, message):
        self.events.put(("line", self.worker, message))

    def done(self, work, seconds):
        self.events.put(("done", self.worker, work, seconds))

    def skip(self, work):
        self.events.put(("skip", self.worker, work))

    def progress(self, label, done, total):
        pass  # bars from several processes would overwrite each other on one terminal


def set_threads(threads):
    """Give TensorFlow ``threads`` intra-op and inter-op threads (before it runs an op)."""
    import tensorflow as tf  # noqa: PLC0415

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _process_worker(worker, study, out, cache, plans, threads, tasks, events):
    """A worker process: run the cells ``tasks`` hands out until it hands out ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, which stops the workers
    import edgebnn  # noqa: F401, PLC0415  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

    set_threads(threads)
    quiet_tensorflow()
    study = restored(study, plans)
    session = steps.Session(study, out, _EventConsole(events, worker), cache=cache)
    session.strategy, session.chief = steps.make_strategy(study)
    cells = {cell.id: cell for cell in study.cells}
    while (cell_id := tasks.get()) is not None:
        before = session.computed_seconds
        try:
            steps.run_cell(session, cells[cell_id], plans[cell_id], after_each=lambda: None)
        except Exception as e:  # handed to the driver, which stops the run and raises it
            events.put(("error", worker, cell_id, _picklable(e), traceback.format_exc()))
            return
        events.put(("cell", worker, cell_id, session.computed_seconds - before))


def _picklable(error):
    """``error`` if it survives pickling (to cross a process boundary), else a RuntimeError with its text."""
    import pickle  # noqa: PLC0415

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # an exception that does not pickle: keep its type's name and message
        return RuntimeError(f"{type(error).__name__}: {error}")


class Processes:
    """The cells in ``workers`` local processes sharing the store; each gets ``threads`` TensorFlow
    threads (default ``cores / workers``)."""

    name = "processes"

    def __init__(self, *, workers, threads=None):
        self.workers = check_positive(workers, "--workers")
        self.threads = None if threads is None else check_positive(threads, "--threads")

    def run(self, session, plans, *, after_each):
        import multiprocessing  # noqa: PLC0415

        study, console = session.study, session.console
        pending = _pending_cells(session, plans, after_each, each_cell_in="--workers runs each cell in one process")
        if not pending:
            return
        workers = min(self.workers, len(pending))
        threads = self.threads or max(1, cores() // workers)
        console.note(f"{steps.plural(len(pending), 'cell')} on {workers} worker process{'es' if workers > 1 else ''}, "
                     f"{steps.plural(threads, 'TensorFlow thread')} each")
        context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
        tasks, events = context.Queue(), context.Queue()
        for cell in pending:
            tasks.put(cell.id)
        for _ in range(workers):
            tasks.put(None)
        processes = [context.Process(target=_process_worker, name=f"edgebnn-worker-{i}", daemon=True,
                                     args=(i, portable(study), session.out, session.store.root, plans, threads,
                                           tasks, events))
                     for i in range(1, workers + 1)]
        for process in processes:
            process.start()
        try:
            self._drive(session, plans, {cell.id: cell for cell in pending}, processes, events, after_each)
        finally:
            _stop(processes)

    def _drive(self, session, plans, waiting, processes, events, after_each):
        console = session.console
        while waiting:
            try:
                event = events.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead or all(p.exitcode is not None for p in processes):
                    codes = ", ".join(f"{p.name} exit code {p.exitcode}" for p in dead) or "every worker exited"
                    raise RecipeError(f"a worker process died ({codes}) with cells left: {sorted(waiting)}; "
                                      f"rerun the same command to resume from the store.") from None
                continue
            kind, worker = event[0], event[1]
            if kind == "line":
                console.line(f"worker {worker}: {event[2]}")
            elif kind == "done":
                # seconds of one worker among several: the estimate of the time left divides by them
                console.done(event[2], event[3] / len(processes))
            elif kind == "skip":
                console.skip(event[2])
            elif kind == "error":
                details = f":\n{event[4].rstrip()}" if os.environ.get("EDGEBNN_DEBUG") == "1" else ""
                console.note(f"worker {worker} failed on cell {event[2]!r}{details}")
                raise event[3]
            elif kind == "cell":
                cell = waiting.pop(event[2])
                session.computed_seconds += event[3]
                collect(session, cell, plans[cell.id])
                after_each()


def _pending_cells(session, plans, after_each, *, each_cell_in):
    """The cells still to compute (:func:`_collect_finished`); refused for a recipe trained under a
    distribution strategy, since ``each_cell_in`` (how the executor splits the work) says one process
    computes a cell."""
    strategy = session.study.cells[0].recipe.train.strategy
    if strategy != "default":
        raise RecipeError(f"{each_cell_in}; it cannot be combined with `train.strategy = {strategy!r}`.")
    return _collect_finished(session, plans, after_each)


def _collect_finished(session, plans, after_each):
    """Read the cells the store already holds into the driver; the cells still to compute, in study order."""
    pending = []
    for cell in session.study.cells:
        if cell_done(session, cell, plans[cell.id]):
            session.console.skip(plans[cell.id].train_work + sum(plans[cell.id].unit_work.values()))
            collect(session, cell, plans[cell.id])
            session.console.line(f"cell {cell.id!r}: found in the cache")
            after_each()
        else:
            pending.append(cell)
    return pending


def _stop(processes):
    """Terminate the worker processes still running (a failure or Ctrl-C in the driver) and reap them all."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + _STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


# --- Ray -------------------------------------------------------------------------------


def _cell_entries(store, study, cell, cell_plan):
    """The store folders and files ``cell`` reads or writes: its model, its transfer sources' models,
    its results (and their arrays) and its deployment, relative to the store's root."""
    models = {cell_plan.model_key}
    for unit in cell_plan.units:
        if unit.source is not None:
            models.add(plan_lib.model_key(plan_lib.cell_of(study, unit.source, cell.repeat).recipe))
    paths = [store.model_dir(key) for key in sorted(models)]
    for unit in cell_plan.units:
        paths += [store.result_path(unit.key), store.arrays_path(unit.key)]
    if cell.recipe.deploy.enabled:
        paths.append(store.deploy_dir(cell_plan.deploy_key(cell.recipe.deploy)))
    return [p.relative_to(store.root) for p in paths]


def read_entries(root, relative_paths):
    """``{relative path: bytes}`` of every file under ``root`` at (or inside) ``relative_paths``."""
    root, files = Path(root), {}
    for relative in relative_paths:
        path = root / relative
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
        for p in found:
            files[p.relative_to(root).as_posix()] = p.read_bytes()
    return files


def write_entries(root, files):
    """Write ``{relative path: bytes}`` under ``root``, each file atomically and each entry's markers
    (``model.keras``, ``deploy.json``, a result's ``.json``) after the rest of it, so that a reader
    never finds a marker without its entry."""
    def last(name):
        path = Path(name)
        return path.name in _MARKERS or (path.parts[0] == "results" and path.suffix == ".json")

    root = Path(root)
    for name in sorted(files, key=lambda n: (last(n), n)):
        _io.write_bytes(root / name, files[name])


def _ray_cell(study, cell_id, cell_plan, inputs, threads):
    """A Ray task: compute one cell in a folder of its own, seeded with ``inputs`` (store entries
    the driver has); return ``({relative path: bytes} of the entries written or changed, computed seconds)``."""
    import edgebnn  # noqa: F401, PLC0415  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

    import ray  # noqa: PLC0415

    try:
        set_threads(threads)
    except RuntimeError:
        pass  # a reused worker process whose TensorFlow already runs keeps its threads
    quiet_tensorflow()
    study = restored(study, {cell_id: cell_plan})
    cell = next(c for c in study.cells if c.id == cell_id)
    with tempfile.TemporaryDirectory(prefix="edgebnn-ray-") as folder:
        out = Path(folder)
        store_root = out / "store"
        write_entries(store_root, inputs)
        console = Console()  # printed by the worker; Ray forwards it to the driver's console
        console.total_work = cell_plan.train_work + sum(cell_plan.unit_work.values())
        session = steps.Session(study, out, console, cache=store_root)
        session.strategy, session.chief = steps.make_strategy(study)
        steps.run_cell(session, cell, cell_plan, after_each=lambda: None)
        written = read_entries(store_root, _cell_entries(session.store, study, cell, cell_plan))
        return {k: v for k, v in written.items() if inputs.get(k) != v}, session.computed_seconds


class Ray:
    """Each cell as a Ray task on the cluster at ``address`` (default ``RAY_ADDRESS``, else a local Ray),
    asking for ``threads`` CPUs and running TensorFlow on as many threads."""

    name = "ray"

    def __init__(self, *, address=None, max_retries=DEFAULT_MAX_RETRIES, threads=1):
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        self.address, self.max_retries = address, max_retries
        self.threads = check_positive(threads, "--threads")

    def run(self, session, plans, *, after_each):
        try:
            import ray  # noqa: PLC0415
        except ImportError:
            raise RecipeError("--executor ray needs Ray: pip install 'edgebnn[ray]'") from None
        study, console = session.study, session.console
        pending = _pending_cells(session, plans, after_each, each_cell_in="--executor ray runs each cell in one task")
        if not pending:
            return
        if not ray.is_initialized():
            # the workers' TensorFlow start-up chatter stays out of the console, as the driver's does
            quiet = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
            ray.init(address=self.address, logging_level="WARNING", log_to_driver=True,
                     runtime_env={"env_vars": quiet})
        console.note(f"{steps.plural(len(pending), 'cell')} as Ray tasks on "
                     f"{int(ray.cluster_resources().get('CPU', 0))} CPUs (up to {self.max_retries} retries each)")
        task = ray.remote(num_cpus=self.threads, max_retries=self.max_retries)(_ray_cell)
        refs = {}
        for cell in pending:
            entries = _cell_entries(session.store, study, cell, plans[cell.id])
            refs[task.remote(portable(study), cell.id, plans[cell.id], read_entries(session.store.root, entries),
                             self.threads)] = cell
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                cell = refs.pop(ready[0])
                files, seconds = ray.get(ready[0])
                write_entries(session.store.root, files)
                session.computed_seconds += seconds
                work = plans[cell.id].train_work + sum(plans[cell.id].unit_work.values())
                console.done(work, seconds)
                collect(session, cell, plans[cell.id])
                console.line(f"cell {cell.id!r}: done on the cluster ({seconds:.1f} s computed, "
                             f"{steps.plural(len(files), 'store file')} back)")
                after_each()
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
