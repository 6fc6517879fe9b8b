"""The ``tf.data`` input pipeline for training and validation.

It reads what ``preprocess_data.py`` writes: for an utterance id ``u``, the audio
``<wave_dir>/u.wav`` (mono, ``audio.sampling_rate``; 16-bit PCM reads back as
int16 / 32768) and its log-mel ``<lc_dir>/u.npy`` (float32 ``[1 + samples // hop, n_mel]``).

Training examples are segments of ``S = data.segment_length`` samples starting at a
multiple of the hop, ``f0 * hop``, paired with the stored mel frames
``f0 .. f0 + F - 1`` where ``F = ceil(S / hop)`` (so ``(F - 2) * hop < S <= F * hop``,
what ``WaveGlow.forward`` expects). The mel is the utterance's, not recomputed
from the segment: away from the segment's first and last two frames it equals
the mel of the segment itself. An utterance shorter than ``S`` is used whole:
its audio is padded with zeros to ``S`` (as NVIDIA does) and its mel with frames
of silence, ``log(1e-5)``, to ``F`` (not recomputed).

Ordering is a pure function of ``(seed, example index)``: epoch ``e`` visits the
file list in the permutation drawn from ``(seed, e)`` and example ``i`` draws its
segment start from ``(seed, i)``. With a fixed seed two runs yield identical
batches, and ``skip_batches=k`` yields exactly what an uninterrupted run yields
from batch ``k`` on (a resumed training run sees the data it would have seen).
The whole file list is permuted every epoch (no shuffle buffer).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence

import numpy as np
import soundfile
import tensorflow as tf

from tfwaveglow.audio import LOG_CLAMP
from tfwaveglow.config import Params

__all__ = [
    "DataError",
    "make_dataset",
    "make_validation_dataset",
    "mel_frames_per_segment",
    "pipeline_share",
    "read_filelist",
]

_KNOWN_SUFFIXES = (".wav", ".flac", ".ogg", ".npy")
_INT64_MAX = np.iinfo(np.int64).max


class DataError(ValueError):
    """A file list or a stored utterance that cannot be used; the message names the file."""


def read_filelist(path: str | os.PathLike) -> list[str]:
    """Reads utterance ids, one a line.

    Blank lines and lines starting with ``#`` are ignored; a trailing audio or
    ``.npy`` extension is dropped, so NVIDIA-style lists of wav paths also work
    when those paths are relative to the wave directory.

    Args:
      path: a text file such as ``<data_dir>/train.txt``.

    Returns:
      The ids in file order.

    Raises:
      FileNotFoundError: no such file.
      DataError: the list holds no ids.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file list not found: {path}")
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            stem, ext = os.path.splitext(line)
            ids.append(stem if ext.lower() in _KNOWN_SUFFIXES else line)
    if not ids:
        raise DataError(f"{path}: the file list holds no utterance ids")
    return ids


def mel_frames_per_segment(segment_length: int, hop_length: int) -> int:
    """Mel frames paired with a segment: ``ceil(segment_length / hop_length)``."""
    return int(math.ceil(segment_length / hop_length))


def _resolve_ids(filelist) -> list[str]:
    if isinstance(filelist, (str, os.PathLike)):
        return read_filelist(filelist)
    ids = [str(uid) for uid in filelist]
    if not ids:
        raise DataError("the file list holds no utterance ids")
    return ids


def _paths(uid: str, wave_dir: str, lc_dir: str) -> tuple[str, str]:
    return os.path.join(wave_dir, uid + ".wav"), os.path.join(lc_dir, uid + ".npy")


def _check_files_exist(ids: Sequence[str], wave_dir: str, lc_dir: str) -> None:
    missing = []
    for uid in ids:
        for path in _paths(uid, wave_dir, lc_dir):
            if not os.path.isfile(path):
                missing.append(path)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} files of the file list are missing: {shown}")


