"""WN: the WaveNet-like network that predicts each coupling's (b, log_s)."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfwaveglow.layers.dilated_conv import (
    DEFAULT_MODE,
    DepthwiseDilatedConv1D,
    DilatedConv1D,
    dilated_conv1d,
    dilated_depthwise_conv1d,
)
from tfwaveglow.layers.pointwise import PointwiseConv, pointwise


@keras.saving.register_keras_serializable(package="tfwaveglow")
class WN(keras.layers.Layer):
    """Gated dilated residual stack conditioned on the grouped mel.

    Layer ``i`` adds the conditioning slice ``[2Ci, 2C(i+1))`` of one shared
    ``cond_layer`` to ``in_layers[i]`` (kernel ``kernel_size``, dilation
    ``2**i``), gates it as ``tanh(first C) * sigmoid(second C)``, and
    ``res_skip_layers[i]`` splits into residual (first C) and skip (second C);
    the last layer has skip only. ``end`` maps the summed skips to
    ``2 * in_channels`` channels, ``(b, log_s)`` in that order. ``end`` starts at
    zero so each coupling starts as the identity.

    Args:
      in_channels: channels of the half that conditions the coupling (n_half).
      cond_channels: channels of the grouped mel (n_mel * n_group).
      n_layers: residual layers L.
      n_channels: residual channels C.
      kernel_size: taps of the dilated convolutions.
      dilated_conv: a mode of :mod:`tfwaveglow.layers.dilated_conv`.
      weight_norm: weight-normalise every conv but ``end``.
      separable: depthwise-separable layers: ``in_layers[i]`` is a depthwise
        dilated conv (``C -> C``, one filter per channel) followed by the 1x1
        ``in_pointwise[i]`` (``C -> 2C``): ``k C + 2 C^2`` multiply-adds per step
        instead of ``2 k C^2``.

    Shapes: audio ``[batch, groups, in_channels]`` and grouped mel
    ``[batch, groups, cond_channels]`` -> ``[batch, groups, 2 * in_channels]``.
    """

    def __init__(
        self,
        in_channels: int,
        cond_channels: int,
        n_layers: int = 8,
        n_channels: int = 256,
        kernel_size: int = 3,
        dilated_conv: str = DEFAULT_MODE,
        weight_norm: bool = False,
        separable: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.separable = bool(separable)
        self.in_channels = int(in_channels)
        self.cond_channels = int(cond_channels)
        self.n_layers = int(n_layers)
        self.n_channels = int(n_channels)
        self.kernel_size = int(kernel_size)
        self.dilated_conv = dilated_conv
        self.weight_norm = bool(weight_norm)
        c, wn = self.n_channels, self.weight_norm
        self.start = PointwiseConv(self.in_channels, c, weight_norm=wn, name="start")
        self.cond_layer = PointwiseConv(self.cond_channels, 2 * c * self.n_layers, weight_norm=wn, name="cond_layer")
        k, mode = self.kernel_size, dilated_conv
        if self.separable:
            self.in_layers = [
                DepthwiseDilatedConv1D(c, k, 2**i, mode=mode, weight_norm=wn, name=f"in_layers_{i}")
                for i in range(self.n_layers)
            ]
            self.in_pointwise = [
                PointwiseConv(c, 2 * c, weight_norm=wn, name=f"in_pointwise_{i}") for i in range(self.n_layers)
            ]
        else:
            self.in_layers = [
                DilatedConv1D(c, 2 * c, k, 2**i, mode=mode, weight_norm=wn, name=f"in_layers_{i}")
                for i in range(self.n_layers)
            ]
            self.in_pointwise = []
        self.res_skip_layers = [
            PointwiseConv(c, 2 * c if i < self.n_layers - 1 else c, weight_norm=wn, name=f"res_skip_layers_{i}")
            for i in range(self.n_layers)
        ]
        self.end = PointwiseConv(c, 2 * self.in_channels, zero_init=True, name="end")
        # Attributes as well as lists, so tf.train.Checkpoint (which does not follow Keras'
        # tracked lists) saves every layer.
        for i in range(self.n_layers):
            setattr(self, f"in_layers_{i}", self.in_layers[i])
            setattr(self, f"res_skip_layers_{i}", self.res_skip_layers[i])
            if self.separable:
                setattr(self, f"in_pointwise_{i}", self.in_pointwise[i])

    def build(self, input_shape=None):
        layers = [self.start, self.cond_layer, *self.in_layers, *self.in_pointwise, *self.res_skip_layers, self.end]
        for layer in layers:
            layer.build(None)
        self.built = True

    def project_condition(self, spect):
        """``cond_layer`` applied to the grouped mel: ``[B, G, cond] -> [B, G, 2 * C * L]``.

        It depends on the mel only, so synthesis can compute it once.
        """
        return self.cond_layer(spect)

    def transform(self, audio, cond):
        """WN body on a projected condition: ``[B, G, n_half], [B, G, 2CL] -> [B, G, 2 * n_half]``."""
        # tf.split, not slices: its gradient is one concat, a slice's a zero-filled full-size tensor each.
        per_layer = tf.split(cond, self.n_layers, axis=-1)
        return self.transform_with(audio, lambda i, bias: per_layer[i] + tf.cast(bias, cond.dtype))

    def transform_spect(self, audio, spect):
        """WN body on the grouped mel ``[B, G, cond_channels]``: ``-> [B, G, 2 * n_half]``.

        Each layer projects the mel onto its own ``2C`` slice of ``cond_layer``
        right where it is needed, so no ``[B, G, 2CL]`` tensor is ever held.
        """
        kernels = tf.split(self.cond_layer.effective_kernel(), self.n_layers, axis=1)
        biases = tf.split(tf.convert_to_tensor(self.cond_layer.bias), self.n_layers)

        def layer_condition(i, bias):
            return pointwise(spect, kernels[i], biases[i] + bias)

        return self.transform_with(audio, layer_condition)

    def transform_with(self, audio, layer_condition):
        """WN body with the conditioning given per layer.

        The weights are regrouped, exactly, into fewer multiply-adds: ``start``
        is linear, so layer 0's dilated conv runs on the ``n_half`` audio channels
        (plus a constant channel for ``start``'s bias) with the composed kernel
        ``start . in_layers[0]``; and ``end`` is linear, so every layer's skip
        half goes straight to ``2 * n_half`` channels through ``skip_i . end``
        (no summed ``C``-channel skip tensor). The regrouped kernels are
        products of the variables, formed at every call: training sees its
        current weights and gradients reach every variable.

        Args:
          audio: ``[B, G, n_half]``.
          layer_condition: ``(i, bias) -> [B, G, 2C]``: layer ``i``'s projected
            condition (``cond_layer``'s bias included) plus ``bias`` (``[2C]``
            float32, the dilated conv's bias, added here so that it rides on
            the projection's bias), in ``audio``'s dtype.

        Returns:
          ``[B, G, 2 * n_half]``: ``(b, log_s)`` concatenated.
        """
        dtype = audio.dtype
        start_kernel = tf.cast(self.start.effective_kernel(), dtype)
        start_bias = tf.cast(self.start.bias, dtype)
        end_kernel = tf.cast(self.end.effective_kernel(), dtype)
        x = pointwise(audio, start_kernel, start_bias)

        output = None
        skip_bias = None
        for i in range(self.n_layers):
            pre_activation, in_bias = self._in_layer(i, audio, x, start_kernel, start_bias)
            # In a graph the projection would otherwise be free to run (and be held) as soon as the
            # mel exists, every layer's of every flow at once: tie it to this layer's input instead.
            with tf.control_dependencies([pre_activation]):
                condition = layer_condition(i, in_bias)
            residual, skip, bias = gated_residual_skip(pre_activation + condition, self.res_skip_layers[i], end_kernel)
            if residual is not None:
                x = x + residual
            output = skip if output is None else output + skip
            skip_bias = bias if skip_bias is None else skip_bias + bias
        end_bias = tf.cast(self.end.bias, dtype) + tf.linalg.matvec(end_kernel, skip_bias, transpose_a=True)
        return output + end_bias

    def _in_layer(self, i, audio, x, start_kernel, start_bias):
        """Layer ``i``'s dilated conv of ``x = start(audio)``, without its bias: ``([B, G, 2C], bias [2C] float32)``.

        Plain layers compute layer 0 on ``[audio, 1]`` with the kernel
        ``start . in_layers[0]`` (zero padding of ``[audio, 1]`` is zero padding
        of ``start(audio)``): ``n_half + 1`` input channels instead of ``C``.
        Separable layers run the depthwise conv, then the 1x1 whose bias
        absorbs the depthwise bias.
        """
        layer = self.in_layers[i]
        if self.separable:
            pointwise_layer = self.in_pointwise[i]
            pointwise_kernel = pointwise_layer.effective_kernel()
            depthwise = dilated_depthwise_conv1d(x, layer.effective_kernel(), layer.dilation_rate, layer.mode)
            bias = tf.convert_to_tensor(pointwise_layer.bias) + tf.linalg.matvec(
                pointwise_kernel, tf.convert_to_tensor(layer.bias), transpose_a=True
            )
            return pointwise(depthwise, pointwise_kernel), bias
        if i == 0:
            start_augmented = tf.concat([start_kernel, start_bias[None, :]], axis=0)  # [n_half + 1, C]
            first_kernel = tf.einsum("ic,kco->kio", start_augmented, tf.cast(layer.effective_kernel(), audio.dtype))
            ones = tf.ones(tf.concat([tf.shape(audio)[:-1], [1]], axis=0), audio.dtype)
            return dilated_conv1d(tf.concat([audio, ones], axis=-1), first_kernel, 1, layer.mode), tf.convert_to_tensor(
                layer.bias
            )
        kernel = layer.effective_kernel()
        return dilated_conv1d(x, kernel, layer.dilation_rate, layer.mode), tf.convert_to_tensor(layer.bias)

    def call(self, audio, spect):
        return self.transform_spect(audio, spect)

    def options(self) -> dict:
        """The arguments besides the two channel counts (what a coupling passes through)."""
        return {
            "n_layers": self.n_layers,
            "n_channels": self.n_channels,
            "kernel_size": self.kernel_size,
            "dilated_conv": self.dilated_conv,
            "weight_norm": self.weight_norm,
            "separable": self.separable,
        }

    def get_config(self):
        config = super().get_config()
        config.update(in_channels=self.in_channels, cond_channels=self.cond_channels, **self.options())
        return config


def gated_residual_skip(pre_activation, res_skip_layer, end_kernel):
    """One gated layer's outputs, with its skip taken straight through ``end``.

    ``tanh(first C) * sigmoid(second C)`` of ``pre_activation``, then
    ``res_skip_layer``'s residual half (with its bias) and its skip half times
    ``end_kernel`` (without bias: the skip biases fold into ``end``'s once, by
    the caller). A layer whose ``res_skip_layer`` has ``C`` outputs (the last)
    has the skip only.

    Args:
      pre_activation: ``[B, T, 2C]`` (conv output, biases and conditioning added).
      res_skip_layer: a ``PointwiseConv`` ``C -> 2C`` (``[residual | skip]``) or ``C -> C`` (skip).
      end_kernel: ``[C, E]`` in ``pre_activation``'s dtype.

    Returns:
      ``(residual [B, T, C] or None, skip . end [B, T, E], skip bias [C])``.
    """
    dtype = pre_activation.dtype
    # Splits rather than slices: their gradient is one concat, a slice's a zero-filled full-size tensor each.
    in_act, gate = tf.split(pre_activation, 2, axis=-1)
    acts = tf.tanh(in_act) * tf.sigmoid(gate)
    kernel = tf.cast(res_skip_layer.effective_kernel(), dtype)
    bias = tf.cast(res_skip_layer.bias, dtype)
    residual = None
    if kernel.shape[1] == 2 * acts.shape[-1]:
        res_kernel, kernel = tf.split(kernel, 2, axis=1)
        res_bias, bias = tf.split(bias, 2)
        residual = pointwise(acts, res_kernel, res_bias)
    return residual, pointwise(acts, tf.linalg.matmul(kernel, end_kernel)), bias
