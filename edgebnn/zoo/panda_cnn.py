"""Panda et al.'s convolutional networks: CIFAR-10 AlexNet (and BinaryNet's VGG-style
ConvNet), CIFAR-100 ResNet-20 and ImageNet AlexNet, in float and in their quantized precision.

Reference: P. Panda, I. Chakraborty, K. Roy, "Discretization based solutions for
secure machine learning against adversarial attacks", IEEE Access 2019. The paper
names the topologies and cites their sources; the layer-by-layer definitions here
follow those sources:

- CIFAR-10 "AlexNet": the paper cites BinaryNet.pytorch (Hubara et al.) for it; that
  repository's ``alexnet_binary`` (``AlexNetOWT_BN``, widths inflated 3x) adapted to
  32x32 inputs, see :func:`alexnet_cifar10` for every adaptation.
- CIFAR-10 VGG-style ConvNet of Courbariaux et al. 2016 (BinaryNet), as in Larq's
  BinaryNet-on-CIFAR10 tutorial (:func:`binarynet_vgg_cifar10`):
  128C3-128C3-MP2-256C3-256C3-MP2-512C3-512C3-MP2-1024FC-1024FC-10, BatchNorm after
  every layer (first convolution unpadded).
- CIFAR-100: ResNet-20 of He et al. 2016 (Sec. 4.2: 16/32/64 filters, 3 basic blocks
  per stage, parameter-free "option A" shortcuts, 0.27M parameters).
- ImageNet: the XNOR-Net AlexNet of Rastegari et al. 2016, as in Larq Zoo's
  ``XNORNet`` (62,396,768 parameters); first and last layers stay float.

"float" versions are the same graphs with plain Keras layers and a ReLU where the
quantized version binarizes the next layer's input.
"""

from edgebnn._validate import positive_int
from edgebnn.layers import ZeroPadShortcut
from edgebnn.zoo.common import BATCH_NORM, conv, dense, layer_quantizers, model_input, model_name

import tensorflow as tf

ALEXNET_CIFAR10_PRECISIONS = ("float", "binary")
BINARYNET_VGG_PRECISIONS = ("float", "binary")
#: BinaryNet.pytorch ``alexnet_binary``: (filters before inflation, kernel, max-pool after),
#: the last convolution not inflated (256 filters), 3x3 max-pooling with stride 2.
BINARYNET_ALEXNET_CONVS = ((64, 5, True), (192, 5, True), (384, 3, False), (256, 3, False), (256, 3, True))
#: ``ratioInfl`` of ``alexnet_binary``: every convolution but the last is 3x wider than AlexNet's.
BINARYNET_ALEXNET_INFLATION = 3
BINARYNET_ALEXNET_FC = 4096
RESNET20_PRECISIONS = ("float", "xnor")
ALEXNET_IMAGENET_PRECISIONS = ("float", "xnor")

#: BinaryNet CIFAR-10 convolution widths (pairs, each pair followed by 2x2 max-pooling).
BINARYNET_CONV_FILTERS = (128, 128, 256, 256, 512, 512)
BINARYNET_DENSE_UNITS = (1024, 1024)
#: ResNet-20: filters of the three stages and basic blocks per stage (6n+2 layers, n=3).
RESNET20_STAGE_FILTERS = (16, 32, 64)
RESNET20_BLOCKS_PER_STAGE = 3
#: XNOR-Net AlexNet (Larq Zoo): (filters, kernel, padding, max-pool after).
XNOR_ALEXNET_CONVS = ((256, 5, "same", True), (384, 3, "same", False), (384, 3, "same", False),
                      (256, 3, "same", True))
XNOR_ALEXNET_FC = 4096
#: XNOR-Net BatchNorm settings (Larq Zoo): epsilon 1e-5 after the float stem, 1e-4 in the binary part.
XNOR_BN = dict(momentum=0.9, scale=False)
XNOR_STEM_BN_EPSILON = 1e-5
XNOR_BN_EPSILON = 1e-4


def _relu_if_float(x, precision, name):
    return tf.keras.layers.Activation("relu", name=name)(x) if precision == "float" else x


