"""The optimizer and its learning-rate schedule, mixed precision and dynamic loss scaling."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from tfwaveglow.config import MIXED_PRECISION_DTYPES
from tfwaveglow.training.distribution import scalar_variable


def configure_mixed_precision(setting: bool | str, require_gpu: bool = True) -> tf.DType | None:
    """Sets Keras' mixed precision policy for ``train.mixed_precision``.

    Layers created afterwards keep float32 variables; the conditioning and the
    WNs compute in the returned dtype while the flow (1x1 convs, affine steps),
    the log-determinants and the loss stay float32.

    Args:
      setting: ``train.mixed_precision``: ``True`` for float16 where a GPU is
        present, ``"float16"`` or ``"bfloat16"`` for that dtype on any device
        (bfloat16 pays on CPUs with AVX-512 BF16 / AMX), ``False`` for float32.
      require_gpu: with ``True``, leave the policy alone when no GPU is visible
        (float16 on a CPU is slow and gains nothing).

    Returns:
      The compute dtype (``tf.float16`` / ``tf.bfloat16``), or None for float32.
    """
    if setting is True:
        if require_gpu and not tf.config.list_physical_devices("GPU"):
            return None
        setting = "float16"
    if setting is False:
        return None
    if setting not in MIXED_PRECISION_DTYPES:
        raise ValueError(f"mixed precision must be true, false or one of {MIXED_PRECISION_DTYPES}, got {setting!r}")
    keras.mixed_precision.set_global_policy(f"mixed_{setting}")
    return tf.as_dtype(setting)


@keras.saving.register_keras_serializable(package="tfwaveglow")
class TrainLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then constant, exponential or cosine decay.

    ``lr(t) = warm(t) * base * decay(t + step_offset - start)`` with
    ``warm(t) = min(1, (t + 1) / warmup_steps)`` (1 without warm-up),
    ``start = max(warmup_steps, decay_start)`` and
    ``decay(u) = 1`` (constant), ``rate ** (u / decay_steps)`` (exponential) or
    ``rate + (1 - rate) * (1 + cos(pi * min(u / decay_steps, 1))) / 2`` (cosine),
    ``u`` clipped at 0. With ``decay_over="cpu_budget"`` the decay's progress
    ``u / decay_steps`` is instead the share of ``budget_seconds`` that the
    variable :attr:`clock` (the run's training CPU seconds) has spent, so the
    whole decay fits a CPU-time budget whatever a step costs.

    The rate is finally multiplied by the variable :attr:`scale` when the
    trainer sets one (reduce-on-plateau and the divergence guard lower it; it
    lives in the checkpoint).

    Args:
      learning_rate: the base rate.
      schedule: ``constant``, ``exponential`` or ``cosine``.
      warmup_steps: length of the linear warm-up (0 = none).
      decay_steps: exponential: steps per factor ``decay_rate``; cosine: the
        length of the decay.
      decay_rate: exponential factor, or the cosine's final fraction.
      decay_start: the step before which the rate does not decay (the end of
        the warm-up if that is later), e.g. to anneal a resumed run.
      step_offset: the run's steps taken before this optimizer's first one
        (a run continued from shipped weights, ``train.py --continue_run``):
        the decay counts the run's steps, the warm-up the optimizer's own, so
        fresh Adam moments warm up again at the continued rate.
      decay_over: ``steps`` or ``cpu_budget`` (see above).
      budget_seconds: the CPU-time budget of ``cpu_budget``.
    """

    clock = None  # tf.Variable of the run's training CPU seconds (decay_over="cpu_budget")
    scale = None  # tf.Variable multiplying the rate (None = 1)

    def __init__(
        self,
        learning_rate,
        schedule="constant",
        warmup_steps=0,
        decay_steps=100000,
        decay_rate=0.5,
        decay_start=0,
        step_offset=0,
        decay_over="steps",
        budget_seconds=0.0,
    ):
        if schedule not in ("constant", "exponential", "cosine"):
            raise ValueError(f"unknown learning-rate schedule {schedule!r}")
        if decay_over not in ("steps", "cpu_budget"):
            raise ValueError(f"unknown decay_over {decay_over!r}")
        if decay_over == "cpu_budget" and budget_seconds <= 0:
            raise ValueError("decay_over='cpu_budget' needs budget_seconds > 0")
        self.learning_rate = float(learning_rate)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)
        self.decay_start = int(decay_start)
        self.step_offset = int(step_offset)
        self.decay_over = decay_over
        self.budget_seconds = float(budget_seconds)

    @classmethod
    def from_params(cls, train_params) -> "TrainLearningRate":
        """The generator's rate: ``train.learning_rate`` under ``train.lr_*``."""
        t = train_params
        return cls(
            t.learning_rate,
            t.lr_schedule,
            t.lr_warmup_steps,
            t.lr_decay_steps,
            t.lr_decay_rate,
            t.lr_decay_start,
            decay_over=t.lr_decay_over,
            budget_seconds=t.cpu_seconds_budget,
        )

    @classmethod
    def for_discriminators(cls, adversarial_params, train_params) -> "TrainLearningRate":
        """The discriminators' rate: ``adversarial.learning_rate`` under ``adversarial.lr_*``.

        No warm-up; the decay counts what the generator's counts (``train.lr_decay_over``).
        """
        a, t = adversarial_params, train_params
        return cls(
            a.learning_rate,
            a.lr_schedule,
            0,
            a.lr_decay_steps,
            a.lr_decay_rate,
            decay_over=t.lr_decay_over,
            budget_seconds=t.cpu_seconds_budget,
        )

    def _decay_progress(self, step):
        """``u / decay_steps``: steps after the decay's start, or the budget's spent share."""
        if self.decay_over == "cpu_budget":
            if self.clock is None:
                raise ValueError("decay_over='cpu_budget' needs the schedule's clock variable set")
            return tf.cast(self.clock, tf.float32) / self.budget_seconds
        after_start = tf.maximum(step + self.step_offset - max(self.warmup_steps, self.decay_start), 0.0)
        return after_start / self.decay_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.learning_rate, tf.float32)
        if self.schedule == "exponential":
            lr = lr * tf.pow(self.decay_rate, self._decay_progress(step))
        elif self.schedule == "cosine":
            progress = tf.minimum(self._decay_progress(step), 1.0)
            lr = lr * (self.decay_rate + (1.0 - self.decay_rate) * 0.5 * (1.0 + tf.cos(math.pi * progress)))
        if self.warmup_steps > 0:
            lr = lr * tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        if self.scale is not None:
            lr = lr * tf.cast(self.scale, tf.float32)
        return lr

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "schedule": self.schedule,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "decay_start": self.decay_start,
            "step_offset": self.step_offset,
            "decay_over": self.decay_over,
            "budget_seconds": self.budget_seconds,
        }


