"""What a run records: TensorBoard scalars, validation audio and mel images, and ``metrics.csv``.

Functions of the values they are given (no trainer state), so the loop
(:mod:`tfwaveglow.training.trainer`) decides when to call them and from which
process: only the chief writes into the run directory.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time

import tensorflow as tf

LOSS_TERMS = ("loss/total", "loss/z", "loss/log_s", "loss/log_det_w")
# The terms of the objectives beside the NLL (tfwaveglow.objectives); a step logs those it computed.
OBJECTIVE_TERMS = (
    "loss/nll",
    "loss/stft",
    "loss/stft_sc",
    "loss/stft_mag",
    "loss/mel",
    "loss/adv",
    "loss/fm",
    "loss/disc",
)
# State of the learning-rate rules and the divergence guard, logged with each training report.
RULE_COLUMNS = ("disc_learning_rate", "disc_grad_norm", "lr_scale", "guard_spikes", "rollbacks")
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
    *OBJECTIVE_TERMS,
    *RULE_COLUMNS,
)
AUDIO_SUMMARY_CLIPS = 2
# log(1e-5): the floor of the Tacotron 2 log-mel, the dark end of mel images.
_LOG_MEL_FLOOR = math.log(1e-5)


# --------------------------------------------------------------------------- TensorBoard
def summary_writers(model_dir: str, chief: bool) -> dict:
    """``{"train", "valid"}``: event-file writers into ``model_dir/<split>``, or no-op writers off the chief."""
    if chief:
        return {split: tf.summary.create_file_writer(os.path.join(model_dir, split)) for split in ("train", "valid")}
    return {split: tf.summary.create_noop_writer() for split in ("train", "valid")}


def flush(writers: dict) -> None:
    for writer in writers.values():
        writer.flush()


def write_train_scalars(
    writer,
    step: int,
    means: dict,
    *,
    learning_rate: float,
    steps_per_sec: float,
    samples_per_sec: float,
    nonfinite_steps: int,
    loss_scale: float | None = None,
    rules: dict | None = None,
) -> None:
    """The training scalars of one report: mean loss terms and gradient norms since the last, speed, state.

    Every ``loss/...`` key of ``means`` is written; ``rules`` holds
    :data:`RULE_COLUMNS` values (written as ``train/<name>``).
    """
    with writer.as_default(step=step):
        for key, value in means.items():
            if key.startswith("loss/"):
                tf.summary.scalar(key, value)
        tf.summary.scalar("train/learning_rate", learning_rate)
        for key in ("grad_norm", "disc_grad_norm"):
            if key in means:
                tf.summary.scalar(f"train/{key}", means[key])
        for key, value in (rules or {}).items():
            tf.summary.scalar(f"train/{key}", value)
        tf.summary.scalar("train/steps_per_sec", steps_per_sec)
        tf.summary.scalar("train/samples_per_sec", samples_per_sec)
        tf.summary.scalar("train/nonfinite_steps", nonfinite_steps)
        if loss_scale is not None:
            tf.summary.scalar("train/loss_scale", loss_scale)


def write_valid_scalars(writer, step: int, valid: dict) -> None:
    """The validation loss terms (every ``loss/...`` key)."""
    with writer.as_default(step=step):
        for key, value in valid.items():
            if key.startswith("loss/"):
                tf.summary.scalar(key, value)


def write_audio_summaries(writer, step: int, model, valid_dataset: tf.data.Dataset, params, compute_dtype) -> None:
    """Validation audio at ``export.sigma`` beside the ground truth, with mel images.

    The first two validation batches (whole utterances with
    :func:`tfwaveglow.data.make_validation_dataset`) are synthesised from
    their mels by ``model`` (the folded inference model) with a latent seeded by
    ``step``; each image puts the mel of the synthesised audio (left) beside the
    ground-truth mel (right).
    """
    from tfwaveglow.audio import mel_spectrogram_tf

    sr = params.audio.sampling_rate
    with writer.as_default(step=step):
        for clip, (mel, audio) in enumerate(valid_dataset.take(AUDIO_SUMMARY_CLIPS)):
            mel = tf.cast(mel, compute_dtype)
            generated = model.infer(mel, sigma=params.export.sigma, seed=step)
            generated = tf.clip_by_value(tf.cast(generated[:, : audio.shape[1]], tf.float32), -1.0, 1.0)
            generated_mel = mel_spectrogram_tf(generated, params.audio)
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


# --------------------------------------------------------------------------- metrics.csv
def append_metrics(
    model_dir: str, step: int, split: str, values: dict, *, train_seconds: float, cpu_seconds: float
) -> None:
    """Appends one row to ``model_dir/metrics.csv`` (header first in a new file).

    Args:
      model_dir: the run directory.
      step, split: the row's ``step`` and ``split`` (``train`` or ``valid``).
      values: the row's other :data:`METRICS_COLUMNS` (others are ignored).
      train_seconds, cpu_seconds: the run's training time so far, written as hours.
    """
    path = os.path.join(model_dir, METRICS_FILE)
    row = {"step": step, "time": f"{time.time():.3f}", "split": split}
    row["train_hours"] = f"{train_seconds / 3600:.6g}"
    row["cpu_hours"] = f"{cpu_seconds / 3600:.6g}"
    row.update({k: f"{float(v):.6g}" for k, v in values.items() if k in METRICS_COLUMNS})
    buffer = io.StringIO()
    new_file = not os.path.isfile(path)
    # A run begun by an earlier version keeps its file's columns.
    columns = METRICS_COLUMNS if new_file else _header(path) or METRICS_COLUMNS
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore")
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


def _header(path: str) -> tuple:
    with open(path, encoding="utf-8") as f:
        return tuple(next(csv.reader([f.readline()]), []))


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
