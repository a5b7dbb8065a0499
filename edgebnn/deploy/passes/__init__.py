"""The graph rewrites of :func:`edgebnn.deploy.rewrite.rewrite`, one pass per module.

Each module ends with its ``PASS`` (:class:`~.graph.Pass`); :data:`edgebnn.deploy.rewrite.PASSES`
names them and :data:`edgebnn.deploy.rewrite.PIPELINES` orders them per target.

- :mod:`.dense_to_conv`: binary dense layers as 1x1 binary convolutions.
- :mod:`.bit_planes`: the first binary layer on a discretized input, on its bit planes.
- :mod:`.packed_planes`: the same for few-channel convolutions, planes on the channel axis.
- :mod:`.sign_threshold`: ReLU -> BatchNorm -> sign chains as one per-channel threshold.
- :mod:`.xnor_fold`: XNOR-Net kernel scales out of the binary convolution.

They share :mod:`.graph` (the one graph walker), :mod:`.layers` (the Keras layers the
passes introduce) and :mod:`.quant` (what a quantized layer computes).
"""