class _SummedGradientAdam(keras.optimizers.Adam):
    """Adam for gradients already summed over replicas.

    The training step all-reduces the gradients once itself, so that the
    gradient norm, clipping and the finite check see the global gradient;
    Keras' optimizer would otherwise all-reduce them a second time.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def make_discriminator_optimizer(adversarial_params, schedule: TrainLearningRate) -> keras.optimizers.Optimizer:
    """Adam for the discriminators at ``adversarial.learning_rate``, betas ``adversarial.beta_1 / beta_2``.

    HiFi-GAN's betas (0.8 / 0.99) by default; like :func:`make_optimizer` it takes
    gradients that the step has already summed over replicas.
    """
    a = adversarial_params
    return _SummedGradientAdam(learning_rate=schedule, beta_1=a.beta_1, beta_2=a.beta_2, epsilon=1e-8)


def make_optimizer(train_params, schedule: TrainLearningRate | None = None) -> keras.optimizers.Optimizer:
    """Adam at ``train.learning_rate`` (NVIDIA: 1e-4) under ``train.lr_schedule``.

    Adam's other settings are PyTorch's defaults, as in NVIDIA's training
    (beta 0.9 / 0.999, epsilon 1e-8). Gradient clipping is done by the step,
    not the optimizer, so that the clipped norm is the global one.

    Args:
      train_params: ``params.train``.
      schedule: the schedule to use (default: one made from ``train_params``);
        the trainer passes its own to set its ``step_offset`` after a restore.
    """
    if schedule is None:
        schedule = TrainLearningRate.from_params(train_params)
    return _SummedGradientAdam(learning_rate=schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


class DynamicLossScale(tf.Module):
    """Dynamic loss scaling for float16 gradients.

    The loss is multiplied by ``scale`` before differentiation and the
    gradients divided by it after. A step whose scaled gradient overflows is
    skipped and halves the scale (not below 1); ``growth_steps`` finite steps
    in a row double it.

    Args:
      initial_scale: starting scale (2**15, as Keras and apex use).
      growth_steps: finite steps between doublings.
    """

    def __init__(self, initial_scale: float = 2.0**15, growth_steps: int = 2000, name=None):
        super().__init__(name=name)
        self.growth_steps = int(growth_steps)
        self.scale = scalar_variable("loss_scale", float(initial_scale), tf.float32)
        self.good_steps = scalar_variable("loss_scale_good_steps", 0, tf.int64)

    def update(self, grads_finite):
        """Halves the scale after an overflow, doubles it after ``growth_steps`` finite steps."""

        def on_finite():
            grow = self.good_steps + 1 >= self.growth_steps
            new_scale = tf.where(grow, self.scale * 2.0, self.scale)
            # Keep the doubled scale only while it is itself finite.
            self.scale.assign(tf.where(tf.math.is_finite(new_scale), new_scale, self.scale))
            self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), self.good_steps + 1))
            return tf.constant(True)

        def on_overflow():
            self.scale.assign(tf.maximum(self.scale / 2.0, 1.0))
            self.good_steps.assign(0)
            return tf.constant(True)

        return tf.cond(grads_finite, on_finite, on_overflow)
