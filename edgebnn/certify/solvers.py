"""SAT (python-sat) and MILP (HiGHS) backends for a :class:`~edgebnn.certify.encode.Problem`.

Both answer the same question, "is there an assignment satisfying every definition
and making some rival beat the label?", and return ``(status, true_vars)`` with
``status`` one of ``"sat"`` (a counterexample; ``true_vars`` the set of true
variables), ``"unsat"`` (none exists) or ``"timeout"``.

- ``"sat"``: every ``h <=> count(lits) >= k`` becomes a sequential counter
  (Sinz 2005) with full equivalence, built on the fly from AND/OR gates with
  constant folding; the output staircase is one clause per label count
  (``rival -> (count_y >= a -> count_c >= steps[a])``). Solved by Glucose 4 (python-sat;
  its CaDiCaL bindings cannot be interrupted, so they cannot honour a time limit).
- ``"minicard"`` / ``"gluecard4"``: python-sat's MiniSat / Glucose with native
  at-most constraints (Liffiton and Maglalang 2012), the kind of reasoning EEV's
  MiniSatCS adds (Jia and Rinard 2020). A reified ``h <=> count(lits) >= k`` is two
  native constraints whose indicator is a repeated literal (the solvers count
  duplicates): ``count(-lits) + k [h] <= n`` and ``count(lits) + (n - k + 1) [-h] <= n``.
  The label's count gets an order encoding ``g_a`` (``count_y >= a`` forces ``g_a``) and
  each rival a unary demand ``e_1 >= e_2 >= ...`` with ``count_c >= #e``, so the
  staircase is one clause per step. The rivals are decided one at a time, in the
  given order, by one incremental solver under the assumption "this rival beats the
  label": learnt clauses about the hidden layers carry over from rival to rival.
- ``"cpsat"``: OR-tools CP-SAT with enforced linear constraints (``h => count >= k``,
  ``not h => count <= k - 1``) and an element constraint for the staircase; one
  model with a disjunction over the rivals, one worker.
- ``"milp"``: every neuron is one binary column and two big-M rows with integer
  coefficients (``count >= k h`` and ``count <= k - 1 + (n - k + 1) h``), the label
  count gets a unary (ordered binary) expansion so the staircase is linear with
  integer coefficients. Every coefficient and bound is an integer, so HiGHS's
  feasibility tolerances (``1e-6`` on integrality and rows) cannot turn a
  non-solution into a solution: any row violated by an integer point is violated
  by at least 1.
"""

import contextlib
import functools
import os
import sys
import threading
import time

import numpy as np

STATUSES = ("sat", "unsat", "timeout")


# ----------------------------------------------------------------------------- SAT

class _Cnf:
    """Clauses with fresh variables and constant-folded gates (``True`` / ``False`` are constants)."""

    def __init__(self, num_vars):
        self.top = num_vars
        self.clauses = []

    def new(self):
        self.top += 1
        return self.top

    def and_(self, a, b):
        if a is False or b is False:
            return False
        if a is True:
            return b
        if b is True:
            return a
        v = self.new()
        self.clauses += [[-v, a], [-v, b], [v, -a, -b]]
        return v

    def or_(self, a, b):
        if a is True or b is True:
            return True
        if a is False:
            return b
        if b is False:
            return a
        v = self.new()
        self.clauses += [[v, -a], [v, -b], [-v, a, b]]
        return v

    def counter(self, lits, k_max, k_min=1):
        """Literals ``r[j] <=> count(lits) >= j`` for ``j = 0 .. k_max`` (entries below ``k_min`` may be None)."""
        n = len(lits)
        row = [True] + [False] * k_max  # counts over the first 0 literals
        for i, lit in enumerate(lits, start=1):
            new = [True] + [False] * k_max
            # only counts that can still reach k_min matter: j >= k_min - (n - i)
            for j in range(max(1, k_min - (n - i)), min(i, k_max) + 1):
                new[j] = self.or_(row[j], self.and_(row[j - 1], lit))
            row = new
        return row

    def atleast(self, lits, k):
        if k <= 0:
            return True
        if k > len(lits):
            return False
        return self.counter(lits, k, k_min=k)[k]

    def equal(self, var, value):
        if value is True:
            self.clauses.append([var])
        elif value is False:
            self.clauses.append([-var])
        else:
            self.clauses += [[-var, value], [var, -value]]


