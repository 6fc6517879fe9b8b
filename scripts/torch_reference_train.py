"""Trains the PyTorch reference of NVIDIA's WaveGlow on exactly the batches tfwaveglow's training reads.

    PYTHONPATH=. python scripts/torch_reference_train.py --params=configs/parity.yaml \\
        --init_from=runs/parity_init --filelist=corpus/train.txt --valid_filelist=corpus/valid.txt \\
        --wave_dir=corpus/audio --lc_dir=corpus/mels --model_dir=runs/parity_torch [--threads=1]

The model is ``tests/reference/glow.py`` (NVIDIA's module tree and math) with weight
norm on the WN convolutions, as NVIDIA trains. It starts from the weights of a
tfwaveglow inference directory (``--init_from``, what :func:`tfwaveglow.save_model`
writes; give ``train.py`` the same directory) and trains with what ``train.py`` uses
for the same params:

- data: :func:`tfwaveglow.data.make_dataset` with ``train.seed``, ``train.deterministic``
  and ``train.batch_size``, read from batch 0 in order (what an unbroken
  ``tfwaveglow.training.train`` run reads), converted to NumPy up front;
- loss: NVIDIA's ``WaveGlowLoss`` with ``train.sigma``;
- optimizer: ``torch.optim.Adam`` (betas 0.9 / 0.999, eps 1e-8, as NVIDIA and
  ``tfwaveglow.training.make_optimizer``), the learning rate of step ``t`` (0-based
  count of updates already made) from the formula of
  :class:`tfwaveglow.training.TrainLearningRate`, gradient clipping at
  ``train.grad_clip_norm`` if set;
- validation: the mean NLL over :func:`tfwaveglow.data.make_validation_dataset`'s
  utterances (the first ``train.valid_max_clips``) every ``train.validate_every`` steps
  and at the end, plus once before the first step (step 0).

``<model_dir>/metrics.csv`` has the columns of a tfwaveglow run's ``metrics.csv``
(training rows: means over ``train.summary_every`` steps); ``params.yaml`` the
resolved config; ``weights.npz`` the final weights in tfwaveglow's layout (weight
norm folded), so ``tfwaveglow.load_model(<model_dir>)`` loads them.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time

import numpy as np
from absl import flags, logging

from tfwaveglow import cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DIR = os.path.join(REPO_ROOT, "tests", "reference")
sys.path.insert(0, REFERENCE_DIR)
# The weight mapping is shared with the parity tests and benchmarks (imports torch only when used).
from tfwaveglow_weights import build_reference, reference_arrays  # noqa: E402

LOSS_TERMS = ("loss/total", "loss/z", "loss/log_s", "loss/log_det_w")

FLAGS = flags.FlagValues()
flags.DEFINE_string("filelist", None, "Training utterance ids, one per line.", flag_values=FLAGS)
flags.DEFINE_string(
    "valid_filelist", None, "Validation utterance ids (default: train.valid_filelist).", flag_values=FLAGS
)
flags.DEFINE_string("wave_dir", None, "Directory of the wav files.", flag_values=FLAGS)
flags.DEFINE_string("lc_dir", None, "Directory of the mel spectrograms.", flag_values=FLAGS)
flags.DEFINE_string("model_dir", None, "Output directory: params.yaml, metrics.csv, weights.npz.", flag_values=FLAGS)
flags.DEFINE_string("params", None, "YAML config (partial configs are merged over the defaults).", flag_values=FLAGS)
flags.DEFINE_multi_string("params_override", [], "section.key=value (repeatable).", flag_values=FLAGS)
flags.DEFINE_string("init_from", None, "tfwaveglow inference directory with the initial weights.", flag_values=FLAGS)
flags.DEFINE_integer("steps", None, "Stop at this step (default train.steps).", flag_values=FLAGS)
flags.DEFINE_integer("threads", 1, "PyTorch and TensorFlow threads.", flag_values=FLAGS)
flags.mark_flags_as_required(["filelist", "wave_dir", "lc_dir", "model_dir", "init_from"], flag_values=FLAGS)


def import_reference():
    """``tests/reference/glow.py`` as module ``glow``."""
    import glow

    return glow


# --------------------------------------------------------------------------- optimisation
def learning_rate(step: int, train_params) -> float:
    """:class:`tfwaveglow.training.TrainLearningRate`'s formula at ``step`` (updates made so far)."""
    t = train_params
    lr = t.learning_rate
    after_warmup = max(step - t.lr_warmup_steps, 0)
    if t.lr_schedule == "exponential":
        lr *= t.lr_decay_rate ** (after_warmup / t.lr_decay_steps)
    elif t.lr_schedule == "cosine":
        progress = min(after_warmup / t.lr_decay_steps, 1.0)
        lr *= t.lr_decay_rate + (1.0 - t.lr_decay_rate) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif t.lr_schedule != "constant":
        raise ValueError(f"unknown learning-rate schedule {t.lr_schedule!r}")
    if t.lr_warmup_steps > 0:
        lr *= min(1.0, (step + 1.0) / t.lr_warmup_steps)
    return lr


