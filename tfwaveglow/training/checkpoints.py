"""Kill-safe checkpoints: an index that never lists a checkpoint being deleted, and the clean-up on resume."""

from __future__ import annotations

import glob
import os
import shutil

import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management


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


def checkpoint_step(path: str | None) -> int | None:
    """The step in a ``ckpt-<step>`` prefix written by :meth:`tfwaveglow.training.Trainer.save`."""
    if not path:
        return None
    return int(path.rsplit("-", 1)[-1])