def sat_clauses(problem):
    """CNF clauses (and the number of variables) of ``problem``."""
    cnf = _Cnf(problem.num_vars)
    for _, chain in problem.chains:
        cnf.clauses += [[-b, a] for a, b in zip(chain, chain[1:])]
    for neuron in problem.neurons:
        cnf.equal(neuron.var, cnf.atleast(neuron.lits, neuron.k))
    label = cnf.counter(problem.label_lits, len(problem.label_lits))
    rivals = []
    for rival in problem.rivals:
        count = cnf.counter(rival.lits, len(rival.lits))
        beat = cnf.new()
        rivals.append(beat)
        for a, step in enumerate(rival.steps):
            need = count[step] if step <= len(rival.lits) else False
            if need is True or label[a] is False:
                continue
            clause = [-beat] + ([] if label[a] is True else [-label[a]]) + ([] if need is False else [need])
            cnf.clauses.append(clause)
    cnf.clauses.append(rivals)
    return cnf.clauses, cnf.top


def solve_sat(problem, *, time_limit, solver_name="glucose4"):
    """Decide ``problem`` with python-sat; ``time_limit`` seconds of solving (``None``: no limit).

    Building the CNF comes first and is not interrupted by the time limit.
    """
    from pysat.solvers import Solver  # noqa: PLC0415 (optional heavy import in worker processes)

    clauses, _ = sat_clauses(problem)
    with Solver(name=solver_name, bootstrap_with=clauses) as solver:
        timer = None
        if time_limit is not None:
            timer = threading.Timer(max(time_limit, 0.0), solver.interrupt)
            timer.start()
        try:
            answer = solver.solve_limited(expect_interrupt=True)
        finally:
            if timer is not None:
                timer.cancel()
        if answer is None:
            return "timeout", None
        if not answer:
            return "unsat", None
        return "sat", {v for v in solver.get_model() if v > 0}


# ------------------------------------------------------------ native cardinality SAT

def card_constraints(problem):
    """Clauses and native at-most constraints of ``problem``, with one "beats" literal per rival.

    Returns:
        ``(clauses, atmosts, beats, top)``: ``atmosts`` are ``(literals, bound)`` pairs
        (repeated literals count repeatedly), ``beats[i]`` is true only if rival ``i``
        beats the label, and ``top`` is the largest variable.
    """
    top = problem.num_vars
    clauses, atmosts = [], []

    def fresh(count):
        nonlocal top
        out = list(range(top + 1, top + 1 + count))
        top += count
        return out

    for _, chain in problem.chains:
        clauses += [[-b, a] for a, b in zip(chain, chain[1:])]
    for neuron in problem.neurons:
        lits, k, h = list(neuron.lits), neuron.k, neuron.var
        n = len(lits)
        if k <= 0:
            clauses.append([h])
        elif k > n:
            clauses.append([-h])
        else:
            atmosts.append(([-lit for lit in lits] + [h] * k, n))  # h -> count >= k
            atmosts.append((lits + [-h] * (n - k + 1), n))  # not h -> count <= k - 1
    n_y = len(problem.label_lits)
    g = fresh(n_y)  # g[a - 1]: forced true when count_y >= a
    clauses += [[-b, a] for a, b in zip(g, g[1:])]
    if n_y:
        atmosts.append((list(problem.label_lits) + [-v for v in g], n_y))  # count_y <= #g
    beats = []
    for rival in problem.rivals:
        [beat] = fresh(1)
        beats.append(beat)
        n_c = len(rival.lits)
        e = fresh(n_c)  # demand: count_c >= #e
        clauses += [[-b, a] for a, b in zip(e, e[1:])]
        if n_c:
            atmosts.append(([-lit for lit in rival.lits] + e, n_c))
        steps = [int(s) for s in rival.steps]
        for a, step in enumerate(steps):
            if a > 0 and step == steps[a - 1]:
                continue
            guard = [-beat] + ([] if a == 0 else [-g[a - 1]])
            if step > n_c:
                clauses.append(guard)
            elif step > 0:
                clauses.append(guard + [e[step - 1]])
    return clauses, atmosts, beats, top


