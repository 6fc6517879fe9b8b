"""Objective speech-quality metrics for copy synthesis (reference and resynthesis time-aligned).

Every function takes the reference first and the degraded (synthesised) signal
second, both mono float ``[samples]`` at ``int16 / 32768`` scale. Copy synthesis
produces audio aligned sample for sample with its reference, so no time warping
(DTW) is applied; the two signals are cut to the shorter length.

Definitions (``F``: frames, ``M = 80``: mel bins):

* **Log-mel spectral distance** (:func:`log_mel_distance`, lower is better, 0 for
  identical signals): the NVIDIA/Tacotron 2 log-mel (:func:`tfwaveglow.audio.mel_spectrogram`:
  centred STFT 1024/256/1024, periodic Hann, magnitude, Slaney mel basis
  0-8 kHz, ``ln(max(mel, 1e-5))``) of both signals, then the root mean square
  over all frames and bins of the difference,
  ``sqrt(1 / (F M) * sum_{t, m} (L_t,m - L'_t,m)^2)``, in natural-log units
  (nepers; multiply by ``20 / ln 10 = 8.69`` for dB). All frames count,
  silence included; the ``1e-5`` floor bounds the contribution of silent bins.
* **Mel-cepstral distortion** (:func:`mel_cepstral_distortion`, dB, lower is
  better): mel-cepstra ``c_t,1..24`` are the orthonormal DCT-II of each frame's
  log-mel above (coefficient ``k`` of ``sqrt(2 / M) sum_m L_t,m cos(pi k (2m + 1) / (2M))``),
  with ``c_0`` (overall level) excluded; per frame
  ``MCD_t = 10 / ln 10 * sqrt(2 * sum_{d=1}^{24} (c_t,d - c'_t,d)^2)``, averaged
  over all frames. These cepstra come from the 80-band log-mel, not from an
  SPTK mel-generalised cepstral analysis, so absolute values are comparable
  between systems measured here, not with figures from other toolkits.
* **PESQ** (:func:`pesq_wb`, MOS-LQO, about 1.0 to 4.64, higher is better):
  ITU-T P.862.2 wideband via the ``pesq`` package, after resampling both
  signals to 16 kHz with soxr (band-limited, very high quality).
* **STOI** (:func:`stoi`, 0 to 1, higher is better): the ``pystoi`` package, given
  the signals at their own rate (it resamples to 10 kHz internally and drops
  frames more than 40 dB below the reference's loudest).

A metric that cannot be computed for a pair of signals (PESQ finds no
utterance, a clip too short, a silent signal) raises :class:`MetricError` with
the reason; callers record it and carry on.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.fft import dct

from tfwaveglow import audio as audio_lib

__all__ = [
    "MCD_ORDER",
    "PESQ_RATE",
    "MetricError",
    "align",
    "log_mel_distance",
    "log_mel_rms_difference",
    "mcd_from_cepstra",
    "mel_cepstral_distortion",
    "mel_cepstrum",
    "pesq_wb",
    "stoi",
]

# Mel-cepstral coefficients c_1 .. c_MCD_ORDER enter the MCD (c_0 excluded).
MCD_ORDER = 24
# Wideband PESQ (P.862.2) is defined at 16 kHz.
PESQ_RATE = 16000
# 10 / ln(10) * sqrt(2): the MCD's conversion of a cepstral distance to dB.
_MCD_SCALE = 10.0 / np.log(10.0) * np.sqrt(2.0)


class MetricError(ValueError):
    """A metric that cannot be computed for these signals; the message names the metric and the reason."""


def align(reference, degraded) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64, cut to the shorter length (copy synthesis is time-aligned).

    Args:
      reference, degraded: ``[samples]`` float arrays.

    Returns:
      ``(reference, degraded)``, float64 ``[min(len(reference), len(degraded))]`` each.

    Raises:
      MetricError: not one-dimensional, empty, or non-finite.
    """
    pair = []
    for name, signal in (("reference", reference), ("degraded", degraded)):
        signal = np.asarray(signal, np.float64)
        if signal.ndim != 1:
            raise MetricError(f"the {name} signal must be [samples], got shape {signal.shape}")
        if signal.shape[0] == 0:
            raise MetricError(f"the {name} signal is empty")
        if not np.all(np.isfinite(signal)):
            raise MetricError(f"the {name} signal holds non-finite (NaN or Inf) samples")
        pair.append(signal)
    length = min(pair[0].shape[0], pair[1].shape[0])
    return pair[0][:length], pair[1][:length]


def _log_mels(reference, degraded, audio_params) -> tuple[np.ndarray, np.ndarray]:
    reference, degraded = align(reference, degraded)
    try:
        return (
            audio_lib.mel_spectrogram(reference, audio_params).astype(np.float64),
            audio_lib.mel_spectrogram(degraded, audio_params).astype(np.float64),
        )
    except ValueError as e:
        raise MetricError(f"log-mel: {e}") from None


def _same_shape_2d(what: str, reference, degraded) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, np.float64)
    deg = np.asarray(degraded, np.float64)
    if ref.ndim != 2 or ref.shape != deg.shape:
        raise MetricError(f"{what} must both be 2-D of one shape, got {ref.shape} and {deg.shape}")
    return ref, deg


def log_mel_rms_difference(reference_log_mel, degraded_log_mel) -> float:
    """RMS over frames and bins of the difference of two log-mels of one shape ``[frames, n_mel]``."""
    ref, deg = _same_shape_2d("log-mels [frames, n_mel]", reference_log_mel, degraded_log_mel)
    return float(np.sqrt(np.mean(np.square(ref - deg))))


