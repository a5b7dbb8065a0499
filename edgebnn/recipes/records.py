"""Result records of a study, the data its reports, tables, figures and claims read.

A *record* is one cached result of one cell, flat: ``cell``, ``repeat``, ``evaluation``
(the kind: ``clean``, ``attacks``, ...), the evaluation's labels (``attack``, ``eps``,
...), its metrics and its store ``key``. Keys a record lacks are looked up in the
cell's resolved configuration (``model.precision``, ``train.adversarial.method``).

This module imports nothing of the package, so the report, the figures and the
claims can all read records without importing each other.
"""

import math


def lookup(record, key, configs):
    """Value of ``key`` for ``record``: its own field, else its cell's configuration.

    Args:
        record: one result record.
        key: a record key or a dotted configuration key.
        configs: ``{cell name: flat configuration}`` of the study's cells.
    """
    if key in record:
        return record[key]
    return configs.get(record["cell"], {}).get(key)


def same(a, b):
    """Whether record value ``a`` equals match value ``b`` (numbers within rounding)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def matches(record, where, configs):
    """Whether ``record`` has every ``key: value`` of ``where`` (:func:`same`, through :func:`lookup`)."""
    return all(same(lookup(record, k, configs), v) for k, v in where.items())


def could_match(cell, config, kind, where):
    """Whether records of evaluation ``kind`` in ``cell`` (flat ``config``) may satisfy ``where``, judged
    before anything runs: ``cell``, ``evaluation`` and configuration keys are decided, an evaluation's
    labels (``attack``, ``eps``, ...) are not known yet and do not exclude a record."""
    for key, value in where.items():
        if key == "cell":
            if cell != value:
                return False
        elif key == "evaluation":
            if kind != value:
                return False
        elif key in config and not same(config[key], value):
            return False
    return True
