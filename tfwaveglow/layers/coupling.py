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
      n_layers, n_channels, kernel_size, dilated_conv, weight_norm: passed to WN.

    Shapes: ``x [batch, groups, channels]``, grouped mel
    ``[batch, groups, cond_channels]``.
    """

    def __init__(
        self,
        channels: int,
        cond_channels: int,
        n_layers: int = 8,
        n_channels: int = 256,
        kernel_size: int = 3,
        dilated_conv: str = "time_to_batch",
        weight_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if channels % 2 != 0:
            raise ValueError(f"AffineCoupling needs an even channel count, got {channels}")
        self.channels = int(channels)
        self.cond_channels = int(cond_channels)
        self.n_half = self.channels // 2
        self.wn = WN(
            self.n_half,
            cond_channels,
            n_layers=n_layers,
            n_channels=n_channels,
            kernel_size=kernel_size,
            dilated_conv=dilated_conv,
            weight_norm=weight_norm,
            name="WN",
        )

    def build(self, input_shape=None):
        self.wn.build(None)
        self.built = True

    def _shift_and_log_scale(self, x0, cond):
        out = self.wn.transform(x0, cond)
        return out[:, :, : self.n_half], out[:, :, self.n_half :]

    def forward(self, x, spect=None, cond=None):
        """Returns ``(y, log_s)``; ``log_s`` is ``[batch, groups, n_half]``.

        Pass the grouped mel as ``spect``, or its projection
        ``self.wn.project_condition(spect)`` as ``cond``.
        """
        cond = self.wn.project_condition(spect) if cond is None else cond
        x0, x1 = x[:, :, : self.n_half], x[:, :, self.n_half :]
        b, log_s = self._shift_and_log_scale(x0, cond)
        return tf.concat([x0, tf.exp(log_s) * x1 + b], axis=-1), log_s

    def inverse(self, y, spect=None, cond=None):
        """Undoes :meth:`forward`: ``[batch, groups, channels] -> same``."""
        cond = self.wn.project_condition(spect) if cond is None else cond
        y0, y1 = y[:, :, : self.n_half], y[:, :, self.n_half :]
        b, log_s = self._shift_and_log_scale(y0, cond)
        return tf.concat([y0, (y1 - b) * tf.exp(-log_s)], axis=-1)

    def call(self, x, spect):
        return self.forward(x, spect)

    def get_config(self):
        config = super().get_config()
        wn = self.wn
        config.update(
            channels=self.channels,
            cond_channels=self.cond_channels,
            n_layers=wn.n_layers,
            n_channels=wn.n_channels,
            kernel_size=wn.kernel_size,
            dilated_conv=wn.dilated_conv,
            weight_norm=wn.weight_norm,
        )
        return config
