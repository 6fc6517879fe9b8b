"""Training: optimizer and schedule, compiled steps, distribution, checkpoints, summaries, NaN guard.

    summary = train(params, "corpus/train.txt", "corpus/wavs", "corpus/mels", "runs/exp1")

A run directory holds

- ``params.yaml``: the resolved config (what :func:`tfwaveglow.load_model` reads);
- ``params_changes.jsonl``: one line per resume that changed the config (the
  step and each changed key's old and new value; see
  :mod:`~tfwaveglow.training.params_history`);
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

The package's modules, each using only the ones above it:

- :mod:`~tfwaveglow.training.distribution`: strategies by name, the chief,
  replica-synchronised scalars, the global batch, :func:`split_global_batches`;
- :mod:`~tfwaveglow.training.optimization`: Adam and :class:`TrainLearningRate`,
  :func:`configure_mixed_precision`, :class:`DynamicLossScale`;
- :mod:`~tfwaveglow.training.checkpoints`: :class:`KillSafeCheckpointManager`,
  :func:`remove_unlisted_checkpoint_files`;
- :mod:`~tfwaveglow.training.params_history`: ``params_changes.jsonl``
  (:func:`record_params_change`, :func:`read_params_changes`,
  :func:`dotted_initial_params`, :func:`examples_trained`);
- :mod:`~tfwaveglow.training.summaries`: TensorBoard scalars, audio and mel
  images, ``metrics.csv`` (:data:`METRICS_COLUMNS`, :func:`drop_metrics_after`);
- :mod:`~tfwaveglow.training.trainer`: :class:`Trainer` (compiled steps, NaN
  guard, the loop), :func:`training_dataset` and :func:`train`.

Every public name is importable from ``tfwaveglow.training`` itself.
"""

from tfwaveglow.training.checkpoints import KillSafeCheckpointManager, remove_unlisted_checkpoint_files
from tfwaveglow.training.distribution import STRATEGIES, create_strategy, is_chief, split_global_batches
from tfwaveglow.training.optimization import (
    DynamicLossScale,
    TrainLearningRate,
    configure_mixed_precision,
    make_optimizer,
)
from tfwaveglow.training.params_history import (
    PARAMS_CHANGES_FILE,
    WARM_START_FILE,
    dotted_initial_params,
    examples_trained,
    read_params_changes,
    read_warm_start,
    record_params_change,
    record_warm_start,
)
from tfwaveglow.training.summaries import (
    AUDIO_SUMMARY_CLIPS,
    LOSS_TERMS,
    METRICS_COLUMNS,
    METRICS_FILE,
    drop_metrics_after,
    mel_comparison_image,
)
from tfwaveglow.training.trainer import (
    INFERENCE_SUBDIR,
    NonFiniteTrainingError,
    Trainer,
    train,
    training_dataset,
)

__all__ = [
    "AUDIO_SUMMARY_CLIPS",
    "INFERENCE_SUBDIR",
    "KillSafeCheckpointManager",
    "LOSS_TERMS",
    "METRICS_COLUMNS",
    "METRICS_FILE",
    "PARAMS_CHANGES_FILE",
    "STRATEGIES",
    "WARM_START_FILE",
    "DynamicLossScale",
    "NonFiniteTrainingError",
    "TrainLearningRate",
    "Trainer",
    "configure_mixed_precision",
    "create_strategy",
    "dotted_initial_params",
    "drop_metrics_after",
    "examples_trained",
    "is_chief",
    "make_optimizer",
    "mel_comparison_image",
    "read_params_changes",
    "read_warm_start",
    "record_params_change",
    "record_warm_start",
    "remove_unlisted_checkpoint_files",
    "split_global_batches",
    "train",
    "training_dataset",
]
