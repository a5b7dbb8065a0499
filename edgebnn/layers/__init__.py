"""Serializable Keras layers of edgebnn: thin wrappers over :mod:`edgebnn.ops`."""

from edgebnn.layers.discretization import InputDiscretization

__all__ = ["InputDiscretization"]
