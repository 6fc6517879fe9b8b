"""Non-causal dilated 1-D convolution by time-to-batch.

A dilated convolution with dilation ``d`` over ``[batch, time, channels]`` is an
ordinary (dilation 1) convolution over ``d`` interleaved sub-sequences: sample
``t`` belongs to phase ``t mod d``. ``time_to_batch`` moves the phases into the
batch axis, a dense convolution runs on them, and ``batch_to_time`` interleaves
the results back. "Same" padding of ``d * (k - 1) / 2`` on each side keeps the
output centred on its input (no time shift) at any length; lengths not divisible
by ``d`` are padded on the right and cropped again.

The ``native`` mode (``tf.nn.conv1d`` with ``dilations=d``) is kept only to
compare the two.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfwaveglow.layers.kernel import KernelMixin, torch_default_initializer

MODES = ("time_to_batch", "native")


def time_to_batch(x: tf.Tensor, dilation: int) -> tf.Tensor:
    """Splits time into ``dilation`` phases stacked on the batch axis.

    Args:
      x: ``[batch, time, channels]`` with ``time % dilation == 0``.
      dilation: the number of phases.

    Returns:
      ``[dilation * batch, time // dilation, channels]``; row ``p * batch + b``
      holds ``x[b, p::dilation]``.
    """
    if dilation == 1:
        return x
    shape = tf.shape(x)
    batch, time = shape[0], shape[1]
    channels = x.shape[-1] if x.shape[-1] is not None else shape[2]
    x = tf.reshape(x, [batch, time // dilation, dilation, channels])
    x = tf.transpose(x, [2, 0, 1, 3])
    return tf.reshape(x, [dilation * batch, time // dilation, channels])


def batch_to_time(x: tf.Tensor, dilation: int) -> tf.Tensor:
    """Inverse of :func:`time_to_batch`.

    Args:
      x: ``[dilation * batch, steps, channels]``.

    Returns:
      ``[batch, steps * dilation, channels]``.
    """
    if dilation == 1:
        return x
    shape = tf.shape(x)
    batch, steps = shape[0] // dilation, shape[1]
    channels = x.shape[-1] if x.shape[-1] is not None else shape[2]
    x = tf.reshape(x, [dilation, batch, steps, channels])
    x = tf.transpose(x, [1, 2, 0, 3])
    return tf.reshape(x, [batch, steps * dilation, channels])


def dilated_conv1d(x: tf.Tensor, kernel: tf.Tensor, dilation: int, mode: str = "time_to_batch") -> tf.Tensor:
    """Centred ("same") dilated convolution, no bias.

    Args:
      x: ``[batch, time, in_channels]``, any ``time >= 1``.
      kernel: ``[kernel_size, in_channels, out_channels]``, odd kernel_size.
      dilation: dilation rate >= 1.
      mode: ``time_to_batch`` (default) or ``native``.

    Returns:
      ``[batch, time, out_channels]``; output ``t`` sees inputs
      ``t + dilation * (j - (kernel_size - 1) / 2)`` for tap ``j``.
    """
    kernel = tf.cast(kernel, x.dtype)
    if mode == "native":
        return tf.nn.conv1d(x, kernel, stride=1, padding="SAME", dilations=dilation)
    if mode != "time_to_batch":
        raise ValueError(f"unknown dilated conv mode {mode!r}; expected one of {MODES}")
    kernel_size = kernel.shape[0]
    half = dilation * (kernel_size - 1) // 2
    time = tf.shape(x)[1]
    extra = (-time) % dilation  # right padding so the padded length splits into phases
    x = tf.pad(x, [[0, 0], [half, half + extra], [0, 0]])
    y = time_to_batch(x, dilation)
    y = tf.nn.conv1d(y, kernel, stride=1, padding="VALID")
    y = batch_to_time(y, dilation)
    return y[:, :time, :]


@keras.saving.register_keras_serializable(package="tfwaveglow")
class DilatedConv1D(KernelMixin, keras.layers.Layer):
    """Dilated non-causal Conv1d with "same" length output and a bias.

    Args:
      in_channels: input channels.
      out_channels: output channels.
      kernel_size: odd number of taps.
      dilation_rate: spacing between taps.
      mode: ``time_to_batch`` (hand-rolled, default) or ``native``.
      weight_norm: hold the kernel as ``g * v / ||v||``.

    Shapes: ``[batch, time, in_channels] -> [batch, time, out_channels]``.
    Kernel layout ``[kernel_size, in_channels, out_channels]`` (PyTorch's
    ``weight.permute(2, 1, 0)``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation_rate: int = 1,
        mode: str = "time_to_batch",
        weight_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for centred padding, got {kernel_size}")
        if mode not in MODES:
            raise ValueError(f"unknown dilated conv mode {mode!r}; expected one of {MODES}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = int(kernel_size)
        self.dilation_rate = int(dilation_rate)
        self.mode = mode
        self.weight_norm = bool(weight_norm)

    def build(self, input_shape=None):
        fan_in = self.in_channels * self.kernel_size
        self._add_kernel_and_bias(
            (self.kernel_size, self.in_channels, self.out_channels),
            torch_default_initializer(fan_in),
            torch_default_initializer(fan_in),
            self.weight_norm,
        )
        self.built = True

    def call(self, x):
        y = dilated_conv1d(x, self.effective_kernel(), self.dilation_rate, self.mode)
        return y + tf.cast(self.bias, y.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            dilation_rate=self.dilation_rate,
            mode=self.mode,
            weight_norm=self.weight_norm,
        )
        return config