def solve_card(problem, *, time_limit, solver_name="minicard"):
    """Decide ``problem`` with a python-sat solver that has native at-most constraints, one rival at a time.

    ``time_limit`` seconds (``None``: no limit) cover all rivals; an interrupted call
    ends the search with ``"timeout"``.
    """
    from pysat.solvers import Solver  # noqa: PLC0415 (optional heavy import in worker processes)

    start = time.perf_counter()
    clauses, atmosts, beats, _ = card_constraints(problem)
    with Solver(name=solver_name, bootstrap_with=clauses) as solver:
        if not solver.supports_atmost():
            raise ValueError(f"`solver_name` {solver_name!r} has no native at-most constraints.")
        for lits, bound in atmosts:
            solver.add_atmost(lits, bound)
        for beat in beats:
            timer = None
            if time_limit is not None:
                left = time_limit - (time.perf_counter() - start)
                if left <= 0:
                    return "timeout", None
                timer = threading.Timer(left, solver.interrupt)
                timer.start()
            try:
                answer = solver.solve_limited(assumptions=[beat], expect_interrupt=True)
            finally:
                if timer is not None:
                    timer.cancel()
            if answer is None:
                return "timeout", None
            if answer:
                return "sat", {v for v in solver.get_model() if 0 < v <= problem.num_vars}
    return "unsat", None


# ---------------------------------------------------------------------------- CP-SAT

def solve_cpsat(problem, *, time_limit, workers=1, seed=0):
    """Decide ``problem`` with OR-tools CP-SAT; ``time_limit`` seconds (``None``: no limit)."""
    from ortools.sat.python import cp_model  # noqa: PLC0415 (optional dependency)

    model = cp_model.CpModel()
    var = [None] + [model.NewBoolVar(f"v{i}") for i in range(1, problem.num_vars + 1)]

    def count(lits):
        """``count(lits)`` as a linear expression: negative literals count ``1 - v``."""
        negative = sum(1 for lit in lits if lit < 0)
        return sum(var[lit] for lit in lits if lit > 0) - sum(var[-lit] for lit in lits if lit < 0) + negative

    for _, chain in problem.chains:
        for a, b in zip(chain, chain[1:]):
            model.AddImplication(var[b], var[a])
    for neuron in problem.neurons:
        h, total = var[neuron.var], count(neuron.lits)
        model.Add(total >= neuron.k).OnlyEnforceIf(h)
        model.Add(total <= neuron.k - 1).OnlyEnforceIf(h.Not())
    n_y = len(problem.label_lits)
    count_y = model.NewIntVar(0, n_y, "count_y")
    model.Add(count_y == count(problem.label_lits))
    beats = []
    for rival in problem.rivals:
        n_c = len(rival.lits)
        steps = [min(int(s), n_c + 1) for s in rival.steps]
        need = model.NewIntVar(min(steps), max(steps), f"need_{rival.cls}")
        model.AddElement(count_y, steps, need)
        beat = model.NewBoolVar(f"beats_{rival.cls}")
        model.Add(count(rival.lits) >= need).OnlyEnforceIf(beat)
        beats.append(beat)
    model.AddBoolOr(beats)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = float(max(time_limit, 1e-3))
    status = solver.Solve(model)
    if status == cp_model.INFEASIBLE:
        return "unsat", None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return "sat", {i for i in range(1, problem.num_vars + 1) if solver.BooleanValue(var[i])}
    if status == cp_model.UNKNOWN:
        return "timeout", None
    raise RuntimeError(f"CP-SAT ended with status {solver.StatusName(status)!r}.")


# ---------------------------------------------------------------------------- MILP

class _Rows:
    """Sparse rows ``lower <= sum coef * var <= upper`` over 0-based columns."""

    def __init__(self):
        self.lower, self.upper, self.starts, self.index, self.value = [], [], [], [], []

    def add(self, terms, lower, upper):
        self.starts.append(len(self.index))
        for col, coef in terms.items():
            if coef:
                self.index.append(col)
                self.value.append(coef)
        self.lower.append(lower)
        self.upper.append(upper)


def _linear(lits):
    """``count(lits)`` as ``(constant, {column: coefficient})`` over 0-based columns."""
    const, terms = 0, {}
    for lit in lits:
        col = abs(lit) - 1
        if lit > 0:
            terms[col] = terms.get(col, 0) + 1
        else:
            const += 1
            terms[col] = terms.get(col, 0) - 1
    return const, terms


