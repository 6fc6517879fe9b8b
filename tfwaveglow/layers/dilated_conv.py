"""Non-causal dilated 1-D convolution, computed without conv's own dilation.

Output ``t`` of a kernel-size-``k`` convolution with dilation ``d`` reads inputs
``t + d * (j - (k - 1) / 2)``, ``j = 0 .. k - 1``, zero outside the sequence
("same" padding, output centred on its input at any length). Three hand-rolled
forms compute it:

``time_to_batch`` (default)
  Sample ``t`` belongs to phase ``t mod d``; the phases move into the batch axis,
  a dense (dilation 1) "same" convolution runs on each phase (zero beyond the
  phase's ends is zero outside the sequence) and ``batch_to_time`` interleaves the
  results back. Only lengths not divisible by ``d`` are padded on the right (and
  cropped again).
``shifted_matmul``
  The zero-padded input shifted by each tap's offset, concatenated on the
  channel axis (``[batch, time, k * in]``), times the kernel reshaped to
  ``[k * in, out]``: one large matrix product per layer, no transposes. It was
  the fastest form on CPU for WaveGlow's sizes (``benchmarks/dilated_conv.py``,
  ``docs/benchmarks.md``); select it with ``model.wn.dilated_conv: shifted_matmul``.
``phase_conv2d``
  The padded sequence reshaped (no transpose) to ``[batch, time / d, d, in]``: the
  taps of output ``t`` are its neighbours along the first spatial axis, so an
  undilated ``(k, 1)`` conv2d computes the dilated conv.

The ``native`` mode (``tf.nn.conv1d`` with ``dilations=d``) is kept to compare.

:func:`dilated_depthwise_conv1d` is the depthwise form (one ``k``-tap filter per
channel, no channel mixing) of a depthwise-separable WN layer: under
``time_to_batch`` the phases go to the batch axis and an undilated depthwise
convolution runs on them; every other mode sums the ``k`` shifted copies,
each times its tap.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from tfwaveglow.layers.kernel import KernelMixin, torch_default_initializer
from tfwaveglow.layers.pointwise import pointwise

MODES = ("shifted_matmul", "time_to_batch", "phase_conv2d", "native")
DEFAULT_MODE = "time_to_batch"


@functools.cache
def native_dilation_gradient_error() -> str | None:
    """Why this machine's TensorFlow cannot differentiate conv1d's own dilation, or None.

    Where oneDNN is off (TensorFlow's Eigen kernels, e.g. on CPUs without AVX-512)
    a dilated ``tf.nn.conv1d`` runs forward but its input gradient is refused for
    dilation > 1. A tiny probe answers once per process.
    """
    x = tf.zeros([1, 8, 1])
    try:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv1d(x, tf.zeros([3, 1, 1]), stride=1, padding="SAME", dilations=2)
        tape.gradient(y, x).numpy()
    except tf.errors.InvalidArgumentError as e:
        return str(e.message).strip().splitlines()[0]
    return None


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


def _shifted_columns(x, kernel_size: int, dilation: int):
    """``[B, T, C] -> [B, T, k * C]``: tap ``j`` holds ``x[t + d * (j - centre)]`` (zero outside)."""
    time = tf.shape(x)[1]
    half = dilation * (kernel_size - 1) // 2
    padded = tf.pad(x, [[0, 0], [half, half], [0, 0]])
    centre = (kernel_size - 1) // 2
    taps = [x if j == centre else padded[:, dilation * j : dilation * j + time, :] for j in range(kernel_size)]
    return taps[0] if kernel_size == 1 else tf.concat(taps, axis=-1)


def _shifted_matmul(x, kernel, dilation):
    kernel_size, in_channels, out_channels = kernel.shape
    flat_kernel = tf.reshape(kernel, [kernel_size * in_channels, out_channels])

    @tf.custom_gradient
    def conv(x, flat_kernel):
        columns = _shifted_columns(x, kernel_size, dilation)
        y = pointwise(columns, flat_kernel)

        def grad(dy):
            # The kernel's gradient is columns^T dy; the input's gathers each tap's share of
            # dy K^T back to the step it came from (one pad and k slices, no k padded copies).
            flat_dy = tf.reshape(dy, [-1, out_channels])
            d_kernel = tf.linalg.matmul(tf.reshape(columns, [-1, kernel_size * in_channels]), flat_dy, transpose_a=True)
            d_columns = pointwise(dy, tf.transpose(flat_kernel))
            time = tf.shape(x)[1]
            half = dilation * (kernel_size - 1) // 2
            centre = (kernel_size - 1) // 2
            padded = tf.pad(d_columns, [[0, 0], [half, half], [0, 0]])
            shares = [
                padded[
                    :,
                    half - dilation * (j - centre) : half - dilation * (j - centre) + time,
                    j * in_channels : (j + 1) * in_channels,
                ]
                for j in range(kernel_size)
            ]
            return tf.add_n(shares), d_kernel

        return y, grad

    return conv(x, flat_kernel)


def _crop_time(x, time):
    """``x[:, :time]`` whose gradient pads ``dy`` with zeros (one pad, no zero-filled slice gradient).

    Args:
      x: ``[batch, longer, channels]``.
      time: the kept length.

    Returns:
      ``[batch, time, channels]``.
    """

    @tf.custom_gradient
    def crop(x):
        longer = tf.shape(x)[1]

        def grad(dy):
            return tf.pad(dy, [[0, 0], [0, longer - time], [0, 0]])

        return x[:, :time, :], grad

    return crop(x)


def _time_to_batch_conv(x, kernel, dilation):
    # Each phase t = p, p + d, ... is an undilated sequence: an undilated "same" conv on it,
    # zero beyond its ends, is the dilated "same" conv with zeros outside [0, time). Only
    # lengths that do not split into d phases need zeros on the right (and a crop after).
    time = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    extra = (-time) % dilation
    needs_padding = not isinstance(extra, int) or extra > 0
    if needs_padding:
        x = tf.pad(x, [[0, 0], [0, extra], [0, 0]])
    y = time_to_batch(x, dilation)
    # oneDNN pads each phase inside the conv: no padded copy, no slice (or slice gradient) around it.
    y = tf.nn.conv1d(y, kernel, stride=1, padding="SAME")
    y = batch_to_time(y, dilation)
    return _crop_time(y, time) if needs_padding else y


def _phase_conv2d(x, kernel, dilation):
    kernel_size, in_channels, out_channels = kernel.shape
    shape = tf.shape(x)
    batch, time = shape[0], shape[1]
    extra = (-time) % dilation  # zeros on the right: the same as "same" padding beyond the end
    x = tf.pad(x, [[0, 0], [0, extra], [0, 0]])
    # [B, T', C] -> [B, T' / d, d, C]: x[b, h, w] is sample h * d + w, its taps are rows h +- 1.
    x = tf.reshape(x, [batch, (time + extra) // dilation, dilation, in_channels])
    y = tf.nn.conv2d(x, tf.reshape(kernel, [kernel_size, 1, in_channels, out_channels]), 1, "SAME")
    return tf.reshape(y, [batch, time + extra, out_channels])[:, :time, :]


def dilated_conv1d(x: tf.Tensor, kernel: tf.Tensor, dilation: int, mode: str = DEFAULT_MODE) -> tf.Tensor:
    """Centred ("same") dilated convolution, no bias.

    Args:
      x: ``[batch, time, in_channels]``, any ``time >= 1``.
      kernel: ``[kernel_size, in_channels, out_channels]``, odd kernel_size.
      dilation: dilation rate >= 1.
      mode: one of :data:`MODES` (see the module docstring).

    Returns:
      ``[batch, time, out_channels]``; output ``t`` sees inputs
      ``t + dilation * (j - (kernel_size - 1) / 2)`` for tap ``j``.
    """
    kernel = tf.cast(kernel, x.dtype)
    if mode == "shifted_matmul":
        return _shifted_matmul(x, kernel, dilation)
    if mode == "time_to_batch":
        return _time_to_batch_conv(x, kernel, dilation)
    if mode == "phase_conv2d":
        return _phase_conv2d(x, kernel, dilation)
    if mode == "native":
        return tf.nn.conv1d(x, kernel, stride=1, padding="SAME", dilations=dilation)
    raise ValueError(f"unknown dilated conv mode {mode!r}; expected one of {MODES}")


def _time_to_batch_depthwise(x, kernel, dilation):
    time = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    extra = (-time) % dilation
    needs_padding = not isinstance(extra, int) or extra > 0
    if needs_padding:
        x = tf.pad(x, [[0, 0], [0, extra], [0, 0]])
    y = time_to_batch(x, dilation)
    # [B', T', C] as a one-row image; the filter [1, k, C, 1] is undilated (dilation is in the phases).
    y = tf.nn.depthwise_conv2d(y[:, None], kernel[None, :, :, None], strides=[1, 1, 1, 1], padding="SAME")[:, 0]
    y = batch_to_time(y, dilation)
    return _crop_time(y, time) if needs_padding else y


def _shifted_depthwise(x, kernel, dilation):
    kernel_size = kernel.shape[0]
    time = tf.shape(x)[1]
    half = dilation * (kernel_size - 1) // 2
    padded = tf.pad(x, [[0, 0], [half, half], [0, 0]])
    return tf.add_n([padded[:, dilation * j : dilation * j + time, :] * kernel[j] for j in range(kernel_size)])


def dilated_depthwise_conv1d(x: tf.Tensor, kernel: tf.Tensor, dilation: int, mode: str = DEFAULT_MODE) -> tf.Tensor:
    """Centred ("same") dilated depthwise convolution, no bias.

    Args:
      x: ``[batch, time, channels]``, any ``time >= 1``.
      kernel: ``[kernel_size, channels]``: channel ``c``'s own taps, odd kernel_size.
      dilation: dilation rate >= 1.
      mode: one of :data:`MODES`; ``time_to_batch`` runs an undilated depthwise
        conv on the phases, the others sum shifted copies.

    Returns:
      ``[batch, time, channels]``: ``y[t, c] = sum_j kernel[j, c] * x[t + dilation * (j - (k - 1) / 2), c]``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown dilated conv mode {mode!r}; expected one of {MODES}")
    kernel = tf.cast(kernel, x.dtype)
    if mode == "time_to_batch":
        return _time_to_batch_depthwise(x, kernel, dilation)
    return _shifted_depthwise(x, kernel, dilation)


class _DilatedLayer(KernelMixin, keras.layers.Layer):
    """What both dilated layers share: the tap count, dilation, mode and weight-norm choice.

    Subclasses add their channel arguments, ``build`` and ``call``; ``get_config`` here
    carries the shared four.
    """

    def __init__(self, kernel_size: int, dilation_rate: int, mode: str, weight_norm: bool, **kwargs):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for centred padding, got {kernel_size}")
        if mode not in MODES:
            raise ValueError(f"unknown dilated conv mode {mode!r}; expected one of {MODES}")
        self.kernel_size = int(kernel_size)
        self.dilation_rate = int(dilation_rate)
        self.mode = mode
        self.weight_norm = bool(weight_norm)

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size,
            dilation_rate=self.dilation_rate,
            mode=self.mode,
            weight_norm=self.weight_norm,
        )
        return config


