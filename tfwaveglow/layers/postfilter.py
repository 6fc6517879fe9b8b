"""PostFilter: a non-causal WaveNet-like network on the synthesised waveform (WG-WaveNet's post-filter).

The flow's output ``x [B, T]`` goes in as one channel and comes out as
``y = x + out(h)``: a residual correction of the waveform. ``h`` is a stack of
gated dilated layers like WaveGlow's WN without the mel conditioning:

* ``start``: 1x1, ``1 -> C``;
* layer ``i`` (dilation ``2**i``): the centred dilated conv ``in_layers[i]``
  (``C -> 2C``, ``kernel_size`` taps, zero padding outside the sequence),
  gated as ``tanh(first C) * sigmoid(second C)``; ``res_skip_layers[i]``
  (1x1) splits into a residual half added to the layer's input and a skip
  half (the last layer has the skip only);
* ``end``: 1x1 from the summed skips to 1 channel, initialised to zero, so a
  fresh post-filter is the identity.

Output sample ``t`` depends on input samples ``t - P .. t + P`` with
``P = (kernel_size - 1) / 2 * (2**n_layers - 1)``: a receptive field of
``(kernel_size - 1) * (2**n_layers - 1) + 1`` samples.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfwaveglow.layers.dilated_conv import DEFAULT_MODE, DilatedConv1D, dilated_conv1d
from tfwaveglow.layers.pointwise import PointwiseConv, pointwise
from tfwaveglow.layers.wn import gated_residual_skip


@keras.saving.register_keras_serializable(package="tfwaveglow")
class PostFilter(keras.layers.Layer):
    """Gated dilated residual stack on a waveform, added to it: ``[B, T] -> [B, T]``.

    Args:
      n_layers: residual layers L (>= 1); layer ``i`` has dilation ``2**i``.
      n_channels: residual channels C.
      kernel_size: taps of the dilated convolutions (odd).
      dilated_conv: a mode of :mod:`tfwaveglow.layers.dilated_conv` (the
        weights are the same for every mode).
      weight_norm: weight-normalise every conv but ``end`` (as WN does).

    Shapes: ``audio [batch, time]`` -> ``[batch, time]``, any ``time >= 1``.
    The weights are ``start`` ``[1, C]``, ``in_layers[i]`` ``[k, C, 2C]``,
    ``res_skip_layers[i]`` ``[C, 2C]`` (the last ``[C, C]``), ``end`` ``[C, 1]``,
    each with a bias.
    """

    def __init__(
        self,
        n_layers: int = 6,
        n_channels: int = 64,
        kernel_size: int = 3,
        dilated_conv: str = DEFAULT_MODE,
        weight_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(n_layers) < 1 or int(n_channels) < 1:
            raise ValueError(f"a post-filter needs n_layers >= 1 and n_channels >= 1, got {n_layers}, {n_channels}")
        self.n_layers = int(n_layers)
        self.n_channels = int(n_channels)
        self.kernel_size = int(kernel_size)
        self.dilated_conv = dilated_conv
        self.weight_norm = bool(weight_norm)
        c, k, wn = self.n_channels, self.kernel_size, self.weight_norm
        self.start = PointwiseConv(1, c, weight_norm=wn, name="start")
        self.in_layers = [
            DilatedConv1D(c, 2 * c, k, 2**i, mode=dilated_conv, weight_norm=wn, name=f"in_layers_{i}")
            for i in range(self.n_layers)
        ]
        self.res_skip_layers = [
            PointwiseConv(c, 2 * c if i < self.n_layers - 1 else c, weight_norm=wn, name=f"res_skip_layers_{i}")
            for i in range(self.n_layers)
        ]
        self.end = PointwiseConv(c, 1, zero_init=True, name="end")
        # Attributes as well as lists: tf.train.Checkpoint does not follow Keras' tracked lists.
        for i in range(self.n_layers):
            setattr(self, f"in_layers_{i}", self.in_layers[i])
            setattr(self, f"res_skip_layers_{i}", self.res_skip_layers[i])

    def build(self, input_shape=None):
        for layer in (self.start, *self.in_layers, *self.res_skip_layers, self.end):
            layer.build(None)
        self.built = True

    @property
    def context(self) -> int:
        """Input samples one output sample depends on, per side: ``(k - 1) / 2 * (2**L - 1)``."""
        return (self.kernel_size - 1) // 2 * (2**self.n_layers - 1)

    @property
    def receptive_field(self) -> int:
        """Input samples one output sample depends on in all: ``(k - 1) * (2**L - 1) + 1``."""
        return 2 * self.context + 1

    def multiply_adds_per_sample(self) -> int:
        """Multiply-adds per output sample, counted on the layers as defined.

        ``start`` ``C``, each dilated conv ``2 k C^2``, each residual/skip 1x1
        ``2 C^2`` (the last ``C^2``) and ``end`` ``C``. :meth:`correction`
        regroups them exactly into fewer (layer 0 on 2 channels, the skips
        straight to 1 channel).
        """
        c, k, layers = self.n_channels, self.kernel_size, self.n_layers
        return c + layers * 2 * k * c * c + (layers - 1) * 2 * c * c + c * c + c

    def correction(self, audio):
        """What the post-filter adds to ``audio``: ``[B, T] -> [B, T]`` in ``audio``'s dtype.

        Computed with the weights regrouped exactly, as WN does: ``start`` is
        linear, so layer 0's conv runs on ``[audio, 1]`` (2 channels instead of
        C) with the kernel ``start . in_layers[0]`` (zero padding of
        ``[audio, 1]`` is zero padding of ``start(audio)``); ``end`` is linear,
        so each layer's skip half goes to 1 channel through ``skip_i . end`` and
        the skip biases fold into ``end``'s. The regrouped kernels are formed
        from the variables at every call, so gradients reach every variable.

        Args:
          audio: ``[B, T]`` float (float32, or float16/bfloat16 under mixed precision).

        Returns:
          ``[B, T]``: ``end(sum of skips)``.
        """
        dtype = audio.dtype
        signal = audio[:, :, None]  # [B, T, 1]
        start_kernel = tf.cast(self.start.effective_kernel(), dtype)  # [1, C]
        start_bias = tf.cast(self.start.bias, dtype)  # [C]
        end_kernel = tf.cast(self.end.effective_kernel(), dtype)  # [C, 1]
        total = None
        skip_bias = None
        x = None
        for i in range(self.n_layers):
            layer = self.in_layers[i]
            if i == 0:
                augmented = tf.concat([start_kernel, start_bias[None, :]], axis=0)  # [2, C]
                first_kernel = tf.einsum("ic,kco->kio", augmented, tf.cast(layer.effective_kernel(), dtype))
                with_ones = tf.concat([signal, tf.ones_like(signal)], axis=-1)  # [B, T, 2]
                acts = dilated_conv1d(with_ones, first_kernel, 1, layer.mode)
                if self.n_layers > 1:
                    x = pointwise(signal, start_kernel, start_bias)  # [B, T, C]: the residual stream
            else:
                acts = dilated_conv1d(x, layer.effective_kernel(), layer.dilation_rate, layer.mode)
            pre_activation = acts + tf.cast(layer.bias, dtype)  # [B, T, 2C]
            residual, skip, bias = gated_residual_skip(pre_activation, self.res_skip_layers[i], end_kernel)
            if residual is not None:
                x = x + residual
            total = skip if total is None else total + skip  # [B, T, 1]
            skip_bias = bias if skip_bias is None else skip_bias + bias
        end_bias = tf.cast(self.end.bias, dtype) + tf.linalg.matvec(end_kernel, skip_bias, transpose_a=True)
        return (total + end_bias)[:, :, 0]

    def call(self, audio, compute_dtype=None):
        """``y = audio + correction(audio)``: ``[B, T] -> [B, T]`` in ``audio``'s dtype.

        Args:
          audio: ``[B, T]``.
          compute_dtype: run the network in this dtype (e.g. float16 under
            mixed precision, as the WNs do); the sum with ``audio`` stays in
            ``audio``'s dtype. None: ``audio``'s dtype.
        """
        audio = tf.convert_to_tensor(audio)
        work = audio if compute_dtype is None or compute_dtype == audio.dtype else tf.cast(audio, compute_dtype)
        return audio + tf.cast(self.correction(work), audio.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            n_layers=self.n_layers,
            n_channels=self.n_channels,
            kernel_size=self.kernel_size,
            dilated_conv=self.dilated_conv,
            weight_norm=self.weight_norm,
        )
        return config
