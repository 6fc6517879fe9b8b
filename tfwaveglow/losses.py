"""WaveGlow's negative log-likelihood (NVIDIA's ``WaveGlowLoss``)."""

from __future__ import annotations

import tensorflow as tf


def nll_terms(out: dict, sigma: float = 1.0) -> dict:
    """The loss and its named terms, each divided by ``B * g * S / g`` (z's size).

    ``loss/total = loss/z - loss/log_s - loss/log_det_w`` with
    ``loss/z = sum(z^2) / (2 sigma^2)``. No Gaussian constant is added, so a
    well-trained model has a negative loss.

    Args:
      out: :meth:`WaveGlow.forward`'s dict (``z`` ``[B, S / g, g]``,
        ``log_s_sum`` and ``log_det_w_sum`` scalars).
      sigma: the prior's standard deviation (1.0 in training).

    Returns:
      dict of float32 scalars: ``loss/total``, ``loss/z``, ``loss/log_s``,
      ``loss/log_det_w``.
    """
    z = tf.cast(out["z"], tf.float32)
    size = tf.cast(tf.size(z), tf.float32)
    sigma = tf.cast(sigma, tf.float32)
    z_term = tf.reduce_sum(tf.square(z)) / (2.0 * sigma * sigma) / size
    log_s_term = tf.cast(out["log_s_sum"], tf.float32) / size
    log_det_term = tf.cast(out["log_det_w_sum"], tf.float32) / size
    return {
        "loss/total": z_term - log_s_term - log_det_term,
        "loss/z": z_term,
        "loss/log_s": log_s_term,
        "loss/log_det_w": log_det_term,
    }


def nll_loss(out: dict, sigma: float = 1.0) -> tf.Tensor:
    """NVIDIA's WaveGlowLoss: ``[sum z^2 / (2 sigma^2) - sum log_s - sum log_det_w] / z.size``."""
    return nll_terms(out, sigma)["loss/total"]
