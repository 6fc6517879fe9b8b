"""Training: optimizer and schedule, compiled steps, distribution, checkpoints, summaries, NaN guard.

    summary = train(params, "corpus/train.txt", "corpus/wavs", "corpus/mels", "runs/exp1")

A run directory holds

- ``params.yaml``: the resolved config (what :func:`tfwaveglow.load_model` reads);
- ``checkpoints/``: one ``tf.train.Checkpoint`` (``step``, ``model``,
  ``optimizer``, ``loss_scale``, ``nonfinite_steps``) under a
  ``tf.train.CheckpointManager``; a run restarts from the latest one;
- ``inference/``: :func:`tfwaveglow.save_model`'s small folded artifact,
  refreshed at every checkpoint;
- ``train/``, ``valid/``: TensorBoard event files; ``metrics.csv``: the same
  scalars as text;
- ``train.lock``: held by the process that trains in it, from
  :meth:`Trainer.restore` to the end of :meth:`Trainer.fit`, so that a second
  trainer on the same directory stops with
  :class:`tfwaveglow.run_lock.RunDirectoryBusyError` instead of racing it.

The data position is a function of the step: the training stream is a pure
function of ``(train.seed, batch index)`` (:func:`tfwaveglow.data.make_dataset`),
and a run resumed at step ``k`` opens it at batch ``k`` (``skip_batches=k``,
which costs nothing), so no iterator state is checkpointed. With
``train.deterministic`` (op determinism, deterministic input order) a resumed
run repeats an unbroken one exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import math
import os
import shutil
import time
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging
from tensorflow.python.checkpoint import checkpoint_management

from tfwaveglow.config import MIXED_PRECISION_DTYPES, Params, load_params, save_params
from tfwaveglow.losses import nll_terms
from tfwaveglow.model import WaveGlow
from tfwaveglow.model_io import CHECKPOINT_SUBDIR, PARAMS_FILE, load_model, save_model
from tfwaveglow.run_lock import RunDirectoryLock

__all__ = [
    "INFERENCE_SUBDIR",
    "KillSafeCheckpointManager",
    "LOSS_TERMS",
    "STRATEGIES",
    "DynamicLossScale",
    "NonFiniteTrainingError",
    "TrainLearningRate",
    "Trainer",
    "configure_mixed_precision",
    "create_strategy",
    "drop_metrics_after",
    "is_chief",
    "make_optimizer",
    "remove_unlisted_checkpoint_files",
    "train",
    "training_dataset",
]

STRATEGIES = ("default", "mirrored", "multi_worker")
LOSS_TERMS = ("loss/total", "loss/z", "loss/log_s", "loss/log_det_w")
INFERENCE_SUBDIR = "inference"
METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = (
    "step",
    "time",
    "split",
    *LOSS_TERMS,
    "learning_rate",
    "grad_norm",
    "steps_per_sec",
    "samples_per_sec",
    "train_hours",
    "cpu_hours",
)
AUDIO_SUMMARY_CLIPS = 2
# log(1e-5): the floor of the Tacotron 2 log-mel, the dark end of mel images.
_LOG_MEL_FLOOR = math.log(1e-5)


class NonFiniteTrainingError(RuntimeError):
    """Too many non-finite steps in a row; the last good checkpoint is left as it was."""


# --------------------------------------------------------------------------- set-up
def create_strategy(name: str = "default") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name.

    Args:
      name: ``default`` (one device), ``mirrored`` (every GPU of this machine,
        or every logical CPU device where there is no GPU) or ``multi_worker``
        (``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG``
        environment variable; create it before any other TensorFlow op runs).

    Raises:
      ValueError: an unknown name, or ``multi_worker`` without ``TF_CONFIG``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "strategy 'multi_worker' needs the TF_CONFIG environment variable (cluster spec and this "
                'task), e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
                '"index": 0}}'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, summaries and params (always true off a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


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

    ``lr(t) = warm(t) * base * decay(t - start)`` with
    ``warm(t) = min(1, (t + 1) / warmup_steps)`` (1 without warm-up),
    ``start = max(warmup_steps, decay_start)`` and
    ``decay(u) = 1`` (constant), ``rate ** (u / decay_steps)`` (exponential) or
    ``rate + (1 - rate) * (1 + cos(pi * min(u / decay_steps, 1))) / 2`` (cosine),
    ``u`` clipped at 0.

    Args:
      learning_rate: the base rate.
      schedule: ``constant``, ``exponential`` or ``cosine``.
      warmup_steps: length of the linear warm-up (0 = none).
      decay_steps: exponential: steps per factor ``decay_rate``; cosine: the
        length of the decay.
      decay_rate: exponential factor, or the cosine's final fraction.
      decay_start: the step before which the rate does not decay (the end of
        the warm-up if that is later), e.g. to anneal a resumed run.
    """

    def __init__(
        self, learning_rate, schedule="constant", warmup_steps=0, decay_steps=100000, decay_rate=0.5, decay_start=0
    ):
        if schedule not in ("constant", "exponential", "cosine"):
            raise ValueError(f"unknown learning-rate schedule {schedule!r}")
        self.learning_rate = float(learning_rate)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)
        self.decay_start = int(decay_start)

    @classmethod
    def from_params(cls, train_params) -> "TrainLearningRate":
        t = train_params
        return cls(
            t.learning_rate, t.lr_schedule, t.lr_warmup_steps, t.lr_decay_steps, t.lr_decay_rate, t.lr_decay_start
        )

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.learning_rate, tf.float32)
        after_start = tf.maximum(step - max(self.warmup_steps, self.decay_start), 0.0)
        if self.schedule == "exponential":
            lr = lr * tf.pow(self.decay_rate, after_start / self.decay_steps)
        elif self.schedule == "cosine":
            progress = tf.minimum(after_start / self.decay_steps, 1.0)
            lr = lr * (self.decay_rate + (1.0 - self.decay_rate) * 0.5 * (1.0 + tf.cos(math.pi * progress)))
        if self.warmup_steps > 0:
            lr = lr * tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return lr

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "schedule": self.schedule,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "decay_start": self.decay_start,
        }


