"""Distribution: strategies by name, the chief, replica-synchronised scalars, the global batch.

The bottom of :mod:`tfwaveglow.training`: it imports none of the package's other modules.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


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


def scalar_variable(name, value, dtype):
    """A non-trainable scalar (or small vector) every replica holds the same value of (written once, not summed)."""
    return tf.Variable(
        value,
        name=name,
        dtype=dtype,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


def global_batch(specs: list, strategy) -> int:
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
