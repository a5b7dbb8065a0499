"""Per-example exact robustness decisions on a :class:`~edgebnn.certify.encode.BinaryNet` (TensorFlow-free).

:func:`certify_example` answers one example; :func:`certify_net` answers many, in
parallel worker processes (``spawn``: the workers import NumPy and a solver, never
TensorFlow), with progress lines and a time limit per example.
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time

import numpy as np

from edgebnn import _validate
from edgebnn.certify import branch, encode, search, solvers

STATUSES = ("robust", "not_robust", "unknown")
#: Where an answer came from: the clean input is already wrong, a given input (an
#: attack's) already changes the prediction, integer bounds alone prove robustness,
#: exhaustive enumeration, hill climbing on the exact model (:mod:`.search`), branch and bound
#: over pixel ranges (:mod:`.branch`), or the solver.
SOURCES = ("clean", "hint", "bounds", "enumeration", "search", "branch", "solver")
#: Share of the time left after hill climbing that branch and bound over pixel ranges gets before the solver.
BRANCH_SHARE = 0.5
#: Boxes branch and bound may bound when there is no time limit (the solver then decides what is left).
BRANCH_BOXES = 1 << 14
#: Balls with at most this many discretized inputs are searched exhaustively instead of solved.
ENUMERATION_LIMIT = 1 << 20
#: Moves of the exact-model hill climbing tried before the solver.
SEARCH_STEPS = 300
#: Work budget, in multiply-accumulates after the first layer, of the exhaustive search of one ball
#: and of the hill climbing of one example: a convolutional network costs far more per input than
#: an FCN, so it enumerates smaller balls and climbs fewer steps.
ENUMERATION_MACS = 1 << 28
SEARCH_MACS = 1 << 28


def _hint_levels(net, x, hint, eps):
    """Levels of ``hint`` clipped to those reachable in the ball around ``x``.

    Attacks project in float32, so their outputs can leave the exact ball by a rounding
    error; clipping the levels gives an input that is certainly inside it.
    """
    klo, khi = encode.level_range(x, eps, net.bits)
    return np.clip(encode.pixel_levels(np.asarray(hint, np.float32).reshape(-1), net.bits), klo, khi)


def _solve_by_rival(solve, problem, order, time_limit, start):
    """One solver call per rival class (no disjunction over classes), in ``order``; time shared out as it goes.

    Returns ``(answer, true_vars)`` as the backends do: ``"sat"`` at the first rival
    that can win, ``"unsat"`` if none can, else ``"timeout"``.
    """
    rivals = sorted(problem.rivals, key=lambda r: order.get(r.cls, 0))
    timed_out = False
    for i, rival in enumerate(rivals):
        share = None
        if time_limit is not None:
            share = (time_limit - (time.perf_counter() - start)) / (len(rivals) - i)
            if share <= 0:
                return "timeout", None
        answer, true_vars = solve(dataclasses.replace(problem, rivals=[rival]), time_limit=share)
        if answer == "sat":
            return answer, true_vars
        timed_out |= answer == "timeout"
    return ("timeout" if timed_out else "unsat"), None


def certify_example(net, x, y, *, eps, time_limit=None, solver="milp", hint=None, enumeration_limit=ENUMERATION_LIMIT,
                    search_steps=SEARCH_STEPS, split_rivals=False, branch_share=BRANCH_SHARE):
    """Decide whether any input within ``eps`` (L-infinity) of ``x`` is not classified as ``y``.

    Args:
        net: the network (:func:`edgebnn.certify.network.extract`).
        x: one input example in ``[0, 1]`` (any shape with ``net``'s pixel count).
        y: its label.
        eps: radius of the L-infinity ball (>= 0).
        time_limit: seconds for encoding and solving (``None``: no limit).
        solver: a backend of :mod:`.solvers`: ``"milp"`` (HiGHS), ``"sat"`` (Glucose on a
            CNF), ``"minicard"`` / ``"gluecard4"`` (native cardinality, incremental over
            the rivals) or ``"cpsat"`` (OR-tools).
        hint: an input believed to be a counterexample (e.g. an attack's output); its
            levels, clipped to the ball, are the answer when the exact forward pass
            misclassifies them.
        enumeration_limit: balls holding at most this many discretized inputs (and within
            :data:`ENUMERATION_MACS` of work) are searched exhaustively with the exact
            forward pass (0: always use the solver).
        search_steps: moves of the exact-model hill climbing (:func:`.search.hill_climb`)
            tried before the solver (0: none), fewer when they would exceed :data:`SEARCH_MACS`.
        split_rivals: one solver problem per class that can still beat the label, the
            most promising first (by the hill climbing's best margins), instead of one
            problem with a disjunction over the classes. Off by default: each call
            pays the solver's set-up and presolve again, which a short time limit
            cannot absorb.
        branch_share: share of the time left after hill climbing given to branch and
            bound over pixel ranges (:func:`.branch.search`, complete: it decides when it
            finishes) before the solver gets the rest; 0: none. Without a time limit it
            bounds at most :data:`BRANCH_BOXES` boxes.

    Returns:
        A dict with ``status`` (``robust`` / ``not_robust`` / ``unknown``), ``source``
        (:data:`SOURCES`), ``solver`` and ``solver_version`` (the backend and its package
        version, :func:`.solvers.version`), ``seconds``, ``free_pixels``, ``unstable`` (per hidden layer,
        ``None`` when not computed), ``predicted`` (the exact prediction of the
        counterexample, or ``None``) and ``counterexample`` (float32 flat array or ``None``).
    """
    start = time.perf_counter()
    _validate.integer(search_steps, "search_steps", low=0)
    _validate.number(branch_share, "branch_share", low=0, high=1)
    x = np.asarray(x, np.float32).reshape(-1)
    solve = solvers.get(solver)
    record = {"status": None, "source": None, "free_pixels": None, "unstable": None, "predicted": None,
              "counterexample": None, "solver": solver, "solver_version": solvers.version(solver)}

    def done(status, source, counterexample=None):
        if counterexample is not None:
            predicted = int(encode.predict_levels(net, encode.pixel_levels(counterexample, net.bits)[None])[0])
            if predicted == y:  # an answer we cannot stand behind must never be returned
                raise RuntimeError(f"internal error: the {source} counterexample is classified as the label {y}.")
            record["predicted"] = predicted
        record.update(status=status, source=source, counterexample=counterexample,
                      seconds=time.perf_counter() - start)
        return record

    own = encode.pixel_levels(x, net.bits)[None]
    if encode.predict_levels(net, own)[0] != y:
        return done("not_robust", "clean", x)
    if hint is not None:
        levels = _hint_levels(net, x, hint, eps)
        if encode.predict_levels(net, levels[None])[0] != y:
            return done("not_robust", "hint", encode.witness(x, levels, eps, net.bits))
    size = encode.ball_size(x, eps, net.bits)
    if size <= enumeration_limit and size * net.macs_after_first <= ENUMERATION_MACS:
        levels = encode.enumerate_ball(net, x, y, eps)
        if levels is None:
            return done("robust", "enumeration")
        return done("not_robust", "enumeration", encode.witness(x, levels, eps, net.bits))
    problem, bounds = encode.build_problem(net, x, y, eps)
    record["free_pixels"], record["unstable"] = bounds["free_pixels"], bounds["unstable"]
    if problem is None:
        return done("robust", "bounds")
    starts = [] if hint is None else [_hint_levels(net, x, hint, eps)]
    moves = int(np.sum(np.subtract(*encode.level_range(x, eps, net.bits)[::-1])))  # single-pixel moves per step
    steps = min(search_steps, SEARCH_MACS // max(1, moves * net.macs_after_first))
    levels, best = search.hill_climb(net, x, y, eps, steps=steps, starts=starts)
    if levels is not None:
        return done("not_robust", "search", encode.witness(x, levels, eps, net.bits))
    if time_limit is not None and time_limit - (time.perf_counter() - start) <= 0:
        return done("unknown", "solver")
    if branch_share > 0:
        share = None if time_limit is None else branch_share * (time_limit - (time.perf_counter() - start))
        status, levels, _ = branch.search(net, x, y, eps, time_limit=share,
                                          max_boxes=BRANCH_BOXES if time_limit is None else None)
        if status == "robust":
            return done("robust", "branch")
        if status == "not_robust":
            return done("not_robust", "branch", encode.witness(x, levels, eps, net.bits))
    order = {c: -best[c] for c in range(len(best))}
    # the most promising rival first (backends that decide rivals one at a time stop at the first that wins)
    problem.rivals.sort(key=lambda r: order.get(r.cls, 0))
    if split_rivals:
        answer, true_vars = _solve_by_rival(solve, problem, order, time_limit, start)
    else:
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - start)
        answer, true_vars = solve(problem, time_limit=remaining)
    if answer == "unsat":
        return done("robust", "solver")
    if answer == "timeout":
        return done("unknown", "solver")
    levels = problem.levels(true_vars)
    return done("not_robust", "solver", encode.witness(x, levels, eps, net.bits))


_WORKER_NET = None


def _init_worker(net):
    global _WORKER_NET
    _WORKER_NET = net


def _work(args):
    index, x, y, options = args
    return index, certify_example(_WORKER_NET, x, y, **options)


def _summary(records):
    statuses = [r["status"] for r in records if r is not None]
    return ", ".join(f"{s} {statuses.count(s)}" for s in STATUSES)


def certify_net(net, x, y, *, eps, time_limit=None, solver="milp", processes=1, hints=None, progress=None,
                enumeration_limit=ENUMERATION_LIMIT, search_steps=SEARCH_STEPS, split_rivals=False,
                branch_share=BRANCH_SHARE):
    """:func:`certify_example` over a batch, in up to ``processes`` worker processes.

    Args:
        net: the network.
        x: inputs, shape ``(batch, ...)``.
        y: labels, shape ``(batch,)``.
        eps, time_limit, solver, enumeration_limit, search_steps, split_rivals, branch_share: as in
            :func:`certify_example`.
        processes: worker processes (1: in this process).
        hints: optional inputs shaped like ``x`` (e.g. attack outputs), see :func:`certify_example`.
        progress: ``None`` or ``progress(label, done, total)`` (the shape of every
            progress callback of edgebnn), called about every 5% of the examples and at
            the end; ``label`` names the run, its time so far and the answers so far.

    Returns:
        The list of per-example records, in the order of ``x``.
    """
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    y = np.asarray(y).astype(int)
    options = dict(eps=eps, time_limit=time_limit, solver=solver, enumeration_limit=enumeration_limit,
                   search_steps=search_steps, split_rivals=split_rivals, branch_share=branch_share)
    tasks = [(i, x[i], int(y[i]), {**options, "hint": None if hints is None else np.asarray(hints[i])})
             for i in range(len(x))]
    records = [None] * len(x)
    start, every = time.perf_counter(), max(1, len(x) // 20)

    def note(finished):
        if progress is not None and (finished % every == 0 or finished == len(x)):
            progress(f"certify eps={eps:g} {solver} ({time.perf_counter() - start:.0f}s: {_summary(records)})",
                     finished, len(x))

    if processes == 1 or len(x) <= 1:
        _init_worker(net)
        try:
            for finished, task in enumerate(tasks, start=1):
                index, record = _work(task)
                records[index] = record
                note(finished)
        finally:
            _init_worker(None)
        return records
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker,
                                                initargs=(net,)) as pool:
        futures = [pool.submit(_work, task) for task in tasks]
        for finished, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            index, record = future.result()
            records[index] = record
            note(finished)
    return records


def default_processes(limit=2):
    """Worker processes to use: the available cores, at most ``limit`` (the machine is shared)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(limit, cores))
