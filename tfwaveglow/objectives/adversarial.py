"""Least-squares GAN losses (LSGAN, as HiFi-GAN uses them) and feature matching.

Pure functions of discriminator outputs (:mod:`tfwaveglow.objectives.discriminators`):
``scores`` is a list of ``K`` score maps ``D_k(x)`` (any shapes, e.g. ``[B, H_k, W_k, 1]``),
``features`` a list of ``K`` lists of feature maps ``f_kl``. Every result is a
float32 scalar.

With ``x`` a real waveform and ``G`` a generated one (``mean`` over all elements of a map):

    discriminator_loss       = 1/K sum_k [ mean((1 - D_k(x))^2) + mean(D_k(G)^2) ]
    generator_adversarial_loss = 1/K sum_k mean((1 - D_k(G))^2)
    feature_matching_loss    = 1/K sum_k 1/L_k sum_l mean(|f_kl(x) - f_kl(G)|)

Each is **averaged** over the sub-discriminators (and feature matching over each
one's ``L_k`` layers first, so a deeper sub-discriminator does not weigh more), so
its scale does not depend on how many discriminators are enabled. HiFi-GAN sums
instead: its discriminator and generator terms equal ``K`` times these, and its
feature-matching term (weighted by 2) ``sum_k L_k`` times this one (for equal
``L_k``); weigh accordingly when transferring HiFi-GAN's loss weights.

Means are over the (per-replica) batch; under a multi-replica ``tf.distribute``
strategy scale by ``1 / num_replicas_in_sync`` before summing gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

__all__ = ["discriminator_loss", "feature_matching_loss", "generator_adversarial_loss"]


def _mean(values: list) -> tf.Tensor:
    return tf.add_n(values) / float(len(values))


def _check(name: str, first: Sequence, second: Sequence | None = None) -> None:
    if not len(first):
        raise ValueError(f"{name}: no sub-discriminator outputs")
    if second is not None and len(first) != len(second):
        raise ValueError(f"{name}: {len(first)} real against {len(second)} generated sub-discriminator outputs")


def discriminator_loss(real_scores: Sequence, fake_scores: Sequence) -> tf.Tensor:
    """The discriminators' LSGAN loss: real scores pulled to 1, generated ones to 0.

        L_D = 1/K sum_k [ mean((1 - D_k(x))^2) + mean(D_k(G)^2) ]

    Args:
      real_scores: ``K`` score maps of real waveforms, any shapes.
      fake_scores: the ``K`` maps of generated waveforms, same order (pass them
        through ``tf.stop_gradient`` or differentiate only the discriminators'
        variables, so the generator does not learn from this loss).

    Returns:
      float32 scalar.
    """
    _check("discriminator_loss", real_scores, fake_scores)
    terms = []
    for real, fake in zip(real_scores, fake_scores):
        real, fake = tf.cast(real, tf.float32), tf.cast(fake, tf.float32)
        terms.append(tf.reduce_mean(tf.square(1.0 - real)) + tf.reduce_mean(tf.square(fake)))
    return _mean(terms)


def generator_adversarial_loss(fake_scores: Sequence) -> tf.Tensor:
    """The generator's LSGAN loss: generated scores pulled to 1.

        L_adv = 1/K sum_k mean((1 - D_k(G))^2)

    Args:
      fake_scores: ``K`` score maps of generated waveforms, any shapes.

    Returns:
      float32 scalar.
    """
    _check("generator_adversarial_loss", fake_scores)
    return _mean([tf.reduce_mean(tf.square(1.0 - tf.cast(fake, tf.float32))) for fake in fake_scores])


def feature_matching_loss(real_features: Sequence[Sequence], fake_features: Sequence[Sequence]) -> tf.Tensor:
    """L1 distance between the discriminators' hidden activations on real and generated waveforms.

        L_fm = 1/K sum_k 1/L_k sum_l mean(|stop_gradient(f_kl(x)) - f_kl(G)|)

    The real features are constants (``tf.stop_gradient``): the loss trains the
    generator only, through the generated features.

    Args:
      real_features: ``K`` lists of feature maps of real waveforms (``L_k`` maps each, any shapes).
      fake_features: the same structure for generated waveforms (shapes equal map by map).

    Returns:
      float32 scalar.
    """
    _check("feature_matching_loss", real_features, fake_features)
    per_discriminator = []
    for k, (real_maps, fake_maps) in enumerate(zip(real_features, fake_features)):
        if not len(real_maps) or len(real_maps) != len(fake_maps):
            raise ValueError(
                f"feature_matching_loss: sub-discriminator {k} has {len(real_maps)} real and {len(fake_maps)} "
                "generated feature maps (need equally many, at least one)"
            )
        distances = [
            tf.reduce_mean(tf.abs(tf.stop_gradient(tf.cast(real, tf.float32)) - tf.cast(fake, tf.float32)))
            for real, fake in zip(real_maps, fake_maps)
        ]
        per_discriminator.append(_mean(distances))
    return _mean(per_discriminator)
