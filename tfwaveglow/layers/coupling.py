"""Affine coupling: the second half of the channels, scaled and shifted by WN of the first."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfwaveglow.layers.wn import WN


@keras.saving.register_keras_serializable(package="tfwaveglow")
class AffineCoupling(keras.layers.Layer):
    """``x = [x0, x1]``; forward ``x1 -> exp(log_s) * x1 + b``, inverse ``x1 -> (x1 - b) * exp(-log_s)``.

    ``(b, log_s) = WN(x0, mel)``; ``x0`` passes through unchanged, so the
    step is invertible whatever WN computes.

    Args:
      channels: channels of ``x`` (even); ``n_half = channels // 2``.
      cond_channels: channels of the grouped mel.
      wn_options: WN's own arguments (``n_layers``, ``n_channels``,
        ``kernel_size``, ``dilated_conv``, ``weight_norm``, ``separable``);
        WN's defaults where absent.

    Shapes: ``x [batch, groups, channels]``, grouped mel
    ``[batch, groups, cond_channels]``.
    """

    def __init__(self, channels: int, cond_channels: int, wn_options: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if channels % 2 != 0:
            raise ValueError(f"AffineCoupling needs an even channel count, got {channels}")
        self.channels = int(channels)
        self.cond_channels = int(cond_channels)
        self.n_half = self.channels // 2
        self.wn = WN(self.n_half, cond_channels, name="WN", **(wn_options or {}))

    def build(self, input_shape=None):
        self.wn.build(None)
        self.built = True

    def _shift_and_log_scale(self, x0, spect, cond, layer_condition, compute_dtype):
        """WN's ``(b, log_s)`` in ``x0``'s dtype; WN itself runs in ``compute_dtype``."""
        wn_input = x0 if compute_dtype is None else tf.cast(x0, compute_dtype)
        if layer_condition is not None:
            out = self.wn.transform_with(wn_input, layer_condition)
        elif cond is not None:
            out = self.wn.transform(wn_input, cond)
        elif spect is not None:
            out = self.wn.transform_spect(wn_input, spect)
        else:
            raise ValueError("pass the grouped mel (spect), its projection (cond) or layer_condition")
        return tf.split(tf.cast(out, x0.dtype), 2, axis=-1)

    def forward(self, x, spect=None, cond=None, layer_condition=None, compute_dtype=None):
        """Returns ``(y, log_s)``; ``log_s`` is ``[batch, groups, n_half]``.

        Pass the grouped mel as ``spect``, or its projection
        ``self.wn.project_condition(spect)`` as ``cond``, or a function
        ``(i, bias) -> [batch, groups, 2C]`` giving WN layer ``i``'s projected
        condition plus ``bias`` as ``layer_condition`` (see
        :meth:`WN.transform_with`). With ``compute_dtype`` (e.g. float16) WN
        runs in that dtype while the affine step stays in ``x``'s dtype.
        """
        x0, x1 = tf.split(x, 2, axis=-1)
        b, log_s = self._shift_and_log_scale(x0, spect, cond, layer_condition, compute_dtype)
        return tf.concat([x0, tf.exp(log_s) * x1 + b], axis=-1), log_s

    def inverse(self, y, spect=None, cond=None, layer_condition=None, compute_dtype=None):
        """Undoes :meth:`forward`: ``[batch, groups, channels] -> same`` (same arguments)."""
        y0, y1 = tf.split(y, 2, axis=-1)
        b, log_s = self._shift_and_log_scale(y0, spect, cond, layer_condition, compute_dtype)
        return tf.concat([y0, (y1 - b) * tf.exp(-log_s)], axis=-1)

    def call(self, x, spect):
        return self.forward(x, spect)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, cond_channels=self.cond_channels, wn_options=self.wn.options())
        return config
