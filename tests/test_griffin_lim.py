"""The Griffin-Lim baseline: STFT pair against librosa, closed-form properties, real speech."""

import librosa
import numpy as np
import pytest
from spectral_reference import librosa_stft

import tfwaveglow
from tfwaveglow import audio, griffin_lim, metrics

AP = tfwaveglow.load_params().audio


@pytest.fixture(scope="module")
def speech(speech_clips):
    return audio.load_audio(speech_clips[3], AP.sampling_rate).astype(np.float64)


def stft_frames(y):
    """``[frames, 513]`` complex STFT of the front end's settings."""
    return librosa_stft(y).T


def test_stft_and_istft_match_librosa(speech):
    reference = stft_frames(speech)
    spectrum = griffin_lim.stft(speech, AP)
    assert spectrum.shape == (1 + speech.shape[0] // 256, 513)
    np.testing.assert_allclose(spectrum, reference, atol=1e-10)
    inverse = librosa.istft(reference.T, hop_length=256, window="hann", center=True, length=speech.shape[0])
    np.testing.assert_allclose(griffin_lim.istft(reference, AP, speech.shape[0]), inverse, atol=1e-10)
    np.testing.assert_allclose(griffin_lim.istft(spectrum, AP, speech.shape[0]), speech, atol=1e-10)


def test_true_phase_is_a_fixed_point(speech):
    spectrum = stft_frames(speech)
    out = griffin_lim.griffin_lim(np.abs(spectrum), AP, 5, initial_phase=np.angle(spectrum), length=len(speech))
    np.testing.assert_allclose(out, speech, atol=1e-8)
    assert griffin_lim.spectral_convergence(out, np.abs(spectrum), AP) < 1e-8


def test_mel_to_linear_recovers_a_magnitude_in_the_basis_row_space():
    # s = B^T u with u > 0 is non-negative and in B's row space, so pinv(B) B s = s: no clipping, exact.
    basis = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0, dtype=np.float64)
    u = np.random.default_rng(0).uniform(0.1, 2.0, size=(7, 80))
    magnitude = u @ basis
    np.testing.assert_allclose(griffin_lim.mel_to_linear(np.log(magnitude @ basis.T), AP), magnitude, atol=1e-6)


def test_mel_to_linear_of_real_speech_is_nonnegative_and_keeps_the_mel(speech):
    log_mel = audio.mel_spectrogram(speech, AP)
    linear = griffin_lim.mel_to_linear(log_mel, AP)
    assert linear.shape == (log_mel.shape[0], 513) and linear.min() >= 0.0
    # Above 8 kHz no mel filter reaches: nothing to recover there.
    assert np.all(linear[:, int(np.ceil(8000 / (22050 / 1024))) + 1 :] == 0.0)
    remel = np.log(np.maximum(linear @ audio.mel_basis(AP).T.astype(np.float64), 1e-5))
    assert np.sqrt(np.mean((remel - log_mel) ** 2)) < 0.2


def test_iterations_never_increase_the_inconsistency(speech):
    magnitude = np.abs(stft_frames(speech))
    _, history = griffin_lim.griffin_lim(magnitude, AP, 30, length=len(speech), return_history=True)
    assert len(history) == 31
    assert all(b <= a * (1 + 1e-12) for a, b in zip(history, history[1:])), history
    assert history[-1] < 0.5 * history[0]
    # The returned (centre) signal, measured with librosa's STFT, improves with more iterations too.
    errors = []
    for n_iter in (0, 2, 8, 30):
        out = griffin_lim.griffin_lim(magnitude, AP, n_iter, length=len(speech), seed=3)
        estimate = np.abs(stft_frames(out))
        errors.append(np.linalg.norm(estimate - magnitude) / np.linalg.norm(magnitude))
    assert all(b <= a for a, b in zip(errors, errors[1:])), errors


def test_baseline_on_a_real_mel_is_far_closer_than_noise(speech):
    log_mel = audio.mel_spectrogram(speech, AP)
    out = griffin_lim.vocode(log_mel, AP, length=len(speech), seed=0)
    assert out.shape == speech.shape
    np.testing.assert_array_equal(out, griffin_lim.vocode(log_mel, AP, length=len(speech), seed=0))
    assert not np.array_equal(out, griffin_lim.vocode(log_mel, AP, 2, length=len(speech), seed=1))
    noise = np.random.default_rng(0).standard_normal(len(speech)) * speech.std()
    gl_distance = metrics.log_mel_distance(speech, out, AP)
    noise_distance = metrics.log_mel_distance(speech, noise, AP)
    assert gl_distance < 0.35 and noise_distance > 2.0, (gl_distance, noise_distance)
    assert metrics.stoi(speech, out, AP.sampling_rate) > 0.85


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="non-negative"):
        griffin_lim.griffin_lim(-np.ones((4, 513)), AP)
    with pytest.raises(ValueError, match=r"magnitude \[frames, 513\]"):
        griffin_lim.griffin_lim(np.ones((4, 512)), AP)
    with pytest.raises(ValueError, match=r"log-mel \[frames, 80\]"):
        griffin_lim.mel_to_linear(np.zeros((4, 81)), AP)
    with pytest.raises(ValueError, match="non-finite"):
        griffin_lim.mel_to_linear(np.full((4, 80), np.nan), AP)
