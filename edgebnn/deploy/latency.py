"""Latency of deployed models: the one timing harness of the deploy scripts and benchmarks.

Timed paths run interleaved, round by round (:func:`interleaved`), so that load from
other processes hits every path alike; a model's latency is the mean milliseconds per
image of a ``predict`` over a batch of images run one at a time, median over the rounds,
after a warm-up (:func:`latency_ms`).
"""

import time

import numpy as np

#: Images predicted once before timing (first-call allocation and delegate set-up).
WARMUP_IMAGES = 10


def interleaved(paths, repeats):
    """``{name: [seconds, ...]}``: every path of ``{name: fn}`` timed ``repeats`` times,
    round by round, so that load from other processes hits every path alike (warm up first)."""
    seconds = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def latency_ms(runners, x, repeats):
    """``{name: median ms per image}`` of every runner's ``predict(x)``, interleaved round by round.

    Args:
        runners: ``{name: runner}``, each with ``predict(x)`` (e.g.
            :func:`edgebnn.deploy.verify.interpreter`).
        x: the images, run once each per round.
        repeats: timed rounds (after a warm-up on :data:`WARMUP_IMAGES` images).
    """
    for runner in runners.values():
        runner.predict(x[:WARMUP_IMAGES])
    seconds = interleaved({name: (lambda r=r: r.predict(x)) for name, r in runners.items()}, repeats)
    return {name: 1000.0 * float(np.median(s)) / len(x) for name, s in seconds.items()}