class _Utterances:
    """Reads and checks stored utterances (runs inside ``tf.numpy_function``)."""

    def __init__(self, wave_dir: str, lc_dir: str, params: Params):
        self.wave_dir = wave_dir
        self.lc_dir = lc_dir
        self.sampling_rate = int(params.audio.sampling_rate)
        self.hop = int(params.audio.hop_length)
        self.n_mel = int(params.audio.n_mel_channels)

    def info(self, uid: str) -> tuple[str, str, int, np.ndarray]:
        """Checks an utterance; returns (wav path, mel path, samples, mel [frames, n_mel])."""
        wav_path, mel_path = _paths(uid, self.wave_dir, self.lc_dir)
        try:
            info = soundfile.info(wav_path)
        except Exception as e:  # noqa: BLE001 - re-raised with the file named
            raise DataError(f"{wav_path}: cannot read audio: {e}") from None
        if int(info.samplerate) != self.sampling_rate:
            raise DataError(
                f"{wav_path}: sampling rate {info.samplerate} Hz, expected {self.sampling_rate} Hz "
                "(run preprocess_data.py and train on <data_dir>/audio)"
            )
        if info.channels != 1:
            raise DataError(f"{wav_path}: {info.channels} channels, expected mono")
        samples = int(info.frames)
        try:
            mel = np.load(mel_path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - re-raised with the file named
            raise DataError(f"{mel_path}: cannot read mel: {e}") from None
        expected_frames = 1 + samples // self.hop
        if mel.ndim != 2 or mel.shape != (expected_frames, self.n_mel):
            raise DataError(
                f"{mel_path}: mel shape {mel.shape}, expected ({expected_frames}, {self.n_mel}) for the "
                f"{samples} samples of {wav_path} (made with other params? rerun preprocess_data.py)"
            )
        if not np.all(np.isfinite(mel)):
            raise DataError(f"{mel_path}: {int(np.count_nonzero(~np.isfinite(mel)))} non-finite values in the mel")
        return wav_path, mel_path, samples, mel.astype(np.float32, copy=False)

    def read(self, wav_path: str, start: int, frames: int) -> np.ndarray:
        try:
            audio = soundfile.read(wav_path, start=start, frames=frames, dtype="float32", always_2d=False)[0]
        except Exception as e:  # noqa: BLE001 - re-raised with the file named
            raise DataError(f"{wav_path}: cannot read audio: {e}") from None
        if not np.all(np.isfinite(audio)):
            raise DataError(f"{wav_path}: non-finite (NaN or Inf) audio samples")
        return audio


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def make_dataset(
    filelist,
    wave_dir: str,
    lc_dir: str,
    params: Params,
    *,
    batch_size: int,
    training: bool = True,
    deterministic: bool = False,
    seed: int | None = None,
    repeat: bool = True,
    skip_batches: int = 0,
    num_parallel_calls: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Batches of aligned (mel, audio) training segments.

    Args:
      filelist: utterance ids, or the path of a file list (see :func:`read_filelist`).
      wave_dir: directory of ``<id>.wav`` (``<data_dir>/audio`` after preprocessing).
      lc_dir: directory of ``<id>.npy`` mels (the ``--mel_dir`` of preprocessing).
      params: resolved params (``audio`` and ``data.segment_length``).
      batch_size: examples per batch; partial batches are dropped (static shapes).
      training: shuffle the file list every epoch and draw random segment starts;
        ``False`` keeps the file-list order and takes each utterance's centre segment.
      deterministic: keep the element order fixed (parallel reads still run); with a
        ``seed`` two runs give identical batches.
      seed: seed of the order and segment starts; ``None`` draws one (from
        ``params.train.seed`` when ``deterministic``).
      repeat: cycle epochs forever; ``False`` gives one pass over the list.
      skip_batches: batches to leave out at the start, e.g. the step a resumed run
        starts from (the remaining batches are the same as without skipping).
      num_parallel_calls: parallel readers (default ``tf.data.AUTOTUNE``).
      input_context: one input pipeline of a ``tf.distribute`` strategy (what
        ``strategy.distribute_datasets_from_function`` passes). ``batch_size`` is
        then the global batch: pipeline ``p`` of ``P`` reads only its share, the
        ``p``-th of ``P`` equal parts of every global batch, and yields it as
        per-replica batches of ``batch_size / num_replicas_in_sync`` (so the
        replicas together train on exactly the global batches of one process).

    Returns:
      A dataset of ``(mel [B, ceil(segment_length / hop), n_mel] float32,
      audio [B, segment_length] float32)``, ``B = batch_size``, or the per-replica
      batch with an ``input_context``.

    Raises:
      DataError: an empty list, missing files, or (when iterating) a stored file
        with the wrong rate, shape or non-finite values; the message names the file.
    """
    ids = _resolve_ids(filelist)
    wave_dir, lc_dir = os.fspath(wave_dir), os.fspath(lc_dir)
    _check_files_exist(ids, wave_dir, lc_dir)
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if not repeat and len(ids) < batch_size:
        raise DataError(f"{len(ids)} utterances make no batch of {batch_size} without repeat")
    if seed is None:
        seed = int(params.train.seed) if deterministic else int(np.random.SeedSequence().entropy % (2**63))
    seed = int(seed)
    segment = int(params.data.segment_length)
    hop = int(params.audio.hop_length)
    n_frames = mel_frames_per_segment(segment, hop)
    n_mel = int(params.audio.n_mel_channels)
    silence = np.float32(np.log(LOG_CLAMP))
    store = _Utterances(wave_dir, lc_dir, params)
    n = len(ids)

    def load(index: np.int64) -> tuple[np.ndarray, np.ndarray]:
        index = int(index)
        epoch, position = divmod(index, n)
        uid = ids[_epoch_order(seed, epoch, n)[position]] if training else ids[position]
        wav_path, _, samples, mel = store.info(uid)
        if samples >= segment:
            last_start = (samples - segment) // hop
            if training:
                f0 = int(np.random.default_rng([seed, index, 0xA0D10]).integers(0, last_start + 1))
            else:
                f0 = last_start // 2
            audio = store.read(wav_path, f0 * hop, segment)
            mel_segment = mel[f0 : f0 + n_frames]
        else:
            audio = np.zeros(segment, np.float32)
            audio[:samples] = store.read(wav_path, 0, samples)
            mel_segment = np.full((n_frames, n_mel), silence, np.float32)
            mel_segment[: mel.shape[0]] = mel
        return np.ascontiguousarray(mel_segment, np.float32), np.ascontiguousarray(audio, np.float32)

    def load_tf(index):
        mel, audio = tf.numpy_function(load, [index], [tf.float32, tf.float32], stateful=False)
        mel.set_shape([n_frames, n_mel])
        audio.set_shape([segment])
        return mel, audio

    start = int(skip_batches) * int(batch_size)
    stop = _INT64_MAX if repeat else n
    dataset = tf.data.Dataset.range(start, stop)
    out_batch = batch_size
    if input_context is not None:
        keep, out_batch = pipeline_share(batch_size, input_context)
        dataset = dataset.filter(keep)  # before the reads: a pipeline reads only its share
    dataset = dataset.map(
        load_tf,
        num_parallel_calls=tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls,
        deterministic=True if deterministic else None,
    )
    dataset = dataset.batch(out_batch, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def pipeline_share(batch_size: int, input_context: tf.distribute.InputContext):
    """Which examples of a global-batch stream one input pipeline takes.

    Args:
      batch_size: the global batch ``B``.
      input_context: the pipeline ``p`` of ``P`` (and the strategy's replica count).

    Returns:
      ``(keep, per_replica)``: ``keep(i)`` is true (a boolean tensor) for the
      stream's example index ``i`` that pipeline ``p`` takes, the ``p``-th of ``P``
      equal parts of every global batch; ``per_replica = B / num_replicas_in_sync``.

    Raises:
      DataError: ``B`` does not divide by ``P`` or by the number of replicas.
    """
    pipelines = int(input_context.num_input_pipelines)
    if batch_size % pipelines:
        raise DataError(f"the global batch ({batch_size}) must divide by the number of input pipelines ({pipelines})")
    try:
        per_replica = int(input_context.get_per_replica_batch_size(batch_size))
    except ValueError as e:
        raise DataError(str(e)) from None
    share, pipeline = batch_size // pipelines, int(input_context.input_pipeline_id)

    def keep(i):
        return (i % batch_size) // share == pipeline

    return keep, per_replica


def make_validation_dataset(
    filelist,
    wave_dir: str,
    lc_dir: str,
    params: Params,
    *,
    batch_size: int = 1,
    max_samples: int | None = None,
) -> tf.data.Dataset:
    """Whole validation utterances, one per batch, in file-list order (one pass).

    Each utterance of ``n`` samples is cut to ``S = (min(n, max_samples) // hop) * hop``
    samples and paired with its stored mel frames ``0 .. S / hop`` (``S / hop + 1``
    frames), which meets ``(F - 2) * hop < S <= F * hop``.

    Args:
      filelist: utterance ids, or the path of a file list (``<data_dir>/valid.txt``).
      wave_dir, lc_dir: as for :func:`make_dataset`.
      params: resolved params.
      batch_size: must be 1 (utterances differ in length).
      max_samples: cap on the samples per utterance (bounds the cost on long files).

    Returns:
      A dataset of ``(mel [1, F, n_mel] float32, audio [1, S] float32)``.
    """
    if batch_size != 1:
        raise DataError(f"the validation dataset yields whole utterances, so batch_size must be 1, got {batch_size}")
    ids = _resolve_ids(filelist)
    wave_dir, lc_dir = os.fspath(wave_dir), os.fspath(lc_dir)
    _check_files_exist(ids, wave_dir, lc_dir)
    hop = int(params.audio.hop_length)
    n_mel = int(params.audio.n_mel_channels)
    store = _Utterances(wave_dir, lc_dir, params)

    def load(index: np.int64) -> tuple[np.ndarray, np.ndarray]:
        wav_path, _, samples, mel = store.info(ids[int(index)])
        keep = samples if max_samples is None else min(samples, int(max_samples))
        keep = (keep // hop) * hop
        if keep == 0:
            raise DataError(f"{wav_path}: {samples} samples, shorter than one hop ({hop})")
        audio = store.read(wav_path, 0, keep)
        return np.ascontiguousarray(mel[: keep // hop + 1], np.float32), audio

    def load_tf(index):
        mel, audio = tf.numpy_function(load, [index], [tf.float32, tf.float32], stateful=False)
        mel.set_shape([None, n_mel])
        audio.set_shape([None])
        return mel, audio

    dataset = tf.data.Dataset.range(len(ids)).map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(1).prefetch(tf.data.AUTOTUNE)
