"""Pass: fold XNOR-Net kernel scales out of the binary convolution.

An XNOR kernel (:class:`edgebnn.quantizers.XnorWeight` or Larq's
``magnitude_aware_sign``; XNOR-Net, Rastegari et al. 2016) is ``alpha_c * sign(W)``
with ``alpha_c`` the mean ``|W|`` of output channel ``c``. Since
``x * (alpha_c sign(W)) = alpha_c (x * sign(W))``, the layer becomes a ``ste_sign``
kernel followed by a per-channel multiplication by the constant ``alpha``
(:class:`~edgebnn.deploy.passes.layers.ChannelScale`, which LCE fuses into the binary
convolution's output transform) instead of a float convolution. A layer with a bias
is left as it is (the scale would have to come before the bias).

The other passes fold XNOR kernels the same way through
:func:`~edgebnn.deploy.passes.quant.binary_linear`; this pass handles the XNOR layers
none of them takes (for example a convolution on real-valued inputs).
"""

from edgebnn.deploy.passes.dense_to_conv import Column
from edgebnn.deploy.passes.graph import Pass, Plain, Rule
from edgebnn.deploy.passes.quant import binary_linear, is_quant_linear, is_xnor


def fold(layer, value, opts):
    """``Plain`` output of XNOR ``layer`` as a ``+-1`` kernel and a channel scale, or ``None``."""
    if not (opts.fold_xnor and is_quant_linear(layer) and is_xnor(layer.kernel_quantizer) and not layer.use_bias):
        return None
    return Plain(binary_linear(layer, value.plain(), conv=False))


#: The pass: XNOR layers no other pass takes; its presence also lets the other passes
#: take XNOR kernels as binary (``fold_xnor``).
PASS = Pass(rules=(Rule((Plain, Column), fold),), flags=("fold_xnor",))
