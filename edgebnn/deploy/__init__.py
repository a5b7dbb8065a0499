"""Deployment: graph rewrites, conversion to TFLite, re-verification, bundles, and the TF-free device runner.

This package's ``__init__`` imports nothing heavy, so that ``edgebnn.deploy.device``
can run on a device that has only NumPy and a TFLite interpreter. Import the
submodules directly: ``edgebnn.deploy.convert`` (``convert``, ``float_reference``),
``edgebnn.deploy.rewrite`` (the pass registry and the pipeline of each target; the
passes of ``edgebnn.deploy.passes``, one module each), ``edgebnn.deploy.tflite_edit``
(editing a parsed flatbuffer: the toolkit of ``storage``, ``thresholds`` and ``packing``),
``edgebnn.deploy.latency`` (the timing harness), ``edgebnn.deploy.report``, ``edgebnn.deploy.verify``, ``edgebnn.deploy.bundle``,
``edgebnn.deploy.device`` (with ``edgebnn.deploy.isolation``, which runs its interpreter in a
capped child process), and ``edgebnn.deploy.tflite`` (TensorFlow-free facts about
the ``.tflite`` files: pixel scale, LCE op names).
"""
