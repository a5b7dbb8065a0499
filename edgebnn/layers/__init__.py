"""Serializable Keras layers of edgebnn: thin wrappers over :mod:`edgebnn.ops`."""

from edgebnn.layers.discretization import InputDiscretization
from edgebnn.layers.dropout import MCDropout
from edgebnn.layers.scale import LearnedScale
from edgebnn.layers.shortcut import ZeroPadShortcut

__all__ = ["InputDiscretization", "LearnedScale", "MCDropout", "ZeroPadShortcut"]
