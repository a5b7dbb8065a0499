"""edgebnn's benchmarks: every figure a ratio of two paths measured in one process.

``python -m benchmarks`` runs them all and writes ``BENCHMARKS.md`` (``--quick`` for a
smoke test on tiny sizes). Each module has ``run(*, quick) -> Result``; the modules are
listed in :data:`benchmarks.__main__.BENCHMARKS`.
"""
