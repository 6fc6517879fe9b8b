"""Invertible 1x1 convolution (Glow) over the channel axis."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def random_rotation(channels: int, seed: int | None = None) -> np.ndarray:
    """A random orthonormal [channels, channels] matrix with determinant +1.

    QR of a standard-normal matrix; the first column is negated when the
    determinant is -1, so log|det W| starts at 0 and det stays positive.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((channels, channels)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.astype(np.float32)


@keras.saving.register_keras_serializable(package="tfwaveglow")
class Invertible1x1Conv(keras.layers.Layer):
    """``z = W x`` mixing the channels of every time step.

    ``kernel`` is ``W`` in NVIDIA's orientation ``[out, in]`` (its conv weight
    ``[c, c, 1]`` without the last axis); on channels-last tensors the layer
    computes ``x @ W^T``.

    Args:
      channels: number of channels ``c``.
      seed: seed of the random rotation that initialises ``W``.

    Shapes: ``[batch, groups, c] -> [batch, groups, c]``.
    """

    def __init__(self, channels: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.seed = seed

    def build(self, input_shape=None):
        # np.random follows keras.utils.set_random_seed, so unseeded models are reproducible too.
        seed = self.seed if self.seed is not None else int(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
        init = random_rotation(self.channels, seed)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.channels, self.channels),
            initializer=lambda shape, dtype=None: tf.constant(init, dtype=dtype or "float32"),
        )
        self.built = True

    def log_abs_det(self) -> tf.Tensor:
        """log|det W| in float32 (a scalar).

        Computed as sum(log|diag R|) of W = QR (|det Q| = 1): the same value and
        gradient (W^-T) as slogdet, and, unlike slogdet, XLA-compilable, so a
        training step can run under ``jit_compile``.
        """
        r = tf.linalg.qr(tf.cast(self.kernel, tf.float32))[1]
        return tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))))

    def forward(self, x):
        """Returns ``(x @ W^T, log_det)``; ``log_det = batch * groups * log|det W|`` (float32 scalar)."""
        w = tf.cast(self.kernel, x.dtype)
        z = tf.linalg.matmul(x, w, transpose_b=True)
        shape = tf.shape(x)
        log_det = tf.cast(shape[0] * shape[1], tf.float32) * self.log_abs_det()
        return z, log_det

    def inverse_kernel(self) -> tf.Tensor:
        """``W^-1`` computed in float32."""
        return tf.linalg.inv(tf.cast(self.kernel, tf.float32))

    def inverse(self, z, inverse_kernel=None):
        """``z @ (W^-1)^T``; pass a precomputed ``inverse_kernel`` to reuse it."""
        w_inv = self.inverse_kernel() if inverse_kernel is None else inverse_kernel
        return tf.linalg.matmul(z, tf.cast(w_inv, z.dtype), transpose_b=True)

    def call(self, x):
        return self.forward(x)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, seed=self.seed)
        return config