def log_mel_distance(reference, degraded, audio_params) -> float:
    """Log-mel spectral distance (natural-log units; see the module docstring).

    Args:
      reference, degraded: ``[samples]`` audio at ``audio_params.sampling_rate``.
      audio_params: ``params.audio`` (the mel front end).

    Returns:
      ``sqrt(mean_{t, m} (L_t,m - L'_t,m)^2)`` over the log-mels of the signals cut to a common length.
    """
    return log_mel_rms_difference(*_log_mels(reference, degraded, audio_params))


def mel_cepstrum(log_mel, order: int = MCD_ORDER) -> np.ndarray:
    """Mel-cepstra ``c_1 .. c_order`` of a log-mel: orthonormal DCT-II over the mel axis, ``c_0`` dropped.

    Args:
      log_mel: ``[frames, n_mel]`` natural-log mel magnitudes.
      order: coefficients kept after ``c_0``; at most ``n_mel - 1``.

    Returns:
      float64 ``[frames, order]``.
    """
    log_mel = np.asarray(log_mel, np.float64)
    if log_mel.ndim != 2 or not 1 <= order < log_mel.shape[1]:
        raise MetricError(f"mel-cepstrum: need a log-mel [frames, n_mel > order={order}], got {log_mel.shape}")
    return dct(log_mel, type=2, norm="ortho", axis=1)[:, 1 : order + 1]


def mcd_from_cepstra(reference_cepstra, degraded_cepstra) -> float:
    """``mean_t 10 / ln 10 * sqrt(2 * sum_d (c_t,d - c'_t,d)^2)`` in dB for cepstra ``[frames, order]`` (no c_0)."""
    ref, deg = _same_shape_2d("cepstra [frames, order]", reference_cepstra, degraded_cepstra)
    per_frame = _MCD_SCALE * np.sqrt(np.sum(np.square(ref - deg), axis=1))
    return float(np.mean(per_frame))


def mel_cepstral_distortion(reference, degraded, audio_params, order: int = MCD_ORDER) -> float:
    """Mel-cepstral distortion in dB over all frames, no DTW (see the module docstring).

    Args:
      reference, degraded: ``[samples]`` audio at ``audio_params.sampling_rate``.
      audio_params: ``params.audio``.
      order: mel-cepstral coefficients after ``c_0`` (default 24).
    """
    ref, deg = _log_mels(reference, degraded, audio_params)
    return mcd_from_cepstra(mel_cepstrum(ref, order), mel_cepstrum(deg, order))


def _check_not_silent(metric: str, reference: np.ndarray, degraded: np.ndarray) -> None:
    for name, signal in (("reference", reference), ("degraded", degraded)):
        if not np.any(signal):
            raise MetricError(f"{metric}: the {name} signal is silent (all zeros)")


def pesq_wb(reference, degraded, sampling_rate: int) -> float:
    """Wideband PESQ (ITU-T P.862.2, MOS-LQO) after band-limited resampling to 16 kHz.

    Args:
      reference, degraded: ``[samples]`` audio at ``sampling_rate``.
      sampling_rate: their rate in Hz.

    Returns:
      MOS-LQO, from about 1.0 up to 4.64 for identical signals.

    Raises:
      MetricError: a silent signal, less than 1/4 s of audio, no utterance
        detected in the reference, or another failure of the PESQ model.
    """
    from pesq import PesqError
    from pesq import pesq as pesq_score

    reference, degraded = align(reference, degraded)
    reference = audio_lib.resample(reference, int(sampling_rate), PESQ_RATE)
    degraded = audio_lib.resample(degraded, int(sampling_rate), PESQ_RATE)
    reference, degraded = align(reference, degraded)
    _check_not_silent("PESQ", reference, degraded)
    try:
        return float(pesq_score(PESQ_RATE, reference, degraded, "wb"))
    except PesqError as e:
        # The C model's messages are bytes ("No utterances detected", "Buffer needs to be at least ...").
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise MetricError(f"PESQ: {reason} ({reference.shape[0] / PESQ_RATE:.2f} s at 16 kHz)") from None
    except ValueError as e:
        raise MetricError(f"PESQ: the model failed on these signals: {e}") from None


def stoi(reference, degraded, sampling_rate: int) -> float:
    """Short-time objective intelligibility (Taal et al. 2011) via ``pystoi``.

    Args:
      reference, degraded: ``[samples]`` audio at ``sampling_rate``.
      sampling_rate: their rate in Hz (pystoi resamples to 10 kHz).

    Returns:
      STOI in ``[0, 1]`` (about 1 for identical signals).

    Raises:
      MetricError: a silent signal, or fewer than 30 non-silent 25.6 ms frames
        (pystoi would warn and return 1e-5).
    """
    from pystoi import stoi as stoi_score

    reference, degraded = align(reference, degraded)
    _check_not_silent("STOI", reference, degraded)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi_score(reference, degraded, int(sampling_rate), extended=False))
    for warning in caught:
        # pystoi's answer to too little speech is a warning and a placeholder score of 1e-5.
        if "Not enough STFT frames" in str(warning.message):
            raise MetricError(f"STOI: {warning.message} ({reference.shape[0] / sampling_rate:.2f} s of audio)")
        warnings.warn(warning.message, warning.category, stacklevel=2)
    if not np.isfinite(value):
        raise MetricError(f"STOI: pystoi returned {value}")
    return value
