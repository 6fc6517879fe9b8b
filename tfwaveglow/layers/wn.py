"""WN: the WaveNet-like network that predicts each coupling's (b, log_s)."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfwaveglow.layers.dilated_conv import DilatedConv1D
from tfwaveglow.layers.pointwise import PointwiseConv


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
      dilated_conv: ``time_to_batch`` or ``native``.
      weight_norm: weight-normalise every conv but ``end``.

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
        dilated_conv: str = "time_to_batch",
        weight_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        self.in_layers = [
            DilatedConv1D(c, 2 * c, self.kernel_size, 2**i, mode=dilated_conv, weight_norm=wn, name=f"in_layers_{i}")
            for i in range(self.n_layers)
        ]
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

    def build(self, input_shape=None):
        for layer in [self.start, self.cond_layer, *self.in_layers, *self.res_skip_layers, self.end]:
            layer.build(None)
        self.built = True

    def project_condition(self, spect):
        """``cond_layer`` applied to the grouped mel: ``[B, G, cond] -> [B, G, 2 * C * L]``.

        It depends on the mel only, so synthesis can compute it once.
        """
        return self.cond_layer(spect)

    def transform(self, audio, cond):
        """WN body on a projected condition: ``[B, G, n_half], [B, G, 2CL] -> [B, G, 2 * n_half]``."""
        c = self.n_channels
        x = self.start(audio)
        output = None
        for i in range(self.n_layers):
            acts = self.in_layers[i](x) + cond[:, :, 2 * c * i : 2 * c * (i + 1)]
            acts = tf.tanh(acts[:, :, :c]) * tf.sigmoid(acts[:, :, c:])
            res_skip = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                x = x + res_skip[:, :, :c]
                skip = res_skip[:, :, c:]
            else:
                skip = res_skip
            output = skip if output is None else output + skip
        return self.end(output)

    def call(self, audio, spect):
        return self.transform(audio, self.project_condition(spect))

    def get_config(self):
        config = super().get_config()
        config.update(
            in_channels=self.in_channels,
            cond_channels=self.cond_channels,
            n_layers=self.n_layers,
            n_channels=self.n_channels,
            kernel_size=self.kernel_size,
            dilated_conv=self.dilated_conv,
            weight_norm=self.weight_norm,
        )
        return config
