"""The mel upsampler: a transposed 1-D convolution from frame rate to sample rate."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfwaveglow.layers.kernel import torch_default_initializer


@keras.saving.register_keras_serializable(package="tfwaveglow")
class Upsampler(keras.layers.Layer):
    """ConvTranspose1d(channels -> channels, kernel_size, stride), 'valid'.

    Frame ``f`` writes output samples ``[f * stride, f * stride + kernel_size)``,
    so ``frames`` frames give ``(frames - 1) * stride + kernel_size`` samples.

    Args:
      channels: mel channels (input and output).
      kernel_size: transposed-conv taps (NVIDIA: 1024).
      stride: the hop length (NVIDIA: 256).

    Shapes: ``[batch, frames, channels] -> [batch, (frames - 1) * stride + kernel_size, channels]``.
    Kernel layout ``[kernel_size, out, in]`` (PyTorch's ``weight.permute(2, 1, 0)``).
    """

    def __init__(self, channels: int = 80, kernel_size: int = 1024, stride: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)

    def build(self, input_shape=None):
        # PyTorch computes ConvTranspose1d's fan-in from weight.size(1) * k = out * k.
        init = torch_default_initializer(self.channels * self.kernel_size)
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.channels, self.channels), initializer=init
        )
        self.bias = self.add_weight(name="bias", shape=(self.channels,), initializer=init)
        self.built = True

    def output_length(self, frames):
        return (frames - 1) * self.stride + self.kernel_size

    def call(self, mel):
        batch, frames = tf.shape(mel)[0], tf.shape(mel)[1]
        out_shape = tf.stack([batch, self.output_length(frames), self.channels])
        y = tf.nn.conv1d_transpose(
            mel, tf.cast(self.kernel, mel.dtype), out_shape, strides=self.stride, padding="VALID"
        )
        return y + tf.cast(self.bias, y.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, kernel_size=self.kernel_size, stride=self.stride)
        return config
