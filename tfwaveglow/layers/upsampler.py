"""The mel upsampler (a transposed 1-D convolution from frame rate to sample rate) and frame windows."""

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


def compose_with_projection(
    upsample_kernel, upsample_bias, projection_kernel, projection_bias, stride: int, n_group: int
):
    """The upsampler, the grouping into ``n_group`` samples and a 1x1 projection, as one linear map of frames.

    Group step ``t = R f + r`` (``R = stride / n_group`` phases per frame) reads
    frames ``f - Q + 1 .. f`` (``Q = ceil(kernel_size / stride)``); sample
    ``n_group * t + j`` sits ``stride * (Q - 1 - q) + n_group * r + j`` taps after the
    start of the frame in window slot ``q``. Summing the projection over the
    grouped channels ``m * n_group + j`` gives, per slot and phase, a
    ``[n_mel, out]`` matrix.

    Args:
      upsample_kernel: ``[kernel_size, n_mel (out), n_mel (in)]`` (:class:`Upsampler`'s layout).
      upsample_bias: ``[n_mel]``.
      projection_kernel: ``[n_mel * n_group, out]`` on the grouped mel (channel ``m * n_group + j``).
      projection_bias: ``[out]``.
      stride: the upsampler's stride (hop), a multiple of ``n_group``.
      n_group: samples per group step.

    Returns:
      ``(kernel [Q * n_mel, R * out], bias [out])``: for :func:`frame_windows` ``w``,
      ``reshape(w @ kernel, [B, F * R, out]) + bias`` is the projected grouped
      mel of ``F * stride`` samples.
    """
    upsample_kernel = tf.convert_to_tensor(upsample_kernel, tf.float32)
    projection_kernel = tf.convert_to_tensor(projection_kernel, tf.float32)
    kernel_size, n_mel = upsample_kernel.shape[0], upsample_kernel.shape[1]
    out = projection_kernel.shape[1]
    windows = -(-kernel_size // stride)
    phases = stride // n_group
    taps = tf.pad(upsample_kernel, [[0, windows * stride - kernel_size], [0, 0], [0, 0]])
    # [tap block, phase, j, m (out), m' (in)], tap = block * stride + phase * n_group + j; slot q <-> block Q - 1 - q.
    taps = tf.reverse(tf.reshape(taps, [windows, phases, n_group, n_mel, n_mel]), axis=[0])
    projection = tf.reshape(projection_kernel, [n_mel, n_group, out])
    kernel = tf.einsum("qrjmn,mjo->qnro", taps, projection)
    bias = tf.convert_to_tensor(projection_bias, tf.float32) + tf.einsum(
        "m,mjo->o", tf.convert_to_tensor(upsample_bias, tf.float32), projection
    )
    return tf.reshape(kernel, [windows * n_mel, phases * out]), bias


def frame_windows(mel, window_frames: int):
    """``[B, F, n_mel] -> [B, F, window_frames * n_mel]``: frame ``f`` with the frames before it.

    Slot ``q`` of row ``f`` holds frame ``f - window_frames + 1 + q`` (zeros before frame 0).
    """
    frames = tf.shape(mel)[1]
    padded = tf.pad(mel, [[0, 0], [window_frames - 1, 0], [0, 0]])
    return tf.concat([padded[:, q : q + frames, :] for q in range(window_frames)], axis=-1)


def centred_frame_windows(mel, context: int):
    """``[B, F, n_mel] -> [B, F, (2 * context + 1) * n_mel]``: each frame with ``context`` frames either side.

    Slot ``q`` of row ``f`` holds frame ``f - context + q`` (zeros outside ``[0, F)``).
    """
    if context == 0:
        return mel
    frames = tf.shape(mel)[1]
    padded = tf.pad(mel, [[0, 0], [context, context], [0, 0]])
    return tf.concat([padded[:, q : q + frames, :] for q in range(2 * context + 1)], axis=-1)
