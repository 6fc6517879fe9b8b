"""Objective metrics against librosa, hand-computed formulas and closed forms, on real speech."""

import math

import librosa
import numpy as np
import pytest
from pesq import pesq
from scipy.signal import resample_poly

import tfwaveglow
from tfwaveglow import audio, metrics

AP = tfwaveglow.load_params().audio
RATE = 22050


@pytest.fixture(scope="module")
def speech(speech_clips):
    return audio.load_audio(speech_clips[0], RATE).astype(np.float64)


def with_noise(signal, snr_db, seed=0):
    """``signal`` plus white Gaussian noise at exactly ``snr_db`` (power ratio over the whole clip)."""
    noise = np.random.default_rng(seed).standard_normal(signal.shape[0])
    noise *= np.sqrt(np.mean(signal**2) / np.mean(noise**2) / 10.0 ** (snr_db / 10.0))
    return signal + noise


def librosa_log_mel(y):
    magnitude = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, window="hann", center=True, pad_mode="reflect"))
    basis = librosa.filters.mel(sr=RATE, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0, dtype=np.float64)
    return np.log(np.maximum(basis @ magnitude, 1e-5)).T


def test_log_mel_distance_matches_librosa_reference(speech):
    degraded = with_noise(speech, 10.0)
    expected = np.sqrt(np.mean((librosa_log_mel(speech) - librosa_log_mel(degraded)) ** 2))
    assert metrics.log_mel_distance(speech, degraded, AP) == pytest.approx(expected, rel=1e-4)
    assert metrics.log_mel_distance(speech, speech, AP) == 0.0


def test_log_mel_distance_aligns_lengths(speech):
    # A resynthesis one hop longer than its reference (WaveGlow returns frames * hop samples).
    longer = np.concatenate([speech, np.full(256, 0.3)])
    assert metrics.log_mel_distance(speech, longer, AP) == 0.0
    assert metrics.log_mel_distance(longer, speech, AP) == 0.0


def test_log_mel_distance_of_a_gain_is_its_log(speech):
    # Halving the signal shifts every unclamped log-mel value by ln 2; a few quiet bins sit at the floor.
    assert metrics.log_mel_distance(speech, 0.5 * speech, AP) == pytest.approx(math.log(2.0), rel=0.01)


def test_mcd_of_hand_made_cepstra_equals_the_formula():
    reference = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.5, -0.5, 0.0]])
    degraded = np.array([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0], [0.5, -0.5, 0.0]])
    # Per frame: squared distances 1, 3, 0.
    per_frame = [10.0 / math.log(10.0) * math.sqrt(2.0 * d) for d in (1.0, 3.0, 0.0)]
    assert metrics.mcd_from_cepstra(reference, degraded) == pytest.approx(sum(per_frame) / 3.0, rel=1e-12)
    assert metrics.mcd_from_cepstra(reference, reference) == 0.0


def test_mel_cepstrum_is_the_orthonormal_dct_without_c0():
    log_mel = np.random.default_rng(1).normal(size=(5, 80))
    m = np.arange(80)
    expected = np.stack(
        [np.sqrt(2.0 / 80) * (log_mel * np.cos(np.pi * k * (2 * m + 1) / 160)).sum(axis=1) for k in range(1, 25)],
        axis=1,
    )
    np.testing.assert_allclose(metrics.mel_cepstrum(log_mel), expected, rtol=1e-10, atol=1e-12)
    # A level change moves only c0, which the MCD leaves out.
    shifted = metrics.mel_cepstrum(log_mel + 3.7)
    assert metrics.mcd_from_cepstra(metrics.mel_cepstrum(log_mel), shifted) == pytest.approx(0.0, abs=1e-9)


def test_mcd_of_real_speech_against_the_same_formula_on_librosa_mels(speech):
    degraded = with_noise(speech, 10.0)
    ref_c = metrics.mel_cepstrum(librosa_log_mel(speech))
    deg_c = metrics.mel_cepstrum(librosa_log_mel(degraded))
    expected = np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum((ref_c - deg_c) ** 2, axis=1)))
    assert metrics.mel_cepstral_distortion(speech, degraded, AP) == pytest.approx(expected, rel=1e-4)
    assert metrics.mel_cepstral_distortion(speech, speech, AP) == 0.0


def test_identical_signals_get_the_top_pesq_and_stoi(speech):
    assert metrics.pesq_wb(speech, speech, RATE) == pytest.approx(4.64, abs=0.01)
    assert metrics.stoi(speech, speech, RATE) == pytest.approx(1.0, abs=1e-6)


def test_more_noise_means_worse_scores(speech):
    snrs = (30.0, 15.0, 5.0, -5.0)
    noisy = [with_noise(speech, snr) for snr in snrs]
    pesq_scores = [metrics.pesq_wb(speech, y, RATE) for y in noisy]
    stoi_scores = [metrics.stoi(speech, y, RATE) for y in noisy]
    distances = [metrics.log_mel_distance(speech, y, AP) for y in noisy]
    mcds = [metrics.mel_cepstral_distortion(speech, y, AP) for y in noisy]
    assert all(a > b for a, b in zip(pesq_scores, pesq_scores[1:])), pesq_scores
    assert all(a > b for a, b in zip(stoi_scores, stoi_scores[1:])), stoi_scores
    assert all(a < b for a, b in zip(distances, distances[1:])), distances
    assert all(a < b for a, b in zip(mcds, mcds[1:])), mcds
    assert pesq_scores[-1] < 1.5 and stoi_scores[-1] < 0.8


def test_pesq_resampling_agrees_with_an_independent_resampler(speech):
    degraded = with_noise(speech, 15.0)
    # scipy's polyphase resampler (22050 * 320 / 441 = 16000) instead of soxr.
    expected = pesq(16000, resample_poly(speech, 320, 441), resample_poly(degraded, 320, 441), "wb")
    assert metrics.pesq_wb(speech, degraded, RATE) == pytest.approx(expected, abs=0.05)


def test_pesq_and_stoi_failures_are_metric_errors(speech):
    with pytest.raises(metrics.MetricError, match=r"PESQ: Buffer needs to be at least 1/4 of a second"):
        metrics.pesq_wb(speech[:4410], speech[:4410], RATE)
    with pytest.raises(metrics.MetricError, match=r"PESQ: No utterances detected"):
        metrics.pesq_wb(speech[:6000], speech[:6000], RATE)
    with pytest.raises(metrics.MetricError, match=r"PESQ: the degraded signal is silent"):
        metrics.pesq_wb(speech, np.zeros_like(speech), RATE)
    with pytest.raises(metrics.MetricError, match=r"STOI: Not enough STFT frames"):
        metrics.stoi(speech[:6000], speech[:6000], RATE)
    with pytest.raises(metrics.MetricError, match=r"STOI: the reference signal is silent"):
        metrics.stoi(np.zeros_like(speech), speech, RATE)


def test_bad_signals_are_metric_errors(speech):
    with_nan = speech.copy()
    with_nan[100] = np.nan
    with pytest.raises(metrics.MetricError, match="degraded signal holds non-finite"):
        metrics.log_mel_distance(speech, with_nan, AP)
    with pytest.raises(metrics.MetricError, match="reference signal is empty"):
        metrics.stoi(np.zeros(0), speech, RATE)
    with pytest.raises(metrics.MetricError, match="log-mel: audio has 300 samples"):
        metrics.mel_cepstral_distortion(speech[:300], speech[:300], AP)
    with pytest.raises(metrics.MetricError, match="must both be 2-D of one shape"):
        metrics.mcd_from_cepstra(np.zeros((3, 24)), np.zeros((4, 24)))
