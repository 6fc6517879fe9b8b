"""The training loop: :class:`Trainer` (model, optimizer, checkpoint, compiled steps of one run) and :func:`train`.

The top of :mod:`tfwaveglow.training`: it uses the package's other modules, which do not use it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

from tfwaveglow.config import Params, load_params, save_params
from tfwaveglow.layers.dilated_conv import native_dilation_gradient_error
from tfwaveglow.losses import nll_terms
from tfwaveglow.model import WaveGlow
from tfwaveglow.model_io import (
    CHECKPOINT_SUBDIR,
    PARAMS_FILE,
    ModelLoadError,
    load_model,
    load_training_state,
    save_model,
    weights_sha256,
)
from tfwaveglow.objectives.composite import MODES, TrainingObjective
from tfwaveglow.run_lock import RunDirectoryLock
from tfwaveglow.training import summaries
from tfwaveglow.training.checkpoints import KillSafeCheckpointManager, checkpoint_step, remove_unlisted_checkpoint_files
from tfwaveglow.training.distribution import create_strategy, global_batch, is_chief, scalar_variable
from tfwaveglow.training.guards import DivergenceGuard, LearningRateScale, PlateauRule
from tfwaveglow.training.optimization import (
    DynamicLossScale,
    TrainLearningRate,
    configure_mixed_precision,
    make_discriminator_optimizer,
    make_optimizer,
)
from tfwaveglow.training.params_history import PARAMS_CHANGES_FILE, record_params_change, record_warm_start
from tfwaveglow.training.summaries import drop_metrics_after

INFERENCE_SUBDIR = "inference"
# Checkpoint slots that later versions added; a checkpoint written before them resumes without them
# (a run that adds discriminators to an earlier run's config starts them fresh).
_SLOTS_ADDED_LATER = (
    "train_seconds",
    "cpu_seconds",
    "lr_step_offset",
    "lr_scale",
    "guard",
    "plateau",
    "discriminators",
    "discriminator_optimizer",
)
# The seed of the latents of the validation's reverse-pass terms (the same every validation).
_VALID_LATENT_SEED = 20261207


class NonFiniteTrainingError(RuntimeError):
    """Too many non-finite (or, with the divergence guard, skipped) steps in a row and nothing to roll back to."""


@dataclasses.dataclass
class _Meter:
    """Running means of the step results between two reports, and the time they took."""

    sums: dict = dataclasses.field(default_factory=dict)
    counts: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0

    def add(self, values: dict, seconds: float, finite: bool) -> None:
        """Adds an applied step's values (steps of other modes may carry other terms)."""
        self.seconds += seconds
        self.steps += 1
        if finite:
            for key, value in values.items():
                self.sums[key] = self.sums.get(key, 0.0) + float(value)
                self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict:
        return {k: v / self.counts[k] for k, v in self.sums.items()}

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
        _check_trainable_conv_mode(params)
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if t.lr_plateau_patience > 0 and resolver is not None and resolver.task_type:
            # Validation runs on the chief alone: the other workers would keep their rates.
            raise ValueError("train.lr_plateau_patience needs a one-process run (validation runs on the chief only)")
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
            self.lr_scale = LearningRateScale()
            self.guard = DivergenceGuard(t.guard_factor, t.guard_decay, t.guard_warmup_steps, num_modes=len(MODES))
            self.plateau = PlateauRule(
                t.lr_plateau_patience, t.lr_plateau_factor, t.lr_plateau_min_delta, t.lr_plateau_metric
            )
            self.lr_schedule = TrainLearningRate.from_params(t)
            self.optimizer = make_optimizer(t, self.lr_schedule)
            self.optimizer.build(self.model.trainable_variables)
            self.discriminators = self.discriminator_optimizer = self.discriminator_lr_schedule = None
            if params.loss.adv > 0 or params.loss.fm > 0:
                from tfwaveglow.objectives.discriminators import Discriminators

                self.discriminators = Discriminators.from_params(params.adversarial)
                self.discriminators(tf.zeros([1, params.data.segment_length]))  # creates the variables
                self.discriminator_lr_schedule = TrainLearningRate.for_discriminators(params.adversarial, t)
                self.discriminator_optimizer = make_discriminator_optimizer(
                    params.adversarial, self.discriminator_lr_schedule
                )
                self.discriminator_optimizer.build(self.discriminators.trainable_variables)
            self.objective = TrainingObjective(params, self.discriminators)
            self.step = scalar_variable("step", 0, tf.int64)
            # Steps the run had taken before this optimizer's first (``continue_run``):
            # the learning-rate decay counts from the run's start, the warm-up from the optimizer's.
            self.lr_step_offset = scalar_variable("lr_step_offset", 0, tf.int64)
            self.nonfinite_steps = scalar_variable("nonfinite_steps", 0, tf.int64)
            # The run's training time so far, wall clock and this process's CPU time (all
            # threads), carried across resumes (0 for runs saved before these existed).
            self.train_seconds = scalar_variable("train_seconds", 0.0, tf.float64)
            self.cpu_seconds = scalar_variable("cpu_seconds", 0.0, tf.float64)
            self.loss_scale = DynamicLossScale()
        for schedule in (self.lr_schedule, self.discriminator_lr_schedule):
            if schedule is not None:
                schedule.scale = self.lr_scale.value
                schedule.clock = self.cpu_seconds
        self._checkpoint_slots = {
            "step": self.step,
            "model": self.model,
            "optimizer": self.optimizer,
            "loss_scale": self.loss_scale,
            "nonfinite_steps": self.nonfinite_steps,
            "train_seconds": self.train_seconds,
            "cpu_seconds": self.cpu_seconds,
            "lr_step_offset": self.lr_step_offset,
            "lr_scale": self.lr_scale,
            "guard": self.guard,
            "plateau": self.plateau,
        }
        if self.discriminators is not None:
            self._checkpoint_slots["discriminators"] = self.discriminators
            self._checkpoint_slots["discriminator_optimizer"] = self.discriminator_optimizer
        self.checkpoint = tf.train.Checkpoint(**self._checkpoint_slots)
        self.checkpoint_dir = os.path.join(self.model_dir, CHECKPOINT_SUBDIR)
        self.manager = KillSafeCheckpointManager(
            self.checkpoint, self.checkpoint_dir, max_to_keep=t.max_to_keep, step_counter=self.step
        )
        self.trace_count = 0  # times a train step was traced (1 per step mode with a pinned signature)
        self._train_steps = {}
        self._eval_step = None
        self._global_batch = None
        self._folded = None
        # autograph=False: the steps branch with tf.cond explicitly, and tracing is much faster.
        self._jit_loss_and_grads = (
            tf.function(self._loss_and_grads, jit_compile=True, autograph=False) if t.jit_compile else None
        )
        self._writers = None

    # ---------------------------------------------------------------- state
    def restore(self, init_from: str | os.PathLike | None = None, continue_run: bool = False) -> int:
        """Resumes from the latest checkpoint in ``model_dir``, else starts fresh.

        A fresh start saves ``params.yaml`` and, with ``init_from``, copies the
        weights of :func:`tfwaveglow.load_model` (a converted NVIDIA model, an
        inference directory or another run): fine-tuning, so the optimizer
        starts anew. With ``continue_run`` as well, the new run carries on the
        run that ``init_from`` was shipped from (its ``training_state.json``):
        the step, and with it the data order and the learning-rate decay, and
        the training clocks go on from there, while the fresh Adam moments get
        the warm-up again (at the continued rate). A resumed run ignores both.

        Returns:
          The step training continues from.

        Raises:
          ValueError: ``model_dir`` holds a run of another model, or the
            ``init_from`` model does not fit ``params.model``.
          FileNotFoundError, tfwaveglow.ModelLoadError: ``init_from`` is not a
            loadable model, or (``continue_run``) has no training state.
          tfwaveglow.run_lock.RunDirectoryBusyError: another process trains in
            ``model_dir``.
        """
        self._lock_run_directory()
        try:
            step = self._restore(init_from, continue_run)
        except BaseException:
            self.run_lock.release()
            raise
        return step

    def _restore(self, init_from, continue_run) -> int:
        saved = self._check_saved_params()
        latest = self.manager.latest_checkpoint
        if latest and self.chief:
            removed = remove_unlisted_checkpoint_files(self.checkpoint_dir)
            if removed:
                logging.info("removed files of unfinished checkpoints: %s", removed)
        if latest:
            self._restore_checkpoint(latest)
            step = int(self.step.numpy())
            logging.info("resumed from %s at step %d", latest, step)
            if init_from:
                logging.info("a checkpoint exists in %s: --init_from %s is ignored", self.model_dir, init_from)
        else:
            step = 0
            if continue_run and not init_from:
                raise ValueError("continue_run needs init_from: the model whose run goes on")
            if init_from:
                self.warm_start(init_from)
            if continue_run:
                step = self.continue_run_of(init_from)
        self.lr_schedule.step_offset = int(self.lr_step_offset.numpy())
        if self.chief:
            os.makedirs(self.model_dir, exist_ok=True)
            if saved is not None and step > 0:
                changed = record_params_change(self.model_dir, step, saved, self.params)
                if changed:
                    logging.info("config changed at step %d (recorded in %s): %s", step, PARAMS_CHANGES_FILE, changed)
            save_params(self.params, os.path.join(self.model_dir, PARAMS_FILE))
            if init_from and not latest:
                source = os.fspath(init_from)
                record_warm_start(self.model_dir, source, _shipped_step(source), continue_run, weights_sha256(source))
            dropped = drop_metrics_after(self.model_dir, step)
            if dropped:
                logging.info("dropped %d metrics.csv rows past step %d (logged after its checkpoint)", dropped, step)
        return step

    def warm_start(self, init_from: str | os.PathLike) -> None:
        """Copies a saved model's weights into the training model (weights only).

        A model without a post-filter warm-starts the flow of one with a post-filter,
        whose fresh post-filter is the identity.
        """
        init_from = os.fspath(init_from)
        loaded = load_model(init_from)
        flow_only = loaded.postfilter is None and self.model.postfilter is not None
        try:
            self.model.copy_weights_from(loaded, flow_only=flow_only)
        except ValueError as e:
            raise ValueError(f"--init_from {init_from}: its model does not fit params.model: {e}") from e
        logging.info("initialised weights from %s", init_from)

    def _restore_checkpoint(self, path: str) -> None:
        """Restores every slot, except that a counter newer than the checkpoint keeps its start value.

        Every variable the checkpoint holds must match; a slot of :data:`_SLOTS_ADDED_LATER`
        that a checkpoint written before it existed lacks stays as initialised (0).
        """
        saved = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(path)}
        slots = {k: v for k, v in self._checkpoint_slots.items() if k in saved or k not in _SLOTS_ADDED_LATER}
        missing = sorted(set(self._checkpoint_slots) - set(slots))
        if missing:
            logging.info("%s predates %s: they start at 0", path, ", ".join(missing))
        tf.train.Checkpoint(**slots).restore(path).assert_existing_objects_matched()

    def continue_run_of(self, model_dir: str | os.PathLike) -> int:
        """Sets the step, clocks and learning-rate offset from a shipped model's training state."""
        state = load_training_state(model_dir)
        self.step.assign(state["step"])
        self.lr_step_offset.assign(state["step"])
        self.train_seconds.assign(state["train_seconds"])
        self.cpu_seconds.assign(state["cpu_seconds"])
        logging.info("continuing the run of %s from step %d", os.fspath(model_dir), state["step"])
        return state["step"]

    def _lock_run_directory(self) -> None:
        if self.chief:
            self.run_lock.acquire()

    def _check_saved_params(self) -> Params | None:
        """The run's saved params (None for a new run); refuses another model."""
        path = os.path.join(self.model_dir, PARAMS_FILE)
        if not os.path.isfile(path):
            return None
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
        return saved

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
    def _generator_variables(self, mode: str) -> list:
        """What a step of ``mode`` trains of the generator: NLL steps leave a post-filter alone
        (the likelihood does not reach it), and its Adam state with it."""
        if mode == "discriminator":
            return []
        if mode == "nll" and self.model.postfilter is not None:
            skip = {id(v) for v in self.model.postfilter.trainable_variables}
            return [v for v in self.model.trainable_variables if id(v) not in skip]
        return self.model.trainable_variables

    def _loss_and_grads(self, mel, audio, weight, scale, mode, adversarial_scale, z):
        """One replica's terms and gradients (the discriminators' None without them).

        The generator's gradients (None in the discriminators' warm-up) are those
        of :meth:`_generator_variables`.
        """
        discriminating = self.discriminators is not None and mode != "nll"
        with tf.GradientTape(persistent=discriminating) as tape:
            terms = self.objective(self.model, mel, audio, mode=mode, adversarial_scale=adversarial_scale, z=z)
            objective = terms.pop("objective/generator") * weight
            disc_objective = terms.pop("objective/discriminator", None)
            if disc_objective is not None:
                disc_objective = disc_objective * weight
            if self.loss_scaling:
                objective = objective * scale
        grads = disc_grads = None
        if mode != "discriminator":
            variables = self._generator_variables(mode)
            grads = tape.gradient(objective, variables)
            missing = [v.path for v, g in zip(variables, grads) if g is None]
            if missing:
                raise ValueError(f"no gradient for {missing}")
        if discriminating:
            disc_grads = tape.gradient(disc_objective, self.discriminators.trainable_variables)
            del tape
        return grads, disc_grads, terms

    def _replica_step(self, mel, audio, mode, adversarial_scale):
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
        z = None if mode == "nll" else self._replica_latent(mel, ctx)
        grads, disc_grads, terms = fn(mel, audio, weight, scale, mode, adversarial_scale, z)

        terms = ctx.all_reduce(tf.distribute.ReduceOp.SUM, {k: v * weight for k, v in terms.items()})
        bad_batches = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(batch_finite, tf.float32))
        inputs_finite = tf.equal(bad_batches, 0.0)
        loss_finite = tf.logical_and(tf.reduce_all([tf.math.is_finite(v) for v in terms.values()]), inputs_finite)
        clip = self.params.train.grad_clip_norm
        norms = {}
        if grads is not None:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            if self.loss_scaling:
                grads = [g / scale for g in grads]
            norms["grad_norm"] = tf.linalg.global_norm(grads)
            if clip > 0:
                grads, _ = tf.clip_by_global_norm(grads, clip, use_norm=norms["grad_norm"])
        if disc_grads is not None:
            disc_grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, disc_grads)
            norms["disc_grad_norm"] = tf.linalg.global_norm(disc_grads)
            if clip > 0:
                disc_grads, _ = tf.clip_by_global_norm(disc_grads, clip, use_norm=norms["disc_grad_norm"])
        grads_finite = tf.reduce_all([tf.math.is_finite(n) for n in norms.values()])
        return grads, disc_grads, terms, norms, inputs_finite, loss_finite, grads_finite

    def _replica_latent(self, mel, ctx):
        """This replica's rows of the step's reverse-pass latent.

        The latent of the global batch is a pure function of ``(train.seed, step)``
        (stateless), and each replica takes the rows of its examples, so a resumed
        run and any number of replicas draw what one uninterrupted process draws.
        """
        shape = self.model.latent_shape(mel)
        local = shape[0]
        global_shape = tf.concat([[self._global_batch], shape[1:]], axis=0)
        seed = tf.stack([tf.constant(self.params.train.seed, tf.int64), tf.cast(self.step, tf.int64)])
        z = tf.random.stateless_normal(global_shape, seed=seed, dtype=tf.float32)
        start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
        return z[start : start + local]

    def _apply_gradients(self, grads, disc_grads, mode):
        if grads is not None:
            self.optimizer.apply(grads, self._generator_variables(mode))
        if disc_grads is not None:
            self.discriminator_optimizer.apply(disc_grads, self.discriminators.trainable_variables)

    def _step_fn(self, batch, adversarial_scale, mode):
        self.trace_count += 1
        mel, audio = batch
        strategy = self.strategy
        grads, disc_grads, terms, norms, inputs_finite, loss_finite, grads_finite = strategy.run(
            self._replica_step, args=(mel, audio, mode, adversarial_scale)
        )

        # Every replica computed these from the same all-reduced values.
        def first(value):
            return strategy.experimental_local_results(value)[0]

        terms = {k: first(v) for k, v in terms.items()}
        norms = {k: first(v) for k, v in norms.items()}
        inputs_finite, loss_finite, grads_finite = first(inputs_finite), first(loss_finite), first(grads_finite)
        finite = tf.logical_and(loss_finite, grads_finite)
        spike = self.guard.judge(
            MODES.index(mode), terms["loss/total"], norms.get("grad_norm", norms.get("disc_grad_norm")), finite
        )

        def apply():
            strategy.run(self._apply_gradients, args=(grads, disc_grads, mode))
            return tf.constant(True)

        applied = tf.cond(tf.logical_and(finite, tf.logical_not(spike)), apply, lambda: tf.constant(False))
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
        result = {
            **terms,
            **norms,
            "learning_rate": self.optimizer.learning_rate,
            "loss_scale": tf.convert_to_tensor(self.loss_scale.scale),
            "applied": applied,
            "spike": spike,
            "inputs_finite": inputs_finite,
            "loss_finite": loss_finite,
            "grads_finite": grads_finite,
            "overflow": overflow,
        }
        if self.discriminator_optimizer is not None:
            result["disc_learning_rate"] = self.discriminator_optimizer.learning_rate
        return result

    def train_step(self, batch):
        """One compiled optimisation step on a (distributed) batch ``(mel, audio)``.

        The step's mode (:meth:`TrainingObjective.mode_for_step`) picks one of
        up to three compiled steps. The first call of each fixes its input
        signature (``mel [B, F, n_mel]``, ``audio [B, S]``, static); later
        batches must match it, so nothing is retraced. Returns the step's
        scalars as NumPy values.
        """
        if self._global_batch is None:
            if self.strategy.num_replicas_in_sync != 1:
                raise ValueError("under a multi-replica strategy, steps run through fit() (it sets the global batch)")
            self._global_batch = int(batch[0].shape[0])
        step = int(self.step.numpy())
        mode = self.objective.mode_for_step(step)
        if mode not in self._train_steps:
            spec = _element_spec(batch)
            self._train_steps[mode] = tf.function(
                lambda b, adversarial_scale: self._step_fn(b, adversarial_scale, mode),
                input_signature=[spec, tf.TensorSpec([], tf.float32)],
                autograph=False,
            )
        adversarial_scale = tf.constant(self.objective.adversarial_scale(step), tf.float32)
        return {k: v.numpy() for k, v in self._train_steps[mode](batch, adversarial_scale).items()}

    def _eval_fn(self, mel, audio):
        dtype = self.compute_dtype
        out = self.model.forward(tf.cast(mel, dtype), tf.cast(audio, dtype))
        terms = nll_terms(out, sigma=self.params.train.sigma)
        terms["loss/nll"] = terms["loss/total"]
        if self.objective.uses_reverse_pass:
            fake = self.model.infer(tf.cast(mel, dtype), sigma=self.params.spectral.sigma, seed=_VALID_LATENT_SEED)
            fake, real = fake[:, : tf.shape(audio)[1]], tf.cast(audio, tf.float32)
            terms.update(self.objective.spectral_terms(real, fake, every=True))
            w = self.params.loss
            terms["loss/spectral"] = w.stft * terms["loss/stft"] + w.mel * terms["loss/mel"]
        return terms

    def evaluate(self, dataset: tf.data.Dataset) -> dict:
        """Mean loss terms over a finite dataset of ``(mel, audio)`` batches (this process only).

        ``loss/total`` (= ``loss/nll``), ``loss/z``, ``loss/log_s``,
        ``loss/log_det_w``: the NLL; with reverse-pass terms in the objective
        also ``loss/stft`` (and its two parts), ``loss/mel`` and their weighted
        sum ``loss/spectral``, on samples at ``spectral.sigma`` from latents
        that are the same every validation.
        """
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
            :func:`tfwaveglow.training.split_global_batches` makes one from a stream of global batches.
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

        def open_data(start_step):
            def pipeline(input_context):
                dataset = dataset_fn(start_step, input_context)
                specs.append(dataset.element_spec)
                return dataset

            return iter(self.strategy.distribute_datasets_from_function(pipeline))

        iterator = open_data(step)
        self._global_batch = global_batch(specs, self.strategy)
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
            applied = bool(result["applied"])
            scalars = {k: v for k, v in result.items() if k.startswith("loss/") or k.endswith("grad_norm")}
            meter.add(scalars, time.perf_counter() - tick, applied)
            if applied or bool(result["overflow"]):
                consecutive = 0
                if bool(result["overflow"]):
                    logging.info("step %d: loss-scale overflow, step skipped; scale now %g", step, result["loss_scale"])
            else:
                consecutive += 1
                self._report_skipped(step, result, consecutive)
                if self.guard.enabled and consecutive >= t.guard_max_skips:
                    self._flush(writers)
                    step = self.roll_back(f"{consecutive} skipped steps in a row at step {step}")
                    iterator, consecutive, meter, first_step = open_data(step), 0, _Meter(), True
                    continue
                if not self.guard.enabled and consecutive >= t.max_consecutive_nonfinite:
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
                    last_valid = self._validate(writers, step, valid_dataset)
                if step % t.audio_summary_every == 0:
                    self.write_audio_summaries(writers["valid"], step, valid_dataset)
            # Not in the middle of a skipped streak: the last good checkpoint stays the latest.
            if step % t.checkpoint_every == 0 and consecutive == 0:
                self.save()
        if valid_dataset is not None and self.chief and step % t.validate_every != 0:
            last_valid = self._validate(writers, step, valid_dataset)
        if checkpoint_step(self.manager.latest_checkpoint) != step and consecutive == 0:
            self.save()
        self._flush(writers)
        return self._summary(meter.means() or last_train, last_valid)

    def _validate(self, writers, step: int, valid_dataset) -> dict:
        """Validation terms, written; then the plateau rule judges them."""
        valid = self.evaluate(valid_dataset)
        self._write_valid_summaries(writers, step, valid)
        if self.plateau.observe(valid, self.lr_scale):
            logging.warning(
                "step %d: %s has not improved on %.5g for %d validations: learning rates x %g (scale now %g)",
                step,
                self.plateau.metric,
                float(self.plateau.best.numpy()),
                self.plateau.patience,
                self.plateau.factor,
                float(self.lr_scale.value.numpy()),
            )
        return valid

    def roll_back(self, why: str) -> int:
        """Restores the last good checkpoint and lowers the learning rates (the divergence guard).

        The whole state returns to the checkpoint (weights, optimizers,
        discriminators, step, guard levels), except the training clocks, which
        keep the time spent since (a CPU-time budget counts it), and the
        rollback count; then every rate is multiplied by ``train.guard_lr_factor``.
        The ``metrics.csv`` rows after the checkpoint's step are dropped (they are
        trained again).

        Returns:
          The step training goes on from.

        Raises:
          NonFiniteTrainingError: there is no checkpoint to roll back to.
        """
        latest = self.manager.latest_checkpoint
        if not latest:
            raise NonFiniteTrainingError(f"{why}, and no checkpoint to roll back to (train.guard_max_skips)")
        kept = [(v, v.numpy()) for v in (self.train_seconds, self.cpu_seconds, self.lr_scale.rollbacks)]
        self._restore_checkpoint(latest)
        for variable, value in kept:
            variable.assign(value)
        self.lr_scale.rollbacks.assign_add(1)
        scale = self.lr_scale.lower(self.params.train.guard_lr_factor)
        step = int(self.step.numpy())
        if self.chief:
            drop_metrics_after(self.model_dir, step)
        logging.warning(
            "divergence guard: %s; rolled back to %s (step %d), learning rates x %g (scale now %g), rollback %d",
            why,
            latest,
            step,
            self.params.train.guard_lr_factor,
            scale,
            int(self.lr_scale.rollbacks.numpy()),
        )
        return step

    def _summary(self, train_means: dict, valid: dict) -> dict:
        return {
            "step": int(self.step.numpy()),
            "train": train_means,
            "valid": valid,
            "nonfinite_steps": int(self.nonfinite_steps.numpy()),
            "checkpoint": self.manager.latest_checkpoint,
        }

    def _report_skipped(self, step: int, result: dict, consecutive: int) -> None:
        if not result["inputs_finite"]:
            why = "NaN or Inf in the input batch"
        elif not result["loss_finite"]:
            why = f"non-finite loss ({result['loss/total']})"
        elif not result["grads_finite"]:
            why = f"non-finite gradient (norm {result.get('grad_norm', result.get('disc_grad_norm'))})"
        else:
            why = (
                f"divergence guard: loss {result['loss/total']:.5g} or gradient norm "
                f"{result.get('grad_norm', result.get('disc_grad_norm')):.5g} far above its running level"
            )
        logging.warning(
            "step %d: %s; step skipped (%d in a row; in this run's history %d non-finite, %d spikes)",
            step,
            why,
            consecutive,
            int(self.nonfinite_steps.numpy()),
            int(self.guard.spikes.numpy()),
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
            self._writers = summaries.summary_writers(self.model_dir, self.chief)
        return self._writers

    def _flush(self, writers) -> None:
        summaries.flush(writers)

    def _write_train_summaries(self, writers, step, means, result, rate, samples_per_step) -> None:
        if not self.chief:
            return
        rules = {
            "lr_scale": float(self.lr_scale.value.numpy()),
            "guard_spikes": int(self.guard.spikes.numpy()),
            "rollbacks": int(self.lr_scale.rollbacks.numpy()),
        }
        if "disc_learning_rate" in result:
            rules["disc_learning_rate"] = float(result["disc_learning_rate"])
        summaries.write_train_scalars(
            writers["train"],
            step,
            means,
            learning_rate=float(result["learning_rate"]),
            steps_per_sec=rate,
            samples_per_sec=rate * samples_per_step,
            nonfinite_steps=int(self.nonfinite_steps.numpy()),
            loss_scale=float(result["loss_scale"]) if self.loss_scaling else None,
            rules=rules,
        )
        self._append_metrics(
            step,
            "train",
            {
                **means,
                **rules,
                "learning_rate": float(result["learning_rate"]),
                "steps_per_sec": rate,
                "samples_per_sec": rate * samples_per_step,
            },
        )

    def _write_valid_summaries(self, writers, step, valid) -> None:
        logging.info("step %d | validation loss %.4f", step, valid["loss/total"])
        summaries.write_valid_scalars(writers["valid"], step, valid)
        self._append_metrics(step, "valid", valid)

    def _append_metrics(self, step: int, split: str, values: dict) -> None:
        summaries.append_metrics(
            self.model_dir,
            step,
            split,
            values,
            train_seconds=float(self.train_seconds.numpy()),
            cpu_seconds=float(self.cpu_seconds.numpy()),
        )

    def write_audio_summaries(self, writer, step: int, valid_dataset: tf.data.Dataset) -> None:
        """Validation audio at ``export.sigma`` beside the ground truth, with mel images.

        See :func:`tfwaveglow.training.summaries.write_audio_summaries`; synthesised by
        the folded :meth:`inference_model`.
        """
        summaries.write_audio_summaries(
            writer, step, self.inference_model(), valid_dataset, self.params, self.compute_dtype
        )


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


def _check_trainable_conv_mode(params: Params) -> None:
    """``model.wn.dilated_conv: native`` needs a TensorFlow that can differentiate conv1d's dilation."""
    if params.model.wn.dilated_conv == "native":
        reason = native_dilation_gradient_error()
        if reason:
            raise ValueError(
                "model.wn.dilated_conv: native cannot be trained on this machine (TensorFlow's kernel says: "
                f"{reason}); use time_to_batch, the default, or shifted_matmul"
            )


def _element_spec(batch):
    spec = getattr(batch, "element_spec", None)
    if spec is not None:
        return spec
    return tf.nest.map_structure(tf.type_spec_from_value, batch)


def _shipped_step(model_dir: str | os.PathLike) -> int | None:
    """The training step of a shipped model (its ``training_state.json``), None for any other model."""
    try:
        return load_training_state(model_dir)["step"]
    except (ModelLoadError, OSError):
        return None


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
    continue_run: bool = False,
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
      continue_run: with ``init_from``, carry on the run it was shipped from.
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
    trainer.restore(init_from, continue_run)

    def dataset_fn(start_step: int, input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        return training_dataset(params, ids, wave_dir, lc_dir, start_step, input_context)

    valid_dataset = None
    if valid_ids:
        valid_dataset = data.make_validation_dataset(valid_ids, wave_dir, lc_dir, params).cache()
    else:
        logging.warning("no validation list (train.valid_filelist or --valid_filelist): no validation NLL or audio")
    return trainer.fit(dataset_fn, valid_dataset, steps=steps)
