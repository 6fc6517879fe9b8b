"""The Griffin-Lim baseline: log-mel -> linear magnitude -> phase by alternating projections.

A vocoder-free reference point for the objective metrics: it inverts the same
log-mel that WaveGlow receives, with the mel front end's STFT (``filter_length``
1024, ``hop_length`` 256, ``win_length`` 1024, periodic Hann, centred frames).

1. :func:`mel_to_linear`: ``exp`` undoes the natural log; the pseudo-inverse of the
   Slaney mel basis (``numpy.linalg.pinv``, the minimum-norm least-squares
   solution) maps each frame's 80 mel energies to the 513 STFT bins, and
   negative values are clipped to 0 (a magnitude cannot be negative). Bins above
   ``mel_fmax`` (8 kHz) lie outside every mel filter and come out as 0.
2. :func:`griffin_lim`: Griffin & Lim (1984). Starting from a seeded random phase,
   each iteration keeps the target magnitude with the current phase, returns to
   a signal by the least-squares inverse STFT (windowed overlap-add divided by
   the summed squared window), and takes that signal's STFT phase. The
   inconsistency ``|| |STFT(x_i)| - S ||_F`` never increases from one iteration
   to the next (each step is a projection onto one of two sets, and the
   previous point lies in the other). :func:`griffin_lim` iterates on the padded
   signal (``n_fft // 2`` extra samples per side, the centred frames' support)
   so that its inverse STFT is exactly that least-squares projection, and
   returns the centre.

Everything is float64 NumPy; 60 iterations on a few seconds of speech take a
fraction of a second.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import get_window

from tfwaveglow import audio as audio_lib

__all__ = [
    "DEFAULT_ITERATIONS",
    "griffin_lim",
    "istft",
    "mel_to_linear",
    "spectral_convergence",
    "stft",
    "stft_window",
    "vocode",
]

# The baseline's iteration count (Tacotron's choice for its Griffin-Lim vocoder).
DEFAULT_ITERATIONS = 60


def stft_window(audio_params) -> np.ndarray:
    """Periodic Hann window of ``win_length`` samples zero-padded (centred) to ``filter_length``; float64."""
    n_fft, win = int(audio_params.filter_length), int(audio_params.win_length)
    if win > n_fft:
        raise ValueError(f"win_length ({win}) must be <= filter_length ({n_fft})")
    left = (n_fft - win) // 2
    return np.pad(get_window("hann", win, fftbins=True), (left, n_fft - win - left))


def _frames_stft(padded: np.ndarray, window: np.ndarray, hop: int) -> np.ndarray:
    """STFT of an already padded signal: frames at ``0, hop, 2*hop, ...`` -> complex ``[frames, n_fft // 2 + 1]``."""
    n_fft = window.shape[0]
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    return np.fft.rfft(frames * window, n=n_fft, axis=-1)


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sums ``[num_frames, n]`` frames placed every ``hop`` samples -> ``[(num_frames - 1) * hop + n]``."""
    num_frames, n = frames.shape
    chunks = -(-n // hop)
    padded = np.pad(frames, ((0, 0), (0, chunks * hop - n)))
    out = np.zeros((num_frames + chunks - 1) * hop)
    # Chunk k of every frame lands at frame_start + k * hop: one strided add per chunk, not per frame.
    for k in range(chunks):
        out[k * hop : (k + num_frames) * hop] += padded[:, k * hop : (k + 1) * hop].reshape(-1)
    return out[: (num_frames - 1) * hop + n]


def _window_square_sum(window: np.ndarray, num_frames: int, hop: int) -> np.ndarray:
    return _overlap_add(np.tile(np.square(window), (num_frames, 1)), hop)


def _least_squares_signal(spectrum: np.ndarray, window: np.ndarray, hop: int, norm: np.ndarray) -> np.ndarray:
    """The padded-domain signal whose STFT is nearest (Frobenius) to ``spectrum``."""
    frames = np.fft.irfft(spectrum, n=window.shape[0], axis=-1) * window
    signal = _overlap_add(frames, hop)
    covered = norm > 1e-10
    # Samples no window touches (the periodic Hann's zero at the very first sample) do not
    # enter any frame, so any value is a least-squares solution: 0.
    signal[covered] /= norm[covered]
    signal[~covered] = 0.0
    return signal


def stft(audio, audio_params) -> np.ndarray:
    """The mel front end's STFT: reflect-padded by ``filter_length // 2``, periodic Hann.

    Args:
      audio: ``[samples]`` float array, more than ``filter_length // 2`` samples.
      audio_params: ``params.audio``.

    Returns:
      complex128 ``[1 + samples // hop_length, filter_length // 2 + 1]``.
    """
    audio = np.asarray(audio, np.float64)
    if audio.ndim != 1:
        raise ValueError(f"expected audio [samples], got shape {audio.shape}")
    pad = int(audio_params.filter_length) // 2
    if audio.shape[0] <= pad:
        raise ValueError(f"audio has {audio.shape[0]} samples; reflect padding by {pad} needs more than {pad}")
    padded = np.pad(audio, pad, mode="reflect")
    return _frames_stft(padded, stft_window(audio_params), int(audio_params.hop_length))


def istft(spectrum, audio_params, length: int | None = None) -> np.ndarray:
    """Least-squares inverse of :func:`stft` (windowed overlap-add / summed squared window).

    ``istft(stft(x), p, len(x))`` returns ``x`` to rounding error.

    Args:
      spectrum: complex ``[frames, filter_length // 2 + 1]``.
      audio_params: ``params.audio``.
      length: samples to return (default ``(frames - 1) * hop_length``, the most a
        centred STFT of that many frames can come from).

    Returns:
      float64 ``[length]``.
    """
    spectrum = np.asarray(spectrum)
    window = stft_window(audio_params)
    hop, pad = int(audio_params.hop_length), int(audio_params.filter_length) // 2
    norm = _window_square_sum(window, spectrum.shape[0], hop)
    signal = _least_squares_signal(spectrum, window, hop, norm)
    length = (spectrum.shape[0] - 1) * hop if length is None else int(length)
    out = signal[pad : pad + length]
    return np.pad(out, (0, length - out.shape[0]))


def mel_to_linear(log_mel, audio_params) -> np.ndarray:
    """Log-mel to a non-negative STFT magnitude: ``max(pinv(mel_basis) @ exp(log_mel), 0)``.

    Args:
      log_mel: ``[frames, n_mel_channels]`` natural-log mel magnitudes (the front end's output).
      audio_params: ``params.audio``.

    Returns:
      float64 ``[frames, filter_length // 2 + 1]``.
    """
    log_mel = np.asarray(log_mel, np.float64)
    n_mel = int(audio_params.n_mel_channels)
    if log_mel.ndim != 2 or log_mel.shape[1] != n_mel:
        raise ValueError(f"expected a log-mel [frames, {n_mel}], got shape {log_mel.shape}")
    if not np.all(np.isfinite(log_mel)):
        raise ValueError("the log-mel holds non-finite (NaN or Inf) values")
    basis = audio_lib.mel_basis(audio_params).astype(np.float64)
    return np.maximum(np.exp(log_mel) @ np.linalg.pinv(basis).T, 0.0)


def spectral_convergence(audio, magnitude, audio_params) -> float:
    """``|| |STFT(audio)| - magnitude ||_F / || magnitude ||_F`` (0 when ``audio`` has exactly that magnitude).

    Args:
      audio: ``[samples]`` with ``1 + samples // hop_length == magnitude frames``.
      magnitude: ``[frames, filter_length // 2 + 1]``.
      audio_params: ``params.audio``.
    """
    magnitude = np.asarray(magnitude, np.float64)
    estimate = np.abs(stft(audio, audio_params))
    if estimate.shape != magnitude.shape:
        raise ValueError(f"the audio's STFT has shape {estimate.shape}, the magnitude {magnitude.shape}")
    return float(np.linalg.norm(estimate - magnitude) / np.linalg.norm(magnitude))


def griffin_lim(
    magnitude,
    audio_params,
    n_iter: int = DEFAULT_ITERATIONS,
    *,
    length: int | None = None,
    seed: int = 0,
    initial_phase=None,
    return_history: bool = False,
):
    """Griffin-Lim phase reconstruction for a centred STFT magnitude.

    Args:
      magnitude: ``[frames, filter_length // 2 + 1]`` non-negative.
      audio_params: ``params.audio`` (filter_length, hop_length, win_length).
      n_iter: iterations (each a magnitude projection and a least-squares inverse
        STFT); 0 returns the inverse STFT of the initial estimate.
      length: samples to return (default ``(frames - 1) * hop_length``).
      seed: seed of the uniform random initial phase (ignored with ``initial_phase``).
      initial_phase: optional ``[frames, bins]`` phase in radians to start from.
      return_history: also return the spectral convergence of the padded-domain
        estimate before the first and after every iteration (``n_iter + 1`` values,
        non-increasing).

    Returns:
      float64 ``[length]``, or ``(audio, history)`` with ``return_history``.
    """
    magnitude = np.asarray(magnitude, np.float64)
    n_fft, hop = int(audio_params.filter_length), int(audio_params.hop_length)
    bins = n_fft // 2 + 1
    if magnitude.ndim != 2 or magnitude.shape[1] != bins:
        raise ValueError(f"expected a magnitude [frames, {bins}], got shape {magnitude.shape}")
    if not np.all(np.isfinite(magnitude)) or np.any(magnitude < 0):
        raise ValueError("the magnitude must be finite and non-negative")
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if initial_phase is None:
        initial_phase = np.random.default_rng(seed).uniform(-np.pi, np.pi, magnitude.shape)
    phase = np.exp(1j * np.asarray(initial_phase, np.float64))
    if phase.shape != magnitude.shape:
        raise ValueError(f"initial_phase has shape {phase.shape}, the magnitude {magnitude.shape}")

    window = stft_window(audio_params)
    norm = _window_square_sum(window, magnitude.shape[0], hop)
    target_norm = max(float(np.linalg.norm(magnitude)), np.finfo(np.float64).tiny)
    signal = _least_squares_signal(magnitude * phase, window, hop, norm)
    history = []
    for _ in range(n_iter):
        spectrum = _frames_stft(signal, window, hop)
        if return_history:
            history.append(float(np.linalg.norm(np.abs(spectrum) - magnitude)) / target_norm)
        # Keep the target magnitude, take the current estimate's phase (unit phase where it is 0).
        size = np.abs(spectrum)
        phase = np.where(size > 0, spectrum / np.where(size > 0, size, 1.0), 1.0)
        signal = _least_squares_signal(magnitude * phase, window, hop, norm)
    if return_history:
        final = _frames_stft(signal, window, hop)
        history.append(float(np.linalg.norm(np.abs(final) - magnitude)) / target_norm)

    pad = n_fft // 2
    length = (magnitude.shape[0] - 1) * hop if length is None else int(length)
    out = signal[pad : pad + length]
    out = np.pad(out, (0, length - out.shape[0]))
    return (out, history) if return_history else out


def vocode(log_mel, audio_params, n_iter: int = DEFAULT_ITERATIONS, *, length: int | None = None, seed: int = 0):
    """The baseline vocoder: :func:`mel_to_linear` then :func:`griffin_lim`.

    Args:
      log_mel: ``[frames, n_mel_channels]``.
      audio_params: ``params.audio``.
      n_iter: Griffin-Lim iterations (default 60).
      length: samples to return (default ``(frames - 1) * hop_length``).
      seed: seed of the random initial phase.

    Returns:
      float64 ``[length]``.
    """
    return griffin_lim(mel_to_linear(log_mel, audio_params), audio_params, n_iter, length=length, seed=seed)
