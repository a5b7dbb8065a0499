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
- ``"milp"``: every neuron is one binary column and two big-M rows with integer
  coefficients (``count >= k h`` and ``count <= k - 1 + (n - k + 1) h``), the label
  count gets a unary (ordered binary) expansion so the staircase is linear with
  integer coefficients. Every coefficient and bound is an integer, so HiGHS's
  feasibility tolerances (``1e-6`` on integrality and rows) cannot turn a
  non-solution into a solution: any row violated by an integer point is violated
  by at least 1.
"""

import threading

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


def _lit(value):
    """A gate result as a clause literal, or None for a constant."""
    return None if isinstance(value, bool) else value


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


def solve_milp(problem, *, time_limit, threads=1, seed=0):
    """Decide ``problem`` with HiGHS's MILP solver; ``time_limit`` seconds (``None``: no limit)."""
    import highspy  # noqa: PLC0415

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


_REGISTRY = {"sat": solve_sat, "milp": solve_milp}


def names():
    """Names of the solver backends."""
    return sorted(_REGISTRY)


def get(name):
    """The backend called ``name``; raises ``ValueError`` listing valid names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown solver {name!r}; valid names: {names()}.") from None