class _SummedGradientAdam(keras.optimizers.Adam):
    """Adam for gradients already summed over replicas.

    The training step all-reduces the gradients once itself, so that the
    gradient norm, clipping and the finite check see the global gradient;
    Keras' optimizer would otherwise all-reduce them a second time.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def make_optimizer(train_params) -> keras.optimizers.Optimizer:
    """Adam at ``train.learning_rate`` (NVIDIA: 1e-4) under ``train.lr_schedule``.

    Adam's other settings are PyTorch's defaults, as in NVIDIA's training
    (beta 0.9 / 0.999, epsilon 1e-8). Gradient clipping is done by the step,
    not the optimizer, so that the clipped norm is the global one.
    """
    return _SummedGradientAdam(
        learning_rate=TrainLearningRate.from_params(train_params), beta_1=0.9, beta_2=0.999, epsilon=1e-8
    )


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
        self.scale = _scalar_variable("loss_scale", float(initial_scale), tf.float32)
        self.good_steps = _scalar_variable("loss_scale_good_steps", 0, tf.int64)

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


def _scalar_variable(name, value, dtype):
    return tf.Variable(
        value,
        name=name,
        dtype=dtype,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


class KillSafeCheckpointManager(tf.train.CheckpointManager):
    """A ``CheckpointManager`` whose index never lists a checkpoint it is deleting.

    TensorFlow's manager rewrites the ``checkpoint`` index with the oldest
    checkpoint still listed, deletes that checkpoint's files, and rewrites the
    index again: a process killed in between leaves an index that names a
    half-deleted checkpoint. This one lists only the newest ``max_to_keep``
    (the ones the sweep keeps), so the index is right before any file goes.
    The index itself is replaced atomically, and each checkpoint is written
    under temporary names before it is listed.
    """

    def _record_state(self):
        kept = list(self._maybe_delete.items())
        if self._max_to_keep and not self._keep_checkpoint_every_n_hours:
            kept = kept[-self._max_to_keep :]
        filenames, timestamps = zip(*kept)
        checkpoint_management.update_checkpoint_state_internal(
            self._directory,
            model_checkpoint_path=self.latest_checkpoint,
            all_model_checkpoint_paths=filenames,
            all_model_checkpoint_timestamps=timestamps,
            last_preserved_timestamp=self._last_preserved_timestamp,
            save_relative_paths=True,
        )


def drop_metrics_after(model_dir: str, step: int) -> int:
    """Removes the ``metrics.csv`` rows of steps after ``step``; returns how many.

    A run stopped between two checkpoints has logged steps that the resumed run
    trains again; without this their rows would appear twice.
    """
    path = os.path.join(model_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    kept = lines[:1]
    for line in lines[1:]:
        head = line.split(",", 1)[0]
        if head.strip().isdigit() and int(head) > step:
            continue
        kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
    return dropped


def remove_unlisted_checkpoint_files(checkpoint_dir: str) -> list[str]:
    """Deletes ``ckpt-*`` files the index does not list (left by a kill mid-write or mid-delete).

    Returns:
      The paths removed.
    """
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    if state is None:
        return []
    listed = {os.path.basename(p) for p in state.all_model_checkpoint_paths}
    listed.add(os.path.basename(state.model_checkpoint_path))
    removed = []
    for path in glob.glob(os.path.join(checkpoint_dir, "ckpt-*")):
        # ckpt-N.index and ckpt-N.data-* of a listed checkpoint stay; anything else
        # (an unlisted N, a ckpt-N_temp directory) is left over from a kill.
        if os.path.basename(path).split(".", 1)[0] in listed:
            continue
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
        removed.append(path)
    return removed


# --------------------------------------------------------------------------- trainer
@dataclasses.dataclass
class _Meter:
    """Running means of the step results between two reports, and the time they took."""

    sums: dict = dataclasses.field(default_factory=dict)
    count: int = 0
    seconds: float = 0.0
    steps: int = 0

    def add(self, values: dict, seconds: float, finite: bool) -> None:
        self.seconds += seconds
        self.steps += 1
        if finite:
            self.count += 1
            for key, value in values.items():
                self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def means(self) -> dict:
        return {k: v / self.count for k, v in self.sums.items()} if self.count else {}

    def steps_per_sec(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


class Trainer:
    """The model, optimizer, checkpoint and compiled steps of one run.

    Args:
      params: the resolved config.
      model_dir: the run directory (created when missing).
      strategy: a ``tf.distribute`` strategy or its name (see
        :func:`create_strategy`); created first when a name is given.
      mixed_precision: ``True``/``"float16"`` (``mixed_float16``), ``"bfloat16"``
        or ``False`` regardless of the hardware; None (default) follows
        ``params.train.mixed_precision`` (``true`` only where a GPU is present).
      loss_scaling: dynamic loss scaling (default: on with float16).
    """

    def __init__(
        self,
        params: Params,
        model_dir: str | os.PathLike,
        strategy: tf.distribute.Strategy | str | None = None,
        mixed_precision: bool | str | None = None,
        loss_scaling: bool | None = None,
    ):
        self.strategy = create_strategy(strategy or "default") if isinstance(strategy, str | None) else strategy
        self.params = params
        self.model_dir = os.fspath(model_dir)
        self.chief = is_chief(self.strategy)
        # The chief writes the run directory; the other workers save into scratch directories.
        self.run_lock = RunDirectoryLock(self.model_dir)
        t = params.train
        if t.deterministic:
            tf.config.experimental.enable_op_determinism()
        if mixed_precision is None:
            mixed_dtype = configure_mixed_precision(t.mixed_precision)
        else:
            mixed_dtype = configure_mixed_precision(mixed_precision, require_gpu=False)
        self.mixed_precision = mixed_dtype is not None
        self.compute_dtype = mixed_dtype or tf.float32
        # bfloat16 has float32's exponent range: no loss scaling needed.
        self.loss_scaling = (mixed_dtype == tf.float16) if loss_scaling is None else bool(loss_scaling)
        # Every worker seeds the same way, so all replicas start from the same weights.
        keras.utils.set_random_seed(t.seed)

        with self.strategy.scope():
            self.model = WaveGlow.from_params(params, weight_norm=t.weight_norm)
            self.optimizer = make_optimizer(t)
            self.optimizer.build(self.model.trainable_variables)
            self.step = _scalar_variable("step", 0, tf.int64)
            self.nonfinite_steps = _scalar_variable("nonfinite_steps", 0, tf.int64)
            # The run's training time so far, wall clock and this process's CPU time (all
            # threads), carried across resumes (0 for runs saved before these existed).
            self.train_seconds = _scalar_variable("train_seconds", 0.0, tf.float64)
            self.cpu_seconds = _scalar_variable("cpu_seconds", 0.0, tf.float64)
            self.loss_scale = DynamicLossScale()
        self.checkpoint = tf.train.Checkpoint(
            step=self.step,
            model=self.model,
            optimizer=self.optimizer,
            loss_scale=self.loss_scale,
            nonfinite_steps=self.nonfinite_steps,
            train_seconds=self.train_seconds,
            cpu_seconds=self.cpu_seconds,
        )
        self.checkpoint_dir = os.path.join(self.model_dir, CHECKPOINT_SUBDIR)
        self.manager = KillSafeCheckpointManager(
            self.checkpoint, self.checkpoint_dir, max_to_keep=t.max_to_keep, step_counter=self.step
        )
        self.trace_count = 0  # times the train step was traced (1 with a pinned signature)
        self._train_step = None
        self._eval_step = None
        self._global_batch = None
        self._folded = None
        # autograph=False: the steps branch with tf.cond explicitly, and tracing is much faster.
        self._jit_loss_and_grads = (
            tf.function(self._loss_and_grads, jit_compile=True, autograph=False) if t.jit_compile else None
        )
        self._writers = None

    # ---------------------------------------------------------------- state
    def restore(self, init_from: str | os.PathLike | None = None) -> int:
        """Resumes from the latest checkpoint in ``model_dir``, else starts fresh.

        A fresh start saves ``params.yaml`` and, with ``init_from``, copies the
        weights of :func:`tfwaveglow.load_model` (a converted NVIDIA model, an
        inference directory or another run): fine-tuning, so the optimizer
        starts anew. A resumed run ignores ``init_from``.

        Returns:
          The step training continues from.

        Raises:
          ValueError: ``model_dir`` holds a run of another model, or the
            ``init_from`` model does not fit ``params.model``.
          FileNotFoundError, tfwaveglow.ModelLoadError: ``init_from`` is not a
            loadable model.
          tfwaveglow.run_lock.RunDirectoryBusyError: another process trains in
            ``model_dir``.
        """
        self._lock_run_directory()
        try:
            step = self._restore(init_from)
        except BaseException:
            self.run_lock.release()
            raise
        return step

    def _restore(self, init_from) -> int:
        self._check_saved_params()
        latest = self.manager.latest_checkpoint
        if latest and self.chief:
            removed = remove_unlisted_checkpoint_files(self.checkpoint_dir)
            if removed:
                logging.info("removed files of unfinished checkpoints: %s", removed)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            step = int(self.step.numpy())
            logging.info("resumed from %s at step %d", latest, step)
            if init_from:
                logging.info("a checkpoint exists in %s: --init_from %s is ignored", self.model_dir, init_from)
        else:
            step = 0
            if init_from:
                self.warm_start(init_from)
        if self.chief:
            os.makedirs(self.model_dir, exist_ok=True)
            save_params(self.params, os.path.join(self.model_dir, PARAMS_FILE))
            dropped = drop_metrics_after(self.model_dir, step)
            if dropped:
                logging.info("dropped %d metrics.csv rows past step %d (logged after its checkpoint)", dropped, step)
        return step

    def warm_start(self, init_from: str | os.PathLike) -> None:
        """Copies a saved model's weights into the training model (weights only)."""
        init_from = os.fspath(init_from)
        loaded = load_model(init_from)
        try:
            self.model.copy_weights_from(loaded)
        except ValueError as e:
            raise ValueError(f"--init_from {init_from}: its model does not fit params.model: {e}") from e
        logging.info("initialised weights from %s", init_from)

    def _lock_run_directory(self) -> None:
        if self.chief:
            self.run_lock.acquire()

    def _check_saved_params(self) -> None:
        path = os.path.join(self.model_dir, PARAMS_FILE)
        if not os.path.isfile(path):
            return
        saved = load_params(path)
        if saved.model != self.params.model:
            old, new = dataclasses.asdict(saved.model), dataclasses.asdict(self.params.model)
            diff = {k: (old[k], new[k]) for k in old if old[k] != new[k]}
            raise ValueError(
                f"{path}: the run in {self.model_dir} has a different model (saved, given): {diff}; "
                "use a new model_dir or the saved params"
            )
        if saved != self.params:
            logging.info("params differ from %s outside the model section; the new ones are saved", path)

    def save(self) -> str | None:
        """Writes a checkpoint (chief: into ``checkpoints/``, plus ``inference/``).

        Other workers of a multi-worker run take part in the save (it may need
        collectives) into a scratch directory that is deleted at once.
        """
        if self.chief:
            path = self.manager.save(checkpoint_number=self.step)
            save_model(self.inference_model(), os.path.join(self.model_dir, INFERENCE_SUBDIR), self.params)
            logging.info("saved %s", path)
            return path
        resolver = self.strategy.cluster_resolver
        scratch = os.path.join(self.model_dir, f".worker_{resolver.task_type}_{resolver.task_id}")
        self.checkpoint.write(os.path.join(scratch, "ckpt"))
        shutil.rmtree(scratch, ignore_errors=True)
        return None

    def inference_model(self) -> WaveGlow:
        """A weight-norm-free copy of the current weights (one instance, refreshed on each call)."""
        if self._folded is None:
            self._folded = WaveGlow.from_params(self.params, weight_norm=False)
        self._folded.copy_weights_from(self.model)
        return self._folded

    # ---------------------------------------------------------------- compiled steps
    def _loss_and_grads(self, mel, audio, weight, scale):
        with tf.GradientTape() as tape:
            out = self.model.forward(mel, audio)
            terms = nll_terms(out, sigma=self.params.train.sigma)
            objective = terms["loss/total"] * weight
            if self.loss_scaling:
                objective = objective * scale
        variables = self.model.trainable_variables
        grads = tape.gradient(objective, variables)
        missing = [v.path for v, g in zip(variables, grads) if g is None]
        if missing:
            raise ValueError(f"no gradient for {missing}")
        return grads, terms

    def _replica_step(self, mel, audio):
        """One replica's share: gradients summed over replicas, and whether they can be applied."""
        ctx = tf.distribute.get_replica_context()
        # A non-finite input batch is replaced by zeros (the model refuses it) and flagged.
        batch_finite = tf.logical_and(tf.reduce_all(tf.math.is_finite(mel)), tf.reduce_all(tf.math.is_finite(audio)))
        mel = tf.where(batch_finite, mel, tf.zeros_like(mel))
        audio = tf.where(batch_finite, audio, tf.zeros_like(audio))
        mel = tf.cast(mel, self.compute_dtype)  # the flow itself stays float32 (WaveGlow.forward)
        # Each replica's loss is its batch's mean; weighting it by its share of the
        # global batch makes the summed gradient the gradient of the global mean.
        weight = tf.cast(tf.shape(mel)[0], tf.float32) / self._global_batch
        scale = tf.convert_to_tensor(self.loss_scale.scale)
        fn = self._jit_loss_and_grads or self._loss_and_grads
        grads, terms = fn(mel, audio, weight, scale)

        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        terms = ctx.all_reduce(tf.distribute.ReduceOp.SUM, {k: v * weight for k, v in terms.items()})
        bad_batches = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(batch_finite, tf.float32))
        if self.loss_scaling:
            grads = [g / scale for g in grads]
        grad_norm = tf.linalg.global_norm(grads)
        grads_finite = tf.math.is_finite(grad_norm)
        inputs_finite = tf.equal(bad_batches, 0.0)
        loss_finite = tf.logical_and(tf.math.is_finite(terms["loss/total"]), inputs_finite)
        clip = self.params.train.grad_clip_norm
        if clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, clip, use_norm=grad_norm)
        return grads, terms, grad_norm, inputs_finite, loss_finite, grads_finite

    def _apply_gradients(self, grads):
        self.optimizer.apply(grads, self.model.trainable_variables)

    def _step_fn(self, batch):
        self.trace_count += 1
        mel, audio = batch
        strategy = self.strategy
        grads, terms, grad_norm, inputs_finite, loss_finite, grads_finite = strategy.run(
            self._replica_step, args=(mel, audio)
        )

        # Every replica computed these from the same all-reduced values.
        def first(value):
            return strategy.experimental_local_results(value)[0]

        terms = {k: first(v) for k, v in terms.items()}
        grad_norm, inputs_finite = first(grad_norm), first(inputs_finite)
        loss_finite, grads_finite = first(loss_finite), first(grads_finite)
        learning_rate = self.optimizer.learning_rate
        finite = tf.logical_and(loss_finite, grads_finite)

        def apply():
            strategy.run(self._apply_gradients, args=(grads,))
            return tf.constant(True)

        applied = tf.cond(finite, apply, lambda: tf.constant(False))
        if self.loss_scaling:
            # A finite loss with an overflowing scaled gradient is the scale's fault:
            # the scale drops and the step does not count against the NaN guard.
            overflow = tf.logical_and(
                tf.logical_and(loss_finite, tf.logical_not(grads_finite)), self.loss_scale.scale > 1.0
            )
            self.loss_scale.update(grads_finite)
        else:
            overflow = tf.constant(False)
        self.nonfinite_steps.assign_add(tf.cast(tf.logical_not(finite) & tf.logical_not(overflow), tf.int64))
        self.step.assign_add(1)
        return {
            **terms,
            "grad_norm": grad_norm,
            "learning_rate": learning_rate,
            "loss_scale": tf.convert_to_tensor(self.loss_scale.scale),
            "applied": applied,
            "inputs_finite": inputs_finite,
            "loss_finite": loss_finite,
            "grads_finite": grads_finite,
            "overflow": overflow,
        }

    def train_step(self, batch):
        """One compiled optimisation step on a (distributed) batch ``(mel, audio)``.

        The first call fixes the input signature (``mel [B, F, n_mel]``,
        ``audio [B, S]``, static); later batches must match it, so nothing is
        retraced. Returns the step's scalars as NumPy values.
        """
        if self._global_batch is None:
            if self.strategy.num_replicas_in_sync != 1:
                raise ValueError("under a multi-replica strategy, steps run through fit() (it sets the global batch)")
            self._global_batch = int(batch[0].shape[0])
        if self._train_step is None:
            spec = _element_spec(batch)
            self._train_step = tf.function(self._step_fn, input_signature=[spec], autograph=False)
        return {k: v.numpy() for k, v in self._train_step(batch).items()}

    def _eval_fn(self, mel, audio):
        dtype = self.compute_dtype
        out = self.model.forward(tf.cast(mel, dtype), tf.cast(audio, dtype))
        return nll_terms(out, sigma=self.params.train.sigma)

    def evaluate(self, dataset: tf.data.Dataset) -> dict:
        """Mean loss terms over a finite dataset of ``(mel, audio)`` batches (this process only)."""
        if self._eval_step is None:
            self._eval_step = tf.function(self._eval_fn, input_signature=list(dataset.element_spec), autograph=False)
        sums, batches = {}, 0
        for mel, audio in dataset:
            for key, value in self._eval_step(mel, audio).items():
                sums[key] = sums.get(key, 0.0) + float(value)
            batches += 1
        if not batches:
            raise ValueError("the validation dataset is empty")
        return {k: v / batches for k, v in sums.items()}

    # ---------------------------------------------------------------- loop
    def fit(
        self,
        dataset_fn: Callable[[int, tf.distribute.InputContext], tf.data.Dataset],
        valid_dataset: tf.data.Dataset | None = None,
        steps: int | None = None,
    ) -> dict:
        """Trains until ``steps`` (default ``train.steps``), resuming at ``self.step``.

        Args:
          dataset_fn: ``(start_step, input_context) -> tf.data.Dataset``, run by
            ``strategy.distribute_datasets_from_function`` once per input pipeline
            (one per worker): that pipeline's share of the global batches an
            uninterrupted run would train on from step ``start_step`` on, as
            per-replica batches ``(mel [b, F, n_mel], audio [b, S])`` (static
            shapes, ``b = B / num_replicas_in_sync``), at least up to ``steps``.
            :func:`training_dataset` is one (it reads only its share);
            :func:`split_global_batches` makes one from a stream of global batches.
          valid_dataset: finite batches for validation NLL and audio summaries.
          steps: total steps to reach.

        Returns:
          ``{"step", "train", "valid", "nonfinite_steps", "checkpoint"}``.

        Raises:
          NonFiniteTrainingError: ``train.max_consecutive_nonfinite``
            non-finite steps in a row; nothing is saved after the last good
            checkpoint.
          tfwaveglow.run_lock.RunDirectoryBusyError: another process trains in
            ``model_dir``.

        The run directory stays locked until it returns or raises.
        """
        self._lock_run_directory()
        try:
            return self._fit(dataset_fn, valid_dataset, steps)
        finally:
            self.run_lock.release()

    def _fit(self, dataset_fn, valid_dataset, steps) -> dict:
        t = self.params.train
        steps = t.steps if steps is None else int(steps)
        step = int(self.step.numpy())
        if step >= steps:
            logging.info("step %d already reached (train.steps %d)", step, steps)
            return self._summary({}, {})
        specs = []

        def pipeline(input_context):
            dataset = dataset_fn(step, input_context)
            specs.append(dataset.element_spec)
            return dataset

        distributed = self.strategy.distribute_datasets_from_function(pipeline)
        self._global_batch = _global_batch(specs, self.strategy)
        iterator = iter(distributed)
        writers = self._summary_writers()
        meter, consecutive, last_train, last_valid = _Meter(), 0, {}, {}
        samples_per_step = self._global_batch
        logging.info(
            "training from step %d to %d: global batch %d on %d replica(s)",
            step,
            steps,
            self._global_batch,
            self.strategy.num_replicas_in_sync,
        )
        budget = t.cpu_seconds_budget
        clock = _TrainingClock(self.train_seconds, self.cpu_seconds)
        first_step = True
        while step < steps:
            if budget > 0 and float(self.cpu_seconds.numpy()) >= budget:
                logging.info("step %d: the CPU-time budget (train.cpu_seconds_budget = %g s) is spent", step, budget)
                break
            clock.start()
            tick = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                raise ValueError(f"the training data ran out at step {step}, before step {steps}") from None
            result = self.train_step(batch)
            step += 1
            # The first step of a process mostly traces the graph: it is not training time.
            clock.stop(count=not first_step)
            first_step = False
            finite = bool(result["applied"])
            scalars = {**{k: result[k] for k in LOSS_TERMS}, "grad_norm": result["grad_norm"]}
            meter.add(scalars, time.perf_counter() - tick, finite)
            if finite or bool(result["overflow"]):
                consecutive = 0
                if bool(result["overflow"]):
                    logging.info("step %d: loss-scale overflow, step skipped; scale now %g", step, result["loss_scale"])
            else:
                consecutive += 1
                self._report_nonfinite(step, result, consecutive)
                if consecutive >= t.max_consecutive_nonfinite:
                    self._flush(writers)
                    raise NonFiniteTrainingError(
                        f"stopped at step {step}: {consecutive} non-finite steps in a row "
                        f"(train.max_consecutive_nonfinite = {t.max_consecutive_nonfinite}); the last good "
                        f"checkpoint is {self.manager.latest_checkpoint or 'none (no checkpoint was written)'}"
                    )
            if step % t.summary_every == 0 or step % t.log_every == 0:
                rate, means = meter.steps_per_sec(), meter.means()
                if step % t.log_every == 0:
                    self._log_progress(step, steps, means, rate, samples_per_step)
                if step % t.summary_every == 0:
                    if means:
                        self._write_train_summaries(writers, step, means, result, rate, samples_per_step)
                    last_train, meter = means, _Meter()
            if valid_dataset is not None and self.chief:
                if step % t.validate_every == 0:
                    last_valid = self.evaluate(valid_dataset)
                    self._write_valid_summaries(writers, step, last_valid)
                if step % t.audio_summary_every == 0:
                    self.write_audio_summaries(writers["valid"], step, valid_dataset)
            # Not in the middle of a non-finite streak: the last good checkpoint stays the latest.
            if step % t.checkpoint_every == 0 and consecutive == 0:
                self.save()
        if valid_dataset is not None and self.chief and step % t.validate_every != 0:
            last_valid = self.evaluate(valid_dataset)
            self._write_valid_summaries(writers, step, last_valid)
        if _checkpoint_step(self.manager.latest_checkpoint) != step and consecutive == 0:
            self.save()
        self._flush(writers)
        return self._summary(meter.means() or last_train, last_valid)

    def _summary(self, train_means: dict, valid: dict) -> dict:
        return {
            "step": int(self.step.numpy()),
            "train": train_means,
            "valid": valid,
            "nonfinite_steps": int(self.nonfinite_steps.numpy()),
            "checkpoint": self.manager.latest_checkpoint,
        }

    def _report_nonfinite(self, step: int, result: dict, consecutive: int) -> None:
        if not result["inputs_finite"]:
            why = "NaN or Inf in the input batch"
        elif not result["loss_finite"]:
            why = f"non-finite loss ({result['loss/total']})"
        else:
            why = f"non-finite gradient (norm {result['grad_norm']})"
        logging.warning(
            "step %d: %s; step skipped (%d in a row, %d in this run's history)",
            step,
            why,
            consecutive,
            int(self.nonfinite_steps.numpy()),
        )

    def _log_progress(self, step, steps, means, rate, samples_per_step) -> None:
        loss = means.get("loss/total", float("nan"))
        eta = (steps - step) / rate if rate > 0 else float("inf")
        logging.info(
            "step %d/%d | loss %.4f | %.2f steps/s | %.1f samples/s | ETA %s",
            step,
            steps,
            loss,
            rate,
            rate * samples_per_step,
            _format_duration(eta),
        )

    # ---------------------------------------------------------------- summaries
    def _summary_writers(self) -> dict:
        if self._writers is None:
            if self.chief:
                self._writers = {
                    split: tf.summary.create_file_writer(os.path.join(self.model_dir, split))
                    for split in ("train", "valid")
                }
            else:
                self._writers = {split: tf.summary.create_noop_writer() for split in ("train", "valid")}
        return self._writers

    def _flush(self, writers) -> None:
        for writer in writers.values():
            writer.flush()

    def _write_train_summaries(self, writers, step, means, result, rate, samples_per_step) -> None:
        if not self.chief:
            return
        with writers["train"].as_default(step=step):
            for key in LOSS_TERMS:
                tf.summary.scalar(key, means[key])
            tf.summary.scalar("train/learning_rate", float(result["learning_rate"]))
            tf.summary.scalar("train/grad_norm", means["grad_norm"])
            tf.summary.scalar("train/steps_per_sec", rate)
            tf.summary.scalar("train/samples_per_sec", rate * samples_per_step)
            tf.summary.scalar("train/nonfinite_steps", int(self.nonfinite_steps.numpy()))
            if self.loss_scaling:
                tf.summary.scalar("train/loss_scale", float(result["loss_scale"]))
        self._append_metrics(
            step,
            "train",
            {
                **{k: means[k] for k in LOSS_TERMS},
                "learning_rate": float(result["learning_rate"]),
                "grad_norm": means["grad_norm"],
                "steps_per_sec": rate,
                "samples_per_sec": rate * samples_per_step,
            },
        )

    def _write_valid_summaries(self, writers, step, valid) -> None:
        logging.info("step %d | validation loss %.4f", step, valid["loss/total"])
        with writers["valid"].as_default(step=step):
            for key in LOSS_TERMS:
                tf.summary.scalar(key, valid[key])
        self._append_metrics(step, "valid", valid)

    def _append_metrics(self, step: int, split: str, values: dict) -> None:
        path = os.path.join(self.model_dir, METRICS_FILE)
        row = {"step": step, "time": f"{time.time():.3f}", "split": split}
        row["train_hours"] = f"{float(self.train_seconds.numpy()) / 3600:.6g}"
        row["cpu_hours"] = f"{float(self.cpu_seconds.numpy()) / 3600:.6g}"
        row.update({k: f"{float(v):.6g}" for k, v in values.items() if k in METRICS_COLUMNS})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, restval="")
        new_file = not os.path.isfile(path)
        if new_file:
            writer.writeheader()
        writer.writerow(row)
        with open(path, "a+", encoding="utf-8") as f:
            # A kill in the middle of a line leaves it unfinished: start a fresh line.
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    f.write("\n")
            f.write(buffer.getvalue())

    def write_audio_summaries(self, writer, step: int, valid_dataset: tf.data.Dataset) -> None:
        """Validation audio at ``export.sigma`` beside the ground truth, with mel images.

        The first two validation batches (whole utterances with
        :func:`tfwaveglow.data.make_validation_dataset`) are synthesised from
        their mels with a latent seeded by ``step``; each image puts the mel of
        the synthesised audio (left) beside the ground-truth mel (right).
        """
        from tfwaveglow.audio import mel_spectrogram_tf

        model = self.inference_model()
        sr = self.params.audio.sampling_rate
        with writer.as_default(step=step):
            for clip, (mel, audio) in enumerate(valid_dataset.take(AUDIO_SUMMARY_CLIPS)):
                mel = tf.cast(mel, self.compute_dtype)
                generated = model.infer(mel, sigma=self.params.export.sigma, seed=step)
                generated = tf.clip_by_value(tf.cast(generated[:, : audio.shape[1]], tf.float32), -1.0, 1.0)
                generated_mel = mel_spectrogram_tf(generated, self.params.audio)
                tf.summary.audio(f"audio_{clip}/generated", generated[:, :, None], sr, max_outputs=1)
                tf.summary.audio(f"audio_{clip}/ground_truth", audio[:, :, None], sr, max_outputs=1)
                tf.summary.image(f"mel_{clip}/generated_vs_ground_truth", mel_comparison_image(generated_mel, mel))
        writer.flush()


