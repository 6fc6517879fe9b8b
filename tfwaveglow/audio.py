"""Audio I/O and the NVIDIA/Tacotron 2 mel front end.

Audio inside the package is mono float32 at ``int16 / 32768`` scale, i.e. values
in ``[-1, 1)``, which is what NVIDIA's WaveGlow sees (``wav / MAX_WAV_VALUE``).

The mel front end (identical in :func:`mel_spectrogram` and
:func:`mel_spectrogram_tf`):

1. reflect-pad the audio by ``filter_length // 2`` on both sides (centred frames),
   so ``frames = 1 + samples // hop_length``;
2. frames of ``filter_length`` samples every ``hop_length``, times a periodic Hann
   window of ``win_length`` samples zero-padded to ``filter_length`` (centred);
3. the STFT magnitude (not power) of each frame, ``filter_length // 2 + 1`` bins;
4. the Slaney-style mel filterbank (librosa's default, area-normalised) from
   :func:`mel_basis`; HTK-style banks such as ``tf.signal.linear_to_mel_weight_matrix``
   give different values;
5. ``log(max(mel, 1e-5))``, natural log, no further normalisation.

Both entry points compute in float64 and return float32: in float32 the FFT's
rounding error, relative to a frame's loudest bins, is large next to the quiet
mel bins of speech, and the log turns it into errors near 1e-3 on real speech.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile

__all__ = [
    "LOG_CLAMP",
    "AudioError",
    "load_audio",
    "log_clamp_value",
    "mel_basis",
    "mel_spectrogram",
    "mel_spectrogram_tf",
    "num_frames",
    "quantize_int16",
    "read_audio",
    "resample",
    "save_wav",
]

# Magnitudes below this are clamped before the log (Tacotron 2's dynamic_range_compression).
LOG_CLAMP = 1e-5

# Float files may carry values slightly past full scale (resampling, lossy codecs);
# beyond this the file is not at [-1, 1] scale at all and is rejected rather than clipped.
_MAX_PEAK = 2.0


class AudioError(ValueError):
    """An audio file or array that cannot be used; the message names the file and the problem."""


def log_clamp_value() -> float:
    """The log-mel value of silence: ``log(1e-5)``."""
    return float(np.log(LOG_CLAMP))


def num_frames(num_samples: int, hop_length: int) -> int:
    """Mel frames for ``num_samples`` samples with centred frames: ``1 + samples // hop``."""
    return 1 + int(num_samples) // int(hop_length)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Reads an audio file as it is stored: every channel, the file's own rate.

    Any format libsndfile reads; integer PCM keeps NVIDIA's scale (int16 / 32768).

    Args:
      path: the file.

    Returns:
      ``(samples, rate)``: float64 array ``[samples, channels]`` and the file's rate in Hz.

    Raises:
      AudioError: missing, unreadable or empty file, or non-finite samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: file not found")
    try:
        data, file_rate = soundfile.read(path, dtype="float64", always_2d=True)
    except (RuntimeError, TypeError, ValueError, OSError) as e:
        # libsndfile's errors (soundfile.LibsndfileError is a RuntimeError) say what it could not parse.
        raise AudioError(f"{path}: cannot read audio: {e}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise AudioError(f"{path}: {bad} non-finite (NaN or Inf) samples")
    return data, int(file_rate)


def load_audio(path: str | os.PathLike, sampling_rate: int) -> np.ndarray:
    """Reads an audio file as mono float32 at ``sampling_rate``.

    Any format libsndfile reads (wav, flac, ogg, ...), through :func:`read_audio`. Channels are
    averaged; other rates are resampled with soxr (very high quality, band-limited).
    Integer PCM keeps NVIDIA's scale (int16 / 32768).

    Args:
      path: the file.
      sampling_rate: the rate of the returned audio in Hz.

    Returns:
      float32 array ``[samples]`` with values in ``[-1, 1]``.

    Raises:
      AudioError: missing, unreadable or empty file, non-finite samples, or float
        samples far outside ``[-1, 1]``.
    """
    path = os.fspath(path)
    data, file_rate = read_audio(path)
    audio = data.mean(axis=1)
    peak = float(np.max(np.abs(audio)))
    if peak > _MAX_PEAK:
        raise AudioError(f"{path}: samples reach {peak:.4g}, the audio is not at [-1, 1] full scale")
    if file_rate != int(sampling_rate):
        audio = resample(audio, file_rate, int(sampling_rate))
        if audio.shape[0] == 0:
            raise AudioError(f"{path}: no samples left after resampling {file_rate} Hz to {sampling_rate} Hz")
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling (soxr, very high quality) of a mono signal.

    Args:
      audio: ``[samples]`` float array.
      source_rate, target_rate: rates in Hz.

    Returns:
      float64 ``[round(samples * target_rate / source_rate)]``.
    """
    import soxr

    if source_rate == target_rate:
        return np.asarray(audio, np.float64)
    return soxr.resample(np.asarray(audio, np.float64), source_rate, target_rate, quality="VHQ")


def quantize_int16(audio) -> np.ndarray:
    """Rounds audio to the values a 16-bit PCM file holds: ``int16 / 32768``, clipped to ``[-1, 1)``.

    Args:
      audio: float array of any shape.

    Returns:
      float32 array of the same shape; :func:`save_wav` then :func:`load_audio` returns it exactly.
    """
    return (_to_pcm16(np.asarray(audio, np.float64)).astype(np.float32) / np.float32(32768.0)).astype(np.float32)


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.clip(audio, -1.0, 1.0) * 32768.0), -32768, 32767).astype(np.int16)


def save_wav(path: str | os.PathLike, audio, sampling_rate: int) -> None:
    """Writes mono 16-bit PCM; the file appears atomically (temporary file, then rename).

    Samples are clipped to ``[-1, 1]`` and scaled by 32768 (NVIDIA's scale), so a
    file read back by :func:`load_audio` returns the same int16 / 32768 values.

    Args:
      path: destination ``.wav``.
      audio: ``[samples]`` float array (any array-like, e.g. a tf.Tensor's numpy()).
      sampling_rate: rate in Hz written to the header.

    Raises:
      AudioError: the audio is not one-dimensional or holds non-finite values.
    """
    path = os.fspath(path)
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise AudioError(f"{path}: expected mono audio [samples], got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: refusing to write non-finite (NaN or Inf) samples")
    pcm = _to_pcm16(audio)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        soundfile.write(tmp, pcm, int(sampling_rate), subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    return np.where(above, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def _mel_basis_f64(audio_params) -> np.ndarray:
    n_fft = int(audio_params.filter_length)
    n_mels = int(audio_params.n_mel_channels)
    sr = float(audio_params.sampling_rate)
    fft_freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(audio_params.mel_fmin), _hz_to_mel(audio_params.mel_fmax), n_mels + 2)
    band_edges = _mel_to_hz(mel_points)
    widths = np.diff(band_edges)
    # Triangles: rising from edge i to i+1, falling from i+1 to i+2.
    offsets = band_edges[:, None] - fft_freqs[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: each triangle has unit area in Hz (2 / bandwidth).
    weights *= (2.0 / (band_edges[2:] - band_edges[:-2]))[:, None]
    return weights


def mel_basis(audio_params) -> np.ndarray:
    """The Slaney mel filterbank (librosa's default: ``htk=False, norm='slaney'``).

    Args:
      audio_params: ``params.audio`` (sampling_rate, filter_length, n_mel_channels,
        mel_fmin, mel_fmax).

    Returns:
      float32 ``[n_mel_channels, filter_length // 2 + 1]``.
    """
    return _mel_basis_f64(audio_params).astype(np.float32)


def _window_f64(audio_params) -> np.ndarray:
    """Periodic Hann of ``win_length`` zero-padded (centred) to ``filter_length``."""
    n_fft, win = int(audio_params.filter_length), int(audio_params.win_length)
    if win > n_fft:
        raise ValueError(f"win_length ({win}) must be <= filter_length ({n_fft})")
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = hann
    return window


def _check_length(num_samples: int, audio_params, name: str = "audio") -> None:
    pad = int(audio_params.filter_length) // 2
    if num_samples <= pad:
        raise ValueError(
            f"{name} has {num_samples} samples; reflect padding by filter_length // 2 = {pad} needs more than {pad}"
        )


def mel_spectrogram(audio, audio_params, *, frames_per_chunk: int = 2048) -> np.ndarray:
    """Log-mel spectrogram of one utterance (NumPy).

    Args:
      audio: ``[samples]`` float array in ``[-1, 1]`` (int16 / 32768 scale); more
        than ``filter_length // 2`` samples.
      audio_params: ``params.audio``.
      frames_per_chunk: frames transformed at once (bounds memory on long files).

    Returns:
      float32 ``[1 + samples // hop_length, n_mel_channels]``.

    Raises:
      ValueError: not one-dimensional, too short for the reflect padding, or non-finite.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"expected audio [samples], got shape {audio.shape}")
    _check_length(audio.shape[0], audio_params)
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio holds non-finite (NaN or Inf) samples")
    n_fft, hop = int(audio_params.filter_length), int(audio_params.hop_length)
    padded = np.pad(audio, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = _window_f64(audio_params)
    basis_t = _mel_basis_f64(audio_params).T
    out = np.empty((frames.shape[0], basis_t.shape[1]), np.float32)
    for start in range(0, frames.shape[0], frames_per_chunk):
        chunk = frames[start : start + frames_per_chunk] * window
        magnitude = np.abs(np.fft.rfft(chunk, n=n_fft, axis=-1))
        out[start : start + chunk.shape[0]] = np.log(np.maximum(magnitude @ basis_t, LOG_CLAMP))
    return out


def mel_spectrogram_tf(audio, audio_params):
    """Log-mel spectrogram of a batch in TensorFlow; same values as :func:`mel_spectrogram`.

    Usable inside ``tf.function`` (the sample count may be dynamic).

    Args:
      audio: ``[B, samples]`` (or ``[samples]``) float tensor in ``[-1, 1]``; more
        than ``filter_length // 2`` samples.
      audio_params: ``params.audio``.

    Returns:
      tf.float32 ``[B, 1 + samples // hop_length, n_mel_channels]`` (``[frames, n_mel]``
      for a 1-D input).
    """
    import tensorflow as tf

    audio = tf.convert_to_tensor(audio)
    squeeze = audio.shape.rank == 1
    if squeeze:
        audio = audio[None]
    if audio.shape.rank != 2:
        raise ValueError(f"expected audio [B, samples], got shape {audio.shape}")
    if audio.shape[1] is not None:
        _check_length(int(audio.shape[1]), audio_params)
    n_fft, hop = int(audio_params.filter_length), int(audio_params.hop_length)
    pad = n_fft // 2
    x = tf.cast(audio, tf.float64)
    x = tf.pad(x, [[0, 0], [pad, pad]], mode="REFLECT")
    frames = tf.signal.frame(x, n_fft, hop, pad_end=False)  # [B, frames, n_fft]
    frames = frames * tf.constant(_window_f64(audio_params), tf.float64)
    magnitude = tf.abs(tf.signal.rfft(frames, fft_length=[n_fft]))
    mel = tf.linalg.matmul(magnitude, tf.constant(_mel_basis_f64(audio_params).T, tf.float64))
    log_mel = tf.cast(tf.math.log(tf.maximum(mel, LOG_CLAMP)), tf.float32)
    return log_mel[0] if squeeze else log_mel
