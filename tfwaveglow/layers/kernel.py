"""A convolution kernel with optional PyTorch-style weight normalisation.

With weight norm the layer holds ``kernel_v`` and ``kernel_g`` and uses
``w = g * v / ||v||``, the norm taken over every axis but the last (output
channels), exactly as ``torch.nn.utils.weight_norm(dim=0)`` does for a Conv1d
weight ``[out, in, k]``. Without it the layer holds ``kernel`` directly.
``g`` starts as ``||v||`` so both forms start from the same kernel.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def torch_default_initializer(fan_in: int) -> keras.initializers.Initializer:
    """PyTorch's default Conv1d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return keras.initializers.RandomUniform(-bound, bound)


class KernelMixin:
    """Adds ``kernel`` (or ``kernel_v``/``kernel_g``) and ``bias`` to a Layer."""

    def _add_kernel_and_bias(self, shape, kernel_initializer, bias_initializer, weight_norm: bool):
        self._norm_axes = list(range(len(shape) - 1))
        if weight_norm:
            self.kernel_v = self.add_weight(name="kernel_v", shape=shape, initializer=kernel_initializer)
            v = self.kernel_v
            self.kernel_g = self.add_weight(
                name="kernel_g",
                shape=(shape[-1],),
                initializer=lambda shape, dtype=None: tf.norm(
                    tf.reshape(tf.convert_to_tensor(v), [-1, shape[-1]]), axis=0
                ),
            )
        else:
            self.kernel = self.add_weight(name="kernel", shape=shape, initializer=kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(shape[-1],), initializer=bias_initializer)

    def effective_kernel(self) -> tf.Tensor:
        """The kernel the layer applies (``g * v / ||v||`` under weight norm)."""
        if self.weight_norm:
            v = tf.convert_to_tensor(self.kernel_v)
            norm = tf.sqrt(tf.reduce_sum(tf.square(v), axis=self._norm_axes, keepdims=True))
            return v * (tf.convert_to_tensor(self.kernel_g) / norm)
        return tf.convert_to_tensor(self.kernel)

    def assign_kernel(self, kernel, bias) -> None:
        """Sets the applied kernel and bias (for weight norm: v = w, g = ||w||).

        An all-zero output channel (a float16 model's weights may round to it)
        gets g = 0 and v = 1, so that ``g * v / ||v||`` is 0 and its gradients
        finite, where v = 0 would give 0 / 0.
        """
        kernel = tf.convert_to_tensor(kernel, dtype=self.variable_dtype)
        if self.weight_norm:
            norm = tf.norm(tf.reshape(kernel, [-1, kernel.shape[-1]]), axis=0)
            self.kernel_v.assign(tf.where(norm > 0, kernel, tf.ones_like(kernel)))
            self.kernel_g.assign(norm)
        else:
            self.kernel.assign(kernel)
        self.bias.assign(tf.convert_to_tensor(bias, dtype=self.variable_dtype))