def mel_comparison_image(generated_mel, reference_mel):
    """Two log-mels side by side as a grey image, low frequencies at the bottom.

    Args:
      generated_mel, reference_mel: ``[B, frames, n_mel]`` (the longer one is cropped).

    Returns:
      ``[B, n_mel, 2 * frames + 2, 1]`` in [0, 1]: generated left, reference
      right, a white bar between; both mapped with the reference's range.
    """
    frames = min(generated_mel.shape[1], reference_mel.shape[1])
    generated = tf.cast(generated_mel[:, :frames], tf.float32)
    reference = tf.cast(reference_mel[:, :frames], tf.float32)
    top = tf.reduce_max(reference, axis=[1, 2], keepdims=True)
    low = tf.constant(_LOG_MEL_FLOOR, tf.float32)

    def to_pixels(m):
        m = tf.clip_by_value((m - low) / tf.maximum(top - low, 1e-3), 0.0, 1.0)
        return tf.reverse(tf.transpose(m, [0, 2, 1]), axis=[1])  # [B, n_mel, frames], high bins on top

    bar = tf.ones([tf.shape(generated)[0], generated.shape[2], 2])
    return tf.concat([to_pixels(generated), bar, to_pixels(reference)], axis=2)[..., None]


class _TrainingClock:
    """Adds the wall and process CPU time of each training step (input included) to the run's time variables.

    Validation, summaries and checkpoints between steps are not counted.
    """

    def __init__(self, train_seconds: tf.Variable, cpu_seconds: tf.Variable):
        self._train_seconds, self._cpu_seconds = train_seconds, cpu_seconds
        self._wall = self._cpu = 0.0

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self, count: bool = True) -> None:
        if count:
            self._train_seconds.assign_add(time.perf_counter() - self._wall)
            self._cpu_seconds.assign_add(time.process_time() - self._cpu)