def milp_model(problem):
    """The HiGHS model (``highspy.HighsModel``) of ``problem``: binary columns, integer rows."""
    import highspy  # noqa: PLC0415

    inf = highspy.kHighsInf
    num_cols = problem.num_vars
    rows = _Rows()
    for _, chain in problem.chains:
        for a, b in zip(chain, chain[1:]):
            rows.add({b - 1: 1, a - 1: -1}, -inf, 0)  # u_{t+1} <= u_t
    for neuron in problem.neurons:
        const, terms = _linear(neuron.lits)
        n, k, h = len(neuron.lits), neuron.k, neuron.var - 1
        rows.add({**terms, h: terms.get(h, 0) - k}, -const, inf)  # count >= k h
        rows.add({**terms, h: terms.get(h, 0) - (n - k + 1)}, -inf, k - 1 - const)  # count <= k-1 + (n-k+1) h
    # unary expansion of the label count: e_a <=> count_y >= a
    const_y, terms_y = _linear(problem.label_lits)
    n_y = len(problem.label_lits)
    unary = list(range(num_cols, num_cols + n_y))
    num_cols += n_y
    rows.add({**terms_y, **{e: -1 for e in unary}}, -const_y, -const_y)
    for a, b in zip(unary, unary[1:]):
        rows.add({b: 1, a: -1}, -inf, 0)
    beats = []
    for rival in problem.rivals:
        const_c, terms_c = _linear(rival.lits)
        n_c = len(rival.lits)
        steps = np.minimum(rival.steps, n_c + 1).astype(int)
        beat, num_cols = num_cols, num_cols + 1
        beats.append(beat)
        big_m = n_c + 1
        # count_c >= steps[0] + sum_a (steps[a] - steps[a-1]) e_a - M (1 - beat)
        terms = dict(terms_c)
        for a, e in enumerate(unary, start=1):
            terms[e] = -int(steps[a] - steps[a - 1])
        terms[beat] = -big_m
        rows.add(terms, int(steps[0]) - big_m - const_c, inf)
    rows.add({b: 1 for b in beats}, 1, inf)

    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = num_cols, len(rows.lower)
    lp.col_cost_ = np.zeros(num_cols)
    lp.col_lower_, lp.col_upper_ = np.zeros(num_cols), np.ones(num_cols)
    lp.row_lower_, lp.row_upper_ = np.asarray(rows.lower, float), np.asarray(rows.upper, float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.asarray(rows.starts + [len(rows.index)], np.int32)
    lp.a_matrix_.index_ = np.asarray(rows.index, np.int32)
    lp.a_matrix_.value_ = np.asarray(rows.value, float)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * num_cols
    model = highspy.HighsModel()
    model.lp_ = lp
    return model


@contextlib.contextmanager
def _stdout_to_devnull():
    """Send what native code writes to standard output (file descriptor 1) to ``/dev/null`` in the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def solve_milp(problem, *, time_limit, threads=1, seed=0):
    """Decide ``problem`` with HiGHS's MILP solver; ``time_limit`` seconds (``None``: no limit)."""
    import highspy  # noqa: PLC0415

    with _stdout_to_devnull():  # HiGHS prints its banner as it is constructed, before any option is set
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("threads", threads)
    highs.setOptionValue("random_seed", seed)
    if time_limit is not None:
        highs.setOptionValue("time_limit", float(max(time_limit, 1e-3)))
    highs.passModel(milp_model(problem))
    highs.run()
    status = highs.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return "unsat", None
    if status == highspy.HighsModelStatus.kOptimal:
        values = np.asarray(highs.getSolution().col_value[: problem.num_vars])
        return "sat", {i + 1 for i in np.flatnonzero(values > 0.5)}
    if status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt):
        return "timeout", None
    raise RuntimeError(f"HiGHS ended with model status {highs.modelStatusToString(status)!r}.")


_REGISTRY = {
    "sat": solve_sat,
    "milp": solve_milp,
    "minicard": functools.partial(solve_card, solver_name="minicard"),
    "gluecard4": functools.partial(solve_card, solver_name="gluecard4"),
    "cpsat": solve_cpsat,
}
#: The package that implements each backend (its version goes into every answer).
_PACKAGES = {"sat": "python-sat", "milp": "highspy", "minicard": "python-sat", "gluecard4": "python-sat",
             "cpsat": "ortools"}
#: The solver inside the package.
_ENGINES = {"sat": "glucose4", "milp": "HiGHS MILP", "minicard": "minicard", "gluecard4": "gluecard4",
            "cpsat": "CP-SAT"}


def names():
    """Names of the solver backends."""
    return sorted(_REGISTRY)


@functools.cache
def version(name):
    """``"<package> <version> (<engine>)"`` of backend ``name``, e.g. ``"highspy 1.16.0 (HiGHS MILP)"``.

    An uninstalled optional package reads ``"<package> not installed"``.
    """
    from importlib import metadata  # noqa: PLC0415

    get(name)
    package = _PACKAGES[name]
    try:
        return f"{package} {metadata.version(package)} ({_ENGINES[name]})"
    except metadata.PackageNotFoundError:
        return f"{package} not installed"


def get(name):
    """The backend called ``name``; raises ``ValueError`` listing valid names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown solver {name!r}; valid names: {names()}.") from None