def alexnet_cifar10(
    *, precision="float", input_bits=None, num_classes=10, input_shape=(32, 32, 3), inflation=BINARYNET_ALEXNET_INFLATION,
    name=None,
):
    """Panda et al.'s CIFAR-10 AlexNet: BinaryNet.pytorch's ``alexnet_binary`` adapted to 32x32.

    The reference (``models/alexnet_binary.py``, ``AlexNetOWT_BN``) is, for 224x224
    ImageNet images: conv 64r@11x11/4 (pad 2) - MP3/2 - BN - Hardtanh - conv 192r@5x5 -
    MP3/2 - BN - Hardtanh - conv 384r@3x3 - BN - Hardtanh - conv 256r@3x3 - BN - Hardtanh -
    conv 256@3x3 - MP3/2 - BN - Hardtanh - FC 4096 - BN - Hardtanh - FC 4096 - BN -
    Hardtanh - FC classes - BN - LogSoftmax, with ``r = ratioInfl = 3``; every layer has
    binary (sign) weights and every layer but the first binary inputs (its
    ``BinarizeConv2d`` leaves 3-channel inputs real).

    Adaptations to 32x32 CIFAR-10 images, each forced by the input size or by Keras:

    1. First convolution 5x5, stride 1, "same" padding instead of 11x11, stride 4, pad 2:
       on 32x32 the original stem leaves a 7x7 map that the three 3x3/2 poolings cannot
       take (7 -> 3 -> 1 -> nothing). With it the maps are 32 -> 15 -> 7 -> 3.
    2. First classifier layer takes 256 x 3 x 3 inputs instead of 256 x 6 x 6.
    3. The final BatchNorm has ``num_classes`` channels (the reference hard-codes 1000)
       and its output are the logits (no LogSoftmax; losses take logits).
    4. No convolution / dense bias: each is followed by BatchNorm, which absorbs it.
    5. Hardtanh before a sign is dropped: Larq's straight-through sign already passes
       the gradient only where ``|x| <= 1``, which is what Hardtanh + sign did.
    6. BatchNorm has no scale (Larq's BNN convention; a positive scale does not change
       the sign after it) and momentum 0.9.
    7. ``"float"``: the same graph with plain layers, ReLU where the binary network
       binarizes, and a biased dense output without BatchNorm (as the reference's float
       ``alexnet.py``, whose widths are ``inflation=1``). No dropout in either: the binary
       reference has it commented out, and the paper compares "a similar architecture".

    Binary "same" convolutions pad with +1 (``pad_values=1``) so their inputs stay binary.

    Args:
        precision: ``"float"`` or ``"binary"``.
        input_bits, num_classes, name: the arguments every builder shares (:mod:`edgebnn.zoo`).
        input_shape: shape of one input image (32x32 for the map sizes above; at least 15x15).
        inflation: the reference's ``ratioInfl`` (3); 1 gives AlexNet's own widths.

    Returns:
        An uncompiled ``tf.keras.Model`` mapping ``[0, 1]`` pixels to logits.

    Raises:
        ValueError: for an unknown precision, bad ``input_bits`` / ``num_classes`` /
            ``input_shape`` or ``inflation`` not a positive int.
    """
    family = "panda_alexnet_cifar10"
    inputs, x = model_input(family, precision, ALEXNET_CIFAR10_PRECISIONS, input_bits=input_bits,
                            num_classes=num_classes, input_shape=input_shape)
    positive_int(inflation, "inflation", prefix=f"{family}: ")
    if min(input_shape[:2]) < 15:
        raise ValueError(f"{family}: `input_shape` must be at least 15x15 for three 3x3/2 poolings, "
                         f"got {input_shape!r}.")
    last = len(BINARYNET_ALEXNET_CONVS) - 1
    for i, (filters, kernel, pool) in enumerate(BINARYNET_ALEXNET_CONVS):
        first = i == 0
        width = filters if i == last else filters * inflation
        quant_kwargs = {"pad_values": 1.0} if precision == "binary" and not first else {}
        x = conv(width, kernel, quant=layer_quantizers(precision, first=first), padding="same", use_bias=False,
                 name=f"conv_{i}", **quant_kwargs)(x)
        if pool:
            x = tf.keras.layers.MaxPool2D(3, strides=2, name=f"pool_{i}")(x)
        x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_conv_{i}")(x)
        x = _relu_if_float(x, precision, f"relu_conv_{i}")
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i in range(2):
        x = dense(BINARYNET_ALEXNET_FC, quant=layer_quantizers(precision), use_bias=False, name=f"dense_{i}")(x)
        x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_dense_{i}")(x)
        x = _relu_if_float(x, precision, f"relu_dense_{i}")
    if precision == "float":
        logits = tf.keras.layers.Dense(num_classes, name="logits")(x)
    else:
        x = dense(num_classes, quant=layer_quantizers(precision), use_bias=False, name="dense_out")(x)
        logits = tf.keras.layers.BatchNormalization(**BATCH_NORM, name="logits")(x)
    return tf.keras.Model(inputs, logits, name=name or model_name(family, precision, input_bits))


