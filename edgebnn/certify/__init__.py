"""Exact robustness of discretized binary networks: certify or refute each example with a solver.

With ``k``-bit input discretization a pixel in an L-infinity ball reaches only a
few levels, every hidden neuron of a BNN is the sign of an integer sum (an integer
threshold after BatchNorm), and the prediction changes iff another class's logit
beats the label's. :func:`certify` turns that into cardinality constraints
(:mod:`.encode`) and decides them with HiGHS or a SAT solver (:mod:`.solvers`):
every example is ``robust`` (proved), ``not_robust`` with a counterexample that is
replayed through Keras (and through the deployed model its caller passes as
``deployed``: certification itself does not deploy), or ``unknown`` (time limit).
References: Narodytska et al. 2018, "Verifying properties of binarized deep neural
networks"; Jia and Rinard 2020, "Efficient exact verification of binarized neural
networks".

The TensorFlow-free parts (:mod:`.encode`, :mod:`.solvers`, :mod:`.exact`) are what
the solver worker processes import; the Keras-facing names below are loaded on
first use.

Example:
    >>> result = edgebnn.certify.certify(model, x, y, eps=0.1, time_limit=60)
    >>> report = edgebnn.certify.certify_report(model, x, y, eps_list=[0.05, 0.1])
    >>> print(edgebnn.certify.to_markdown(report))
"""

import importlib

from edgebnn.certify.encode import BinaryNet
from edgebnn.certify.exact import certify_example, certify_net

#: Keras-facing names and the submodules that define them (imported on first use: they load TensorFlow).
_LAZY = {
    "UnsupportedModelError": "network", "extract": "network", "real_thresholds": "network",
    "Certification": "run", "certify": "run", "replay": "run",
    "certify_report": "report", "to_markdown": "report",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgebnn.certify.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgebnn.certify' has no attribute {name!r}")


__all__ = ["BinaryNet", "certify_example", "certify_net", *_LAZY]