def _checkpoint_step(path: str | None) -> int | None:
    """The step in a ``ckpt-<step>`` prefix written by :meth:`Trainer.save`."""
    if not path:
        return None
    return int(path.rsplit("-", 1)[-1])


def _element_spec(batch):
    spec = getattr(batch, "element_spec", None)
    if spec is not None:
        return spec
    return tf.nest.map_structure(tf.type_spec_from_value, batch)


def _global_batch(specs: list, strategy) -> int:
    """The global batch from the element specs of the input pipelines' per-replica batches."""
    if not specs:
        raise ValueError("the strategy built no input pipeline")
    for spec in specs:
        if not (isinstance(spec, tuple) and len(spec) == 2):
            raise ValueError(f"the training dataset must yield (mel, audio) pairs, got element spec {spec}")
        mel_spec, audio_spec = spec
        if mel_spec.shape.rank != 3 or audio_spec.shape.rank != 2 or not mel_spec.shape.is_fully_defined():
            raise ValueError(
                f"the training dataset must yield static mel [batch, frames, n_mel] and audio [batch, samples], "
                f"got {mel_spec.shape} and {audio_spec.shape} (batch with drop_remainder=True)"
            )
    per_replica = {int(spec[0].shape[0]) for spec in specs}
    if len(per_replica) != 1:
        raise ValueError(f"the input pipelines yield different per-replica batches {sorted(per_replica)}")
    return per_replica.pop() * strategy.num_replicas_in_sync