@keras.saving.register_keras_serializable(package="tfwaveglow")
class DilatedConv1D(_DilatedLayer):
    """Dilated non-causal Conv1d with "same" length output and a bias.

    Args:
      in_channels: input channels.
      out_channels: output channels.
      kernel_size: odd number of taps.
      dilation_rate: spacing between taps.
      mode: one of :data:`MODES`; ``time_to_batch`` (default), ``shifted_matmul`` and
        ``phase_conv2d`` are hand-rolled, ``native`` is conv1d's own dilation.
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
        mode: str = DEFAULT_MODE,
        weight_norm: bool = False,
        **kwargs,
    ):
        super().__init__(kernel_size, dilation_rate, mode, weight_norm, **kwargs)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)

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
        config.update(in_channels=self.in_channels, out_channels=self.out_channels)
        return config


@keras.saving.register_keras_serializable(package="tfwaveglow")
class DepthwiseDilatedConv1D(_DilatedLayer):
    """Dilated non-causal depthwise Conv1d (``groups = channels``) with a bias.

    Args:
      channels: input and output channels (each filtered on its own).
      kernel_size: odd number of taps.
      dilation_rate: spacing between taps.
      mode: one of :data:`MODES` (see :func:`dilated_depthwise_conv1d`).
      weight_norm: hold the kernel as ``g * v / ||v||`` (norm per channel over the taps).

    Shapes: ``[batch, time, channels] -> [batch, time, channels]``. Kernel layout
    ``[kernel_size, channels]`` (PyTorch's ``weight[:, 0, :].T`` for a grouped Conv1d).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        dilation_rate: int = 1,
        mode: str = DEFAULT_MODE,
        weight_norm: bool = False,
        **kwargs,
    ):
        super().__init__(kernel_size, dilation_rate, mode, weight_norm, **kwargs)
        self.channels = int(channels)

    def build(self, input_shape=None):
        # PyTorch's fan-in for a grouped conv: in_channels / groups * k = k.
        init = torch_default_initializer(self.kernel_size)
        self._add_kernel_and_bias((self.kernel_size, self.channels), init, init, self.weight_norm)
        self.built = True

    def call(self, x):
        y = dilated_depthwise_conv1d(x, self.effective_kernel(), self.dilation_rate, self.mode)
        return y + tf.cast(self.bias, y.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config