def binarynet_vgg_cifar10(*, precision="float", input_bits=None, num_classes=10, input_shape=(32, 32, 3), name=None):
    """BinaryNet's VGG-style CIFAR-10 ConvNet (Courbariaux et al. 2016), ``"float"`` or ``"binary"``.

    ``binary``: every layer has sign/STE weights clipped to [-1, 1] and no bias, each
    followed by BatchNorm (after the max-pooling when there is one); every layer but
    the first binarizes its input. The output layer is binary too, followed by
    BatchNorm, whose output are the logits. Binary "same" convolutions pad with +1
    (``pad_values=1``) so their inputs stay binary, which LCE executes natively. ``float``: the same graph with plain
    layers and ReLU after each hidden BatchNorm.

    Args:
        precision: ``"float"`` or ``"binary"``.
        input_bits, num_classes, input_shape, name: the arguments every builder shares (:mod:`edgebnn.zoo`).

    Returns:
        An uncompiled ``tf.keras.Model`` mapping ``[0, 1]`` pixels to logits.
    """
    family = "binarynet_vgg_cifar10"
    inputs, x = model_input(family, precision, BINARYNET_VGG_PRECISIONS, input_bits=input_bits, num_classes=num_classes,
                            input_shape=input_shape)
    for i, filters in enumerate(BINARYNET_CONV_FILTERS):
        first = i == 0
        quant_kwargs = {"pad_values": 1.0} if precision == "binary" and not first else {}
        x = conv(filters, 3, quant=layer_quantizers(precision, first=first), padding="valid" if first else "same",
                 use_bias=False, name=f"conv_{i}", **quant_kwargs)(x)
        if i % 2:
            x = tf.keras.layers.MaxPool2D(2, name=f"pool_{i}")(x)
        x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_conv_{i}")(x)
        x = _relu_if_float(x, precision, f"relu_conv_{i}")
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(BINARYNET_DENSE_UNITS):
        x = dense(units, quant=layer_quantizers(precision), use_bias=False, name=f"dense_{i}")(x)
        x = tf.keras.layers.BatchNormalization(**BATCH_NORM, name=f"bn_dense_{i}")(x)
        x = _relu_if_float(x, precision, f"relu_dense_{i}")
    x = dense(num_classes, quant=layer_quantizers(precision), use_bias=False, name="dense_out")(x)
    logits = tf.keras.layers.BatchNormalization(**BATCH_NORM, name="logits")(x)
    return tf.keras.Model(inputs, logits, name=name or model_name(family, precision, input_bits))


def _basic_block(x, filters, strides, precision, name):
    """ResNet basic block. ``xnor``: BN -> add without ReLU; the next sign binarizes."""
    shortcut = x if strides == 1 and x.shape[-1] == filters else ZeroPadShortcut(
        filters, strides, name=f"{name}_shortcut")(x)
    quant_kwargs = {} if precision == "float" else {"pad_values": 1.0}  # +-1 padding keeps inputs binary
    y = conv(filters, 3, quant=layer_quantizers(precision), strides=strides, padding="same", use_bias=False,
             name=f"{name}_conv_a", **quant_kwargs)(x)
    y = tf.keras.layers.BatchNormalization(name=f"{name}_bn_a")(y)
    y = _relu_if_float(y, precision, f"{name}_relu_a")
    y = conv(filters, 3, quant=layer_quantizers(precision), padding="same", use_bias=False,
             name=f"{name}_conv_b", **quant_kwargs)(y)
    y = tf.keras.layers.BatchNormalization(name=f"{name}_bn_b")(y)
    y = tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return _relu_if_float(y, precision, f"{name}_relu_out")