def make_optimizer(reference):
    """Adam with PyTorch's defaults (betas 0.9 / 0.999, eps 1e-8), as NVIDIA trains; lr set per step."""
    import torch

    return torch.optim.Adam(reference.parameters(), lr=0.0, betas=(0.9, 0.999), eps=1e-8)


def loss_terms(output, sigma: float) -> dict:
    """NVIDIA's ``WaveGlowLoss`` as ``loss/total`` (a tensor), beside its terms (floats) as tfwaveglow names them."""
    import torch

    glow = import_reference()
    z, log_s_list, log_det_w_list = output
    total = glow.WaveGlowLoss(sigma=sigma)(output)
    with torch.no_grad():
        size = float(z.numel())
        terms = {
            "loss/z": float(torch.sum(z * z)) / (2.0 * sigma * sigma) / size,
            "loss/log_s": float(sum(torch.sum(s) for s in log_s_list)) / size,
            "loss/log_det_w": float(sum(log_det_w_list)) / size,
        }
    return {"loss/total": total, **terms}


def train_step(reference, optimizer, mel: np.ndarray, audio: np.ndarray, step: int, train_params) -> dict:
    """One optimisation step on a tfwaveglow batch.

    Args:
      reference: ``glow.WaveGlow`` in train mode.
      optimizer: :func:`make_optimizer`'s Adam.
      mel: ``[B, F, n_mel]`` float32 (tfwaveglow's channels-last layout).
      audio: ``[B, S]`` float32.
      step: updates made so far (fixes the learning rate).
      train_params: ``params.train`` (``sigma``, schedule, ``grad_clip_norm``).

    Returns:
      The loss terms (floats, before the update), ``grad_norm`` (global, before
      clipping) and ``learning_rate``.
    """
    import torch

    lr = learning_rate(step, train_params)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad()
    spect = torch.from_numpy(np.ascontiguousarray(mel, np.float32)).transpose(1, 2)
    audio = torch.from_numpy(np.ascontiguousarray(audio, np.float32))
    terms = loss_terms(reference((spect, audio)), train_params.sigma)
    terms["loss/total"].backward()
    grads = [p.grad for p in reference.parameters() if p.grad is not None]
    grad_norm = float(torch.sqrt(sum(torch.sum(g * g) for g in grads)))
    if train_params.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(reference.parameters(), train_params.grad_clip_norm)
    optimizer.step()
    return {**terms, "loss/total": float(terms["loss/total"].detach()), "grad_norm": grad_norm, "learning_rate": lr}


def evaluate(reference, batches, sigma: float) -> dict:
    """Mean loss terms over ``(mel [1, F, n_mel], audio [1, S])`` NumPy batches (as ``Trainer.evaluate``)."""
    import torch

    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    with torch.no_grad():
        for mel, audio in batches:
            spect = torch.from_numpy(mel).transpose(1, 2)
            terms = loss_terms(reference((spect, torch.from_numpy(audio))), sigma)
            for key in LOSS_TERMS:
                sums[key] += float(terms[key])
    if not batches:
        raise ValueError("the validation set is empty")
    return {k: v / len(batches) for k, v in sums.items()}


