"""Spectral losses between a generated waveform and the real one.

Both take ``[B, T]`` float32 waveforms (``[-1, 1]`` scale) and return float32
scalars; both are differentiable everywhere (a small floor is added to the power
under each magnitude's square root, so near-silent frames still have a gradient
and exactly silent ones a finite one), and so can train the flow through its
reverse pass.

- :func:`multi_resolution_stft_loss`: Parallel WaveGAN's loss, spectral
  convergence plus log-magnitude L1, each averaged over the resolutions;
- :func:`log_mel_l1`: the mean absolute difference of the project's log-mels
  (NVIDIA/Tacotron 2 front end, :func:`tfwaveglow.audio.mel_spectrogram`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfwaveglow.audio import LOG_CLAMP, mel_basis

# Power added under the square root of every magnitude: Parallel WaveGAN's 1e-7 (which
# clamps the power at it instead).
STFT_POWER_FLOOR = 1e-7
# The mel path's power floor is far below its own log clamp (1e-5 on the mel), so the
# log-mel equals the front end's to within 1e-3 wherever the mel is above that clamp.
MEL_POWER_FLOOR = 1e-12


def hann_window(fft_size: int, win_length: int) -> np.ndarray:
    """Periodic Hann of ``win_length`` samples, zero-padded on both sides to ``fft_size`` (centred).

    Returns:
      float32 ``[fft_size]``.
    """
    if not 0 < win_length <= fft_size:
        raise ValueError(f"need 0 < win_length <= fft_size, got {win_length}, {fft_size}")
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    window = np.zeros(fft_size)
    left = (fft_size - win_length) // 2
    window[left : left + win_length] = hann
    return window.astype(np.float32)


def stft_power(audio, fft_size: int, hop_size: int, win_length: int):
    """Power spectrogram ``|STFT|^2`` with centred frames (reflect padding by ``fft_size // 2``).

    Frames start every ``hop_size`` samples of the padded signal, as
    ``torch.stft(center=True, pad_mode="reflect")`` places them.

    Args:
      audio: ``[B, T]`` float32, ``T > fft_size // 2``.
      fft_size, hop_size, win_length: the resolution.

    Returns:
      float32 ``[B, 1 + T // hop_size, fft_size // 2 + 1]``.
    """
    audio = tf.convert_to_tensor(audio, tf.float32)
    pad = fft_size // 2
    padded = tf.pad(audio, [[0, 0], [pad, pad]], mode="REFLECT")
    frames = tf.signal.frame(padded, fft_size, hop_size, pad_end=False)
    spectrum = tf.signal.rfft(frames * hann_window(fft_size, win_length), fft_length=[fft_size])
    return tf.square(tf.math.real(spectrum)) + tf.square(tf.math.imag(spectrum))


def stft_magnitude(audio, fft_size: int, hop_size: int, win_length: int, floor: float = STFT_POWER_FLOOR):
    """``sqrt(|STFT|^2 + floor)``: ``[B, 1 + T // hop_size, fft_size // 2 + 1]`` (see :func:`stft_power`)."""
    return tf.sqrt(stft_power(audio, fft_size, hop_size, win_length) + floor)


def spectral_convergence(real_magnitude, fake_magnitude):
    """``mean_b ||M_real[b] - M_fake[b]||_F / ||M_real[b]||_F``: per example, then averaged (scalar).

    Parallel WaveGAN takes one ratio over the whole batch; a mean over examples
    does not depend on how a batch is split between replicas.
    """
    axes = list(range(1, real_magnitude.shape.rank))
    difference = tf.sqrt(tf.reduce_sum(tf.square(real_magnitude - fake_magnitude), axis=axes))
    reference = tf.sqrt(tf.reduce_sum(tf.square(real_magnitude), axis=axes))
    return tf.reduce_mean(difference / tf.maximum(reference, 1e-12))


def log_magnitude_l1(real_magnitude, fake_magnitude):
    """``mean |log M_real - log M_fake|`` (scalar)."""
    return tf.reduce_mean(tf.abs(tf.math.log(real_magnitude) - tf.math.log(fake_magnitude)))


def multi_resolution_stft_loss(real, fake, fft_sizes, hop_sizes, win_lengths) -> dict:
    """Parallel WaveGAN's multi-resolution STFT loss.

    ``stft = mean_r SC_r + mean_r LogMag_r`` over the resolutions ``r``, with
    ``SC = mean_b ||M_real[b] - M_fake[b]||_F / ||M_real[b]||_F`` (per example: a
    mean over examples, like every other term, so replicas' shares add up to the
    batch's value) and
    ``LogMag = mean |log M_real - log M_fake|`` of the magnitudes of
    :func:`stft_magnitude`.

    Args:
      real, fake: ``[B, T]`` float32 waveforms.
      fft_sizes, hop_sizes, win_lengths: one entry per resolution.

    Returns:
      dict of float32 scalars: ``loss/stft`` (the sum of the two means),
      ``loss/stft_sc`` and ``loss/stft_mag`` (the means).
    """
    real = tf.cast(real, tf.float32)
    fake = tf.cast(fake, tf.float32)
    sc, mag = [], []
    for fft_size, hop_size, win_length in zip(fft_sizes, hop_sizes, win_lengths, strict=True):
        m_real = stft_magnitude(real, fft_size, hop_size, win_length)
        m_fake = stft_magnitude(fake, fft_size, hop_size, win_length)
        sc.append(spectral_convergence(m_real, m_fake))
        mag.append(log_magnitude_l1(m_real, m_fake))
    sc_mean, mag_mean = tf.add_n(sc) / len(sc), tf.add_n(mag) / len(mag)
    return {"loss/stft": sc_mean + mag_mean, "loss/stft_sc": sc_mean, "loss/stft_mag": mag_mean}


def log_mel(audio, audio_params):
    """Differentiable float32 log-mel in the project's front end.

    The same frames, window, mel basis and clamp as
    :func:`tfwaveglow.audio.mel_spectrogram` (``filter_length`` / ``hop_length`` /
    ``win_length``, ``log(max(mel, 1e-5))``), with
    :data:`MEL_POWER_FLOOR` added to the power under the magnitude's square root.

    Args:
      audio: ``[B, T]`` float32, ``T > filter_length // 2``.
      audio_params: ``params.audio``.

    Returns:
      float32 ``[B, 1 + T // hop_length, n_mel_channels]``.
    """
    a = audio_params
    magnitude = tf.sqrt(stft_power(audio, a.filter_length, a.hop_length, a.win_length) + MEL_POWER_FLOOR)
    mel = tf.linalg.matmul(magnitude, tf.constant(mel_basis(a).T))
    return tf.math.log(tf.maximum(mel, LOG_CLAMP))


def log_mel_l1(real, fake, audio_params):
    """``mean |log_mel(real) - log_mel(fake)|`` over batch, frames and mel channels (scalar float32).

    Args:
      real, fake: ``[B, T]`` float32 waveforms.
      audio_params: ``params.audio``.
    """
    return tf.reduce_mean(tf.abs(log_mel(real, audio_params) - log_mel(fake, audio_params)))
