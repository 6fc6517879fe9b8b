"""Rules that watch a run and lower its learning rate: the divergence guard and reduce-on-plateau.

Their state lives in variables, so a checkpoint holds it and a resumed run goes
on judging where the killed one stopped.

- :class:`DivergenceGuard` judges each step inside the compiled step: a step
  whose total loss jumps far above its running level, or whose gradient norm
  does, is a spike and is skipped. The loop counts spikes in a row and, past
  ``train.guard_max_skips``, rolls the state back to the last good checkpoint
  and lowers the rate (:meth:`tfwaveglow.training.Trainer.roll_back`).
- :class:`PlateauRule` is judged after each validation: a held-out score that
  stops improving for ``train.lr_plateau_patience`` validations lowers the rate.

Both lower the rate through :class:`LearningRateScale`, the one variable every
optimizer's schedule multiplies its rate by.
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfwaveglow.training.distribution import scalar_variable


class LearningRateScale(tf.Module):
    """The factor (1 at the start) by which every optimizer's scheduled rate is multiplied.

    Attributes:
      value: float32 scalar variable.
      reductions: int64 count of the times it was lowered, by reason.
    """

    def __init__(self, name=None):
        super().__init__(name=name)
        self.value = scalar_variable("lr_scale", 1.0, tf.float32)
        self.plateau_reductions = scalar_variable("plateau_reductions", 0, tf.int64)
        self.rollbacks = scalar_variable("rollbacks", 0, tf.int64)

    def lower(self, factor: float) -> float:
        """Multiplies the scale by ``factor``; returns the new scale."""
        self.value.assign(self.value * factor)
        return float(self.value.numpy())


class DivergenceGuard(tf.Module):
    """Running levels of the loss and the gradient norm, one set per step mode, and the spike test.

    A finite step of mode ``m`` is a spike when, after ``warmup_steps`` finite
    steps of that mode have set the levels,

    ``loss > mean_loss + factor * max(dev_loss, 1e-3)`` or ``grad_norm > factor * mean_grad_norm``,

    where the means and ``dev_loss`` (mean absolute deviation) are exponential
    moving averages with weight ``decay`` over the mode's accepted steps. A
    spike leaves the levels as they were. ``factor`` 0 turns the guard off.

    Args:
      factor, decay, warmup_steps: ``train.guard_factor``, ``guard_decay``, ``guard_warmup_steps``.
      num_modes: how many step modes keep their own levels (their losses differ in scale).
    """

    def __init__(self, factor: float, decay: float, warmup_steps: int, num_modes: int, name=None):
        super().__init__(name=name)
        self.factor, self.decay, self.warmup_steps = float(factor), float(decay), int(warmup_steps)
        zeros = [0.0] * num_modes
        self.loss_mean = scalar_variable("guard_loss_mean", zeros, tf.float32)
        self.loss_dev = scalar_variable("guard_loss_dev", zeros, tf.float32)
        self.grad_norm_mean = scalar_variable("guard_grad_norm_mean", zeros, tf.float32)
        self.count = scalar_variable("guard_count", [0] * num_modes, tf.int64)
        self.spikes = scalar_variable("guard_spikes", 0, tf.int64)

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    def judge(self, mode_index: int, loss, grad_norm, finite):
        """Whether this step is a spike; updates the levels with an accepted finite step.

        Args:
          mode_index: the step's mode (a Python int).
          loss, grad_norm: float32 scalars of the step.
          finite: bool scalar: both are finite.

        Returns:
          bool scalar: the step is a spike (always False when the guard is off).
        """
        if not self.enabled:
            return tf.constant(False)
        i = mode_index
        mean, dev, gn_mean = self.loss_mean[i], self.loss_dev[i], self.grad_norm_mean[i]
        judged = self.count[i] >= self.warmup_steps
        spike = tf.logical_and(
            tf.logical_and(finite, judged),
            tf.logical_or(loss > mean + self.factor * tf.maximum(dev, 1e-3), grad_norm > self.factor * gn_mean),
        )
        accept = tf.logical_and(finite, tf.logical_not(spike))
        first = tf.equal(self.count[i], 0)
        d = self.decay
        new_mean = tf.where(first, loss, d * mean + (1 - d) * loss)
        new_dev = tf.where(first, tf.zeros_like(dev), d * dev + (1 - d) * tf.abs(loss - mean))
        new_gn = tf.where(first, grad_norm, d * gn_mean + (1 - d) * grad_norm)

        def update(var, value):
            var.assign(tf.tensor_scatter_nd_update(var, [[i]], [tf.where(accept, value, var[i])]))

        update(self.loss_mean, new_mean)
        update(self.loss_dev, new_dev)
        update(self.grad_norm_mean, new_gn)
        update(self.count, self.count[i] + 1)
        self.spikes.assign_add(tf.cast(spike, tf.int64))
        return spike


class PlateauRule(tf.Module):
    """Reduce-on-plateau of a held-out score (lower is better).

    After ``patience`` validations in a row whose score did not fall below
    ``best - min_delta``, the scale is multiplied by ``factor`` and the count
    starts again. ``patience`` 0 turns the rule off.
    """

    def __init__(self, patience: int, factor: float, min_delta: float, metric: str, name=None):
        super().__init__(name=name)
        self.patience, self.factor, self.min_delta, self.metric = int(patience), float(factor), float(min_delta), metric
        self.best = scalar_variable("plateau_best", math.inf, tf.float32)
        self.bad_validations = scalar_variable("plateau_bad_validations", 0, tf.int64)

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    def observe(self, valid: dict, scale: LearningRateScale) -> bool:
        """Judges one validation's results; returns whether the rate was lowered.

        Raises:
          KeyError: the validation has no ``metric`` (the message names those it has).
        """
        if not self.enabled:
            return False
        if self.metric not in valid:
            raise KeyError(f"train.lr_plateau_metric {self.metric!r} is not among the validation's {sorted(valid)}")
        score = float(valid[self.metric])
        if score < float(self.best.numpy()) - self.min_delta:
            self.best.assign(score)
            self.bad_validations.assign(0)
            return False
        self.bad_validations.assign_add(1)
        if int(self.bad_validations.numpy()) < self.patience:
            return False
        self.bad_validations.assign(0)
        scale.lower(self.factor)
        scale.plateau_reductions.assign_add(1)
        return True