# --------------------------------------------------------------------------- data
def training_batches(params, ids, wave_dir: str, lc_dir: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``steps`` batches of :func:`tfwaveglow.training.train`'s stream, as NumPy.

    Returns:
      ``mel [steps, B, F, n_mel]``, ``audio [steps, B, S]``.
    """
    from tfwaveglow.training import training_dataset

    dataset = training_dataset(params, ids, wave_dir, lc_dir)
    mels, audios = [], []
    for mel, audio in dataset.take(steps):
        mels.append(mel.numpy())
        audios.append(audio.numpy())
    return np.stack(mels), np.stack(audios)


def validation_batches(params, valid_ids, wave_dir: str, lc_dir: str) -> list:
    """:func:`tfwaveglow.training.train`'s validation batches (first ``train.valid_max_clips`` ids), as NumPy."""
    from tfwaveglow import data

    if params.train.valid_max_clips:
        valid_ids = valid_ids[: params.train.valid_max_clips]
    dataset = data.make_validation_dataset(valid_ids, wave_dir, lc_dir, params)
    return [(mel.numpy(), audio.numpy()) for mel, audio in dataset]


# --------------------------------------------------------------------------- run
class MetricsWriter:
    """Appends rows to ``metrics.csv`` in the columns of tfwaveglow's training runs."""

    def __init__(self, path: str):
        from tfwaveglow.training import METRICS_COLUMNS

        self.path = path
        self.columns = METRICS_COLUMNS
        with open(path, "w", encoding="utf-8", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writeheader()

    def write(self, step: int, split: str, values: dict) -> None:
        row = {"step": step, "time": f"{time.time():.3f}", "split": split}
        row.update({k: f"{float(v):.6g}" for k, v in values.items() if k in self.columns})
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, restval="").writerow(row)


def run(params, ids, valid_ids, wave_dir, lc_dir, model_dir, init_from, steps) -> dict:
    """Trains the reference from ``init_from`` for ``steps`` steps; returns the last validation terms."""
    import torch

    import tfwaveglow

    t = params.train
    os.makedirs(model_dir, exist_ok=True)
    metrics_path = os.path.join(model_dir, "metrics.csv")
    if os.path.exists(metrics_path):
        raise FileExistsError(f"{metrics_path} exists: this script does not resume; use a new --model_dir")
    tfwaveglow.save_params(params, os.path.join(model_dir, "params.yaml"))
    with np.load(os.path.join(init_from, "weights.npz")) as f:
        reference = build_reference(params.model, {k: f[k] for k in f.files}, weight_norm=t.weight_norm)
    optimizer = make_optimizer(reference)
    tick = time.perf_counter()
    mels, audios = training_batches(params, ids, wave_dir, lc_dir, steps)
    valid = validation_batches(params, valid_ids, wave_dir, lc_dir) if valid_ids else []
    seconds = time.perf_counter() - tick
    logging.info("read %d training batches and %d validation clips in %.1f s", steps, len(valid), seconds)
    metrics = MetricsWriter(metrics_path)
    last_valid = {}

    def validate(step):
        nonlocal last_valid
        reference.eval()
        last_valid = evaluate(reference, valid, t.sigma)
        reference.train()
        metrics.write(step, "valid", last_valid)
        logging.info("step %d | validation loss %.4f", step, last_valid["loss/total"])

    if valid:
        validate(0)
    reference.train()
    window, window_start = [], time.perf_counter()
    for step in range(steps):
        result = train_step(reference, optimizer, mels[step], audios[step], step, t)
        if not math.isfinite(result["loss/total"]):
            raise FloatingPointError(f"step {step + 1}: non-finite loss {result['loss/total']}")
        window.append(result)
        done = step + 1
        if done % t.summary_every == 0:
            rate = len(window) / (time.perf_counter() - window_start)
            means = {k: float(np.mean([r[k] for r in window])) for k in (*LOSS_TERMS, "grad_norm")}
            metrics.write(
                done,
                "train",
                {
                    **means,
                    "learning_rate": result["learning_rate"],
                    "steps_per_sec": rate,
                    "samples_per_sec": rate * t.batch_size,
                },
            )
            if done % t.log_every == 0:
                logging.info("step %d/%d | loss %.4f | %.2f steps/s", done, steps, means["loss/total"], rate)
            window, window_start = [], time.perf_counter()
        if valid and (done % t.validate_every == 0 or done == steps):
            validate(done)
    final = tfwaveglow.WaveGlow.from_params(params)
    from tfwaveglow.model_io import assign_arrays

    assign_arrays(final, reference_arrays(reference), source="PyTorch reference")
    tfwaveglow.save_model(final, model_dir, params)
    torch.save(reference.state_dict(), os.path.join(model_dir, "reference_state_dict.pt"))
    return last_valid


def main(argv):
    """Trains; ``argv`` may carry the flags when called from Python."""
    cli.parse_argv(FLAGS, argv)
    import tensorflow as tf
    import torch

    torch.set_num_threads(FLAGS.threads)
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tfwaveglow
    from tfwaveglow import data

    overrides = {}
    for entry in FLAGS.params_override:
        key, sep, value = entry.partition("=")
        if not sep:
            raise ValueError(f"--params_override expects section.key=value, got {entry!r}")
        overrides[key.strip()] = value.strip()
    params = tfwaveglow.load_params(FLAGS.params, overrides=overrides)
    ids = data.read_filelist(FLAGS.filelist)
    valid_filelist = FLAGS.valid_filelist or params.train.valid_filelist
    valid_ids = data.read_filelist(valid_filelist) if valid_filelist else None
    steps = params.train.steps if FLAGS.steps is None else FLAGS.steps
    last = run(params, ids, valid_ids, FLAGS.wave_dir, FLAGS.lc_dir, FLAGS.model_dir, FLAGS.init_from, steps)
    logging.info("finished at step %d: validation %s", steps, last)
    return 0


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