def resnet20_cifar100(*, precision="float", input_bits=None, num_classes=100, input_shape=(32, 32, 3), name=None):
    """ResNet-20 (He et al. 2016), ``"float"`` or ``"xnor"``, for CIFAR-100.

    ``xnor``: every convolution inside the residual blocks is an XNOR convolution
    (binary inputs, Larq ``MagnitudeAwareSign`` kernels, padded with +1
    so its inputs stay binary); the stem convolution and the classifier stay float,
    as in XNOR-Net. ``float``: the original ResNet-20 (Conv-BN-ReLU, option-A
    shortcuts, global average pooling, dense classifier).

    Args:
        precision: ``"float"`` or ``"xnor"``.
        input_bits, num_classes, input_shape, name: the arguments every builder shares (:mod:`edgebnn.zoo`).

    Returns:
        An uncompiled ``tf.keras.Model`` mapping ``[0, 1]`` pixels to logits.
    """
    family = "panda_resnet20_cifar100"
    inputs, x = model_input(family, precision, RESNET20_PRECISIONS, input_bits=input_bits, num_classes=num_classes,
                            input_shape=input_shape)
    x = tf.keras.layers.Conv2D(RESNET20_STAGE_FILTERS[0], 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    x = tf.keras.layers.Activation("relu", name="stem_relu")(x)
    for stage, filters in enumerate(RESNET20_STAGE_FILTERS):
        for block in range(RESNET20_BLOCKS_PER_STAGE):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, strides, precision, f"stage{stage}_block{block}")
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = tf.keras.layers.Dense(num_classes, name="logits")(x)
    return tf.keras.Model(inputs, logits, name=name or model_name(family, precision, input_bits))


def alexnet_imagenet(*, precision="float", input_bits=None, num_classes=1000, input_shape=(224, 224, 3), name=None):
    """The XNOR-Net AlexNet for ImageNet (Rastegari et al. 2016; Larq Zoo layout).

    Conv 96@11x11/4 (float) - pool - [256@5x5 - pool - 384@3x3 - 384@3x3 - 256@3x3 -
    pool - 4096@6x6 - 4096@1x1] (XNOR) - ReLU - dense (float), BatchNorm before every
    binarized input. ``float`` uses plain layers and ReLUs in place of the binarization.
    About 62.4M parameters: defined and shape-tested only (no ImageNet data here).

    Args:
        precision: ``"float"`` or ``"xnor"``.
        input_bits, num_classes, name: the arguments every builder shares (:mod:`edgebnn.zoo`).
        input_shape: shape of one input image (224x224x3 gives a 1x1 map before the classifier).

    Returns:
        An uncompiled ``tf.keras.Model`` mapping ``[0, 1]`` pixels to logits.
    """
    family = "panda_alexnet_imagenet"
    inputs, x = model_input(family, precision, ALEXNET_IMAGENET_PRECISIONS, input_bits=input_bits,
                            num_classes=num_classes, input_shape=input_shape)
    bn = dict(XNOR_BN, epsilon=XNOR_BN_EPSILON)
    x = tf.keras.layers.Conv2D(96, 11, strides=4, padding="same", use_bias=False, name="conv_0")(x)
    x = tf.keras.layers.BatchNormalization(**XNOR_BN, epsilon=XNOR_STEM_BN_EPSILON, name="bn_conv_0")(x)
    x = tf.keras.layers.Activation("relu", name="relu_conv_0")(x)
    x = tf.keras.layers.MaxPool2D(3, strides=2, name="pool_0")(x)
    x = tf.keras.layers.BatchNormalization(**bn, name="bn_pool_0")(x)
    layers = [*XNOR_ALEXNET_CONVS, (XNOR_ALEXNET_FC, 6, "valid", False), (XNOR_ALEXNET_FC, 1, "valid", False)]
    for i, (filters, kernel, padding, pool) in enumerate(layers, start=1):
        x = _relu_if_float(x, precision, f"relu_in_{i}")
        quant_kwargs = {"pad_values": 1.0} if precision != "float" and padding == "same" else {}
        x = conv(filters, kernel, quant=layer_quantizers(precision), padding=padding, use_bias=False,
                 name=f"conv_{i}", **quant_kwargs)(x)
        if pool:
            x = tf.keras.layers.MaxPool2D(3, strides=2, name=f"pool_{i}")(x)
        x = tf.keras.layers.BatchNormalization(**bn, name=f"bn_conv_{i}")(x)
    x = tf.keras.layers.Activation("relu", name="relu_out")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    logits = tf.keras.layers.Dense(num_classes, use_bias=False, name="logits")(x)
    return tf.keras.Model(inputs, logits, name=name or model_name(family, precision, input_bits))