def split_global_batches(
    global_fn: Callable[[int], tf.data.Dataset],
) -> Callable[[int, tf.distribute.InputContext], tf.data.Dataset]:
    """Adapts ``start_step -> global batches`` to :meth:`Trainer.fit`'s ``dataset_fn``.

    Every input pipeline builds the whole stream and keeps its part of each
    global batch ``[B, ...]`` (the ``p``-th of ``P`` equal parts), cut into
    per-replica batches ``[B / num_replicas_in_sync, ...]``. Simple, but every
    worker produces every example; :func:`training_dataset` reads only its share.
    """

    from tfwaveglow.data import pipeline_share

    def dataset_fn(start_step: int, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        dataset = global_fn(start_step)
        batch = dataset.element_spec[0].shape[0]
        if batch is None:
            raise ValueError("the global batches must have a static size (batch with drop_remainder=True)")
        keep, per_replica = pipeline_share(batch, input_context)
        mine = dataset.unbatch().enumerate().filter(lambda i, _: keep(i))
        return mine.map(lambda _, example: example).batch(per_replica, drop_remainder=True)

    return dataset_fn


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:d}:{minutes:02d}:{secs:02d}"


# --------------------------------------------------------------------------- entry point
def training_dataset(
    params: Params,
    ids,
    wave_dir: str,
    lc_dir: str,
    start_step: int = 0,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """The batches :func:`train` reads from step ``start_step`` on (the stream is fixed by ``train.seed``).

    Args:
      params: the resolved config (``train.batch_size``, ``seed``, ``deterministic``).
      ids: training utterance ids.
      wave_dir, lc_dir: where the wavs and the mels live.
      start_step: batches to skip, so a resumed run reads on where it stopped.
      input_context: one input pipeline of a strategy (as :meth:`Trainer.fit`
        passes it): only that pipeline's share is read, as per-replica batches.

    Returns:
      An endless dataset of ``(mel [B, ceil(segment / hop), n_mel], audio [B, segment])``,
      ``B = train.batch_size``, or ``B / num_replicas_in_sync`` with an ``input_context``.
    """
    from tfwaveglow import data

    t = params.train
    return data.make_dataset(
        ids,
        wave_dir,
        lc_dir,
        params,
        batch_size=t.batch_size,
        training=True,
        deterministic=t.deterministic,
        seed=t.seed,
        repeat=True,
        skip_batches=start_step,
        input_context=input_context,
    )


def train(
    params: Params,
    filelist: str | os.PathLike,
    wave_dir: str | os.PathLike,
    lc_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    *,
    init_from: str | os.PathLike | None = None,
    strategy: tf.distribute.Strategy | str = "default",
    valid_filelist: str | os.PathLike | None = None,
    steps: int | None = None,
) -> dict:
    """Trains (or resumes) a WaveGlow run on a preprocessed corpus.

    Args:
      params: the resolved config.
      filelist: training utterance ids, one per line.
      wave_dir, lc_dir: where the wavs and the mels (local conditions) live.
      model_dir: the run directory; an existing checkpoint there is resumed.
      init_from: warm-start weights for a fresh run (see :meth:`Trainer.restore`).
      strategy: a strategy or its name (``default``, ``mirrored``, ``multi_worker``).
      valid_filelist: validation ids (default ``train.valid_filelist``; empty = none).
      steps: stop at this step (default ``train.steps``).

    Returns:
      :meth:`Trainer.fit`'s summary.
    """
    # A multi-worker strategy has to exist before any other TensorFlow op runs.
    if isinstance(strategy, str):
        strategy = create_strategy(strategy)
    from tfwaveglow import data

    t = params.train
    wave_dir, lc_dir = os.fspath(wave_dir), os.fspath(lc_dir)
    ids = data.read_filelist(os.fspath(filelist))
    valid_filelist = os.fspath(valid_filelist) if valid_filelist else t.valid_filelist
    valid_ids = data.read_filelist(valid_filelist) if valid_filelist else None
    if valid_ids and t.valid_max_clips:
        valid_ids = valid_ids[: t.valid_max_clips]

    trainer = Trainer(params, model_dir, strategy=strategy)
    trainer.restore(init_from)

    def dataset_fn(start_step: int, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        return training_dataset(params, ids, wave_dir, lc_dir, start_step, input_context)

    valid_dataset = None
    if valid_ids:
        valid_dataset = data.make_validation_dataset(valid_ids, wave_dir, lc_dir, params).cache()
    else:
        logging.warning("no validation list (train.valid_filelist or --valid_filelist): no validation NLL or audio")
    return trainer.fit(dataset_fn, valid_dataset, steps=steps)
