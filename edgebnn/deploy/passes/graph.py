"""The one graph walker of the deploy passes, and the plain value it carries.

:func:`walk` visits the layers of a functional Keras model in topological order and
asks a ``rewrite_layer`` callback for each single-input layer's replacement. A tensor of
the new graph travels as a *value*: an object with a ``tensor`` and a ``plain()``
method that returns the original tensor's value in the new graph. :class:`Plain` is
the ordinary case; passes define the others (a dense layer's output carried as a 4-D
column in :mod:`~edgebnn.deploy.passes.dense_to_conv`, bit planes and per-plane
outputs in :mod:`~edgebnn.deploy.passes.bit_planes`), made concrete only when a layer
that no pass handles needs them. Layers with several inputs or keyword arguments are
copied onto plain values. Each call of a layer is copied on its own, so a layer shared
by several calls is not supported (Keras refuses the repeated layer name).

A pass (:class:`Pass`) is a tuple of :class:`Rule` objects, each a function
``rule(layer, value, ctx) -> value or None`` and the kinds of value it takes;
:func:`edgebnn.deploy.rewrite.rewrite` tries the rules of its ordered passes on every
layer (:class:`Context` tells them which passes run and what they prepared).

The walk reads Keras 2's functional-graph records (``_nodes_by_depth``,
``_tensor_usage_count``, node ``flat_input_ids``), the same ones
``tf.keras.models.clone_model`` uses.
"""

import dataclasses
from typing import Callable

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Plain:
    """A tensor of the new graph equal to the original tensor."""

    tensor: object

    def plain(self):
        return self.tensor


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rewrite of a pass: ``fn(layer, value, ctx)`` returns the new value, or ``None`` to decline.

    Attributes:
        takes: the value classes ``fn`` acts on (other values skip it).
        fn: the rewrite.
        single_use: tried only when ``layer`` is the only consumer of its input.
    """

    takes: tuple
    fn: Callable
    single_use: bool = False


@dataclasses.dataclass(frozen=True)
class Pass:
    """A deploy graph pass: its rules, in order, and what it tells the other passes.

    Attributes:
        rules: the :class:`Rule` objects tried on each layer.
        flags: facts the pass's presence sets on :class:`Context` (``"fold_xnor"``:
            XNOR kernels count as binary for every pass; ``"dense_to_conv"``: dense
            layers may become 1x1 convolutions; ``"bit_planes"``: discretized inputs may
            become bit planes).
        prepare: ``None`` or ``prepare(model)``, run once on the original model; its
            result is ``ctx.state[the pass]``.
        exact: the rewritten model computes bit for bit what the original does (a pass
            that is exact only up to rounding ties is opt-in).
    """

    rules: tuple
    flags: tuple = ()
    prepare: Callable | None = None
    exact: bool = True


@dataclasses.dataclass(frozen=True)
class Context:
    """What the rules of one rewrite know besides the layer and its value.

    Attributes:
        passes: names of the passes that run, in order.
        fold_xnor, dense_to_conv: whether a running pass has that flag (:attr:`Pass.flags`).
        bit_planes: ``False`` when no running pass has the ``"bit_planes"`` flag, else
            ``True`` (every eligible first layer on bit planes) or ``"auto"`` (only where
            Larq Compute Engine gains from it).
        state: :class:`Pass` -> what its :attr:`Pass.prepare` returned.
    """

    passes: tuple
    fold_xnor: bool = False
    dense_to_conv: bool = False
    bit_planes: object = False
    state: dict = dataclasses.field(default_factory=dict)


def copy_layer(layer, name=None, **overrides):
    """A fresh layer of the same class and config (weights copied after building)."""
    if isinstance(layer, tf.keras.Model):
        return tf.keras.models.clone_model(layer)
    config = {**layer.get_config(), **overrides}
    if name is not None:
        config["name"] = name
    return layer.__class__.from_config(config)


def call_copy(layer, tensor, **overrides):
    """Call a copy of ``layer`` (config ``overrides`` applied) on ``tensor``, with ``layer``'s weights."""
    new = copy_layer(layer, **overrides)
    out = new(tensor)
    new.set_weights(layer.get_weights())
    return out


def walk(model, rewrite_layer, *, name):
    """A new functional model: ``model`` with every layer replaced by ``rewrite_layer``'s choice.

    Args:
        model: a built functional or Sequential ``tf.keras.Model``.
        rewrite_layer: ``(layer, value, *, single_use) -> value`` for a layer called on
            one positional tensor; ``single_use`` is true when ``layer`` is the only
            consumer of that tensor.
        name: the new model's name.

    Returns:
        A ``tf.keras.Model`` with the same inputs and outputs.
    """
    inputs = [tf.keras.Input(type_spec=t.type_spec, name=t.name.split(":")[0]) for t in model.inputs]
    usage = model._tensor_usage_count
    values = {str(id(ref)): Plain(new) for ref, new in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer, ids = node.layer, node.flat_input_ids
            if node._single_positional_tensor_passed and not node.call_kwargs:
                out = rewrite_layer(layer, values[ids[0]], single_use=usage[ids[0]] == 1)
            else:
                plain = {i: [values[i].plain()] * usage[i] for i in ids}
                args, kwargs = node.map_arguments(plain)
                new = copy_layer(layer)
                out = Plain(new(*args, **kwargs))
                new.set_weights(layer.get_weights())
            outputs = [Plain(t) for t in tf.nest.flatten(out.tensor)] if isinstance(out, Plain) else [out]
            values.update(zip(node.flat_output_ids, outputs))
    outputs = [values[str(id(t))].plain() for t in model.outputs]
    return tf.keras.Model(inputs, tf.nest.pack_sequence_as(model._nested_outputs, outputs), name=name)
