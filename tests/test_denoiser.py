"""The bias denoiser against NVIDIA's recipe computed with librosa's STFT."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import tensorflow as tf
from spectral_reference import librosa_stft
from synth_helpers import N_MEL, librosa_denoise, tiny_model

from tfwaveglow.denoiser import BIAS_MEL_FRAMES, Denoiser, denoise_in_blocks, stft_window


def speech_like(samples: int, seed: int = 0) -> np.ndarray:
    """Harmonics with a wobbling pitch plus a little noise, at speech-like levels."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 22050.0
    f0 = 120.0 + 30.0 * np.sin(2 * np.pi * 3.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 22050.0
    voiced = sum(0.1 / k * np.sin(k * phase) for k in range(1, 12))
    return (voiced + 0.01 * rng.standard_normal(samples)).astype(np.float32)


def test_window_is_periodic_hann_centred_in_the_fft_frame():
    np.testing.assert_allclose(stft_window(1024, 1024), librosa.filters.get_window("hann", 1024), atol=1e-7)
    padded = stft_window(1024, 800)
    np.testing.assert_allclose(padded, librosa.util.pad_center(librosa.filters.get_window("hann", 800), size=1024))


@pytest.mark.parametrize("n_fft, hop, win", [(1024, 256, 1024), (1024, 256, 800), (256, 64, 256)])
@pytest.mark.parametrize("strength", [0.0, 0.1, 1.0])
def test_denoiser_matches_librosa_reference(n_fft, hop, win, strength):
    samples = 40 * 256 + 100  # not a multiple of the hop
    audio = speech_like(samples)
    bias_audio = 0.01 * np.random.default_rng(1).standard_normal(88 * 256).astype(np.float32)
    bias = np.abs(librosa_stft(bias_audio, n_fft, hop, win))[:, 0]
    denoiser = Denoiser(bias, n_fft, hop, win)
    out = denoiser(audio[None], strength).numpy()[0]
    reference = librosa_denoise(audio, bias_audio, strength, n_fft, hop, win)
    assert out.shape == audio.shape
    np.testing.assert_allclose(out, reference, atol=2e-6, rtol=0)
    if strength == 0.0:
        np.testing.assert_allclose(out, audio, atol=2e-6, rtol=0)  # the STFT round trip is exact, ends included
    else:
        assert np.max(np.abs(out - audio)) > 1e-3


def test_bias_is_the_first_frame_of_the_zero_mel_output():
    model = tiny_model(seed=4)
    denoiser = Denoiser.from_model(model, n_fft=256, hop_length=64, win_length=256)
    zeros = np.zeros([1, BIAS_MEL_FRAMES, N_MEL], np.float32)
    bias_audio = model.infer(zeros, sigma=0.0, z=np.zeros([1, BIAS_MEL_FRAMES * 64 // 8, 8], np.float32))
    expected = np.abs(librosa_stft(bias_audio.numpy()[0], n_fft=256, hop=64))[:, 0]
    assert np.max(expected) > 1e-3  # the model does produce a bias
    np.testing.assert_allclose(denoiser.bias_spectrum.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_strength_per_batch_item():
    audio = np.stack([speech_like(6000, 0), speech_like(6000, 1)])
    denoiser = Denoiser(np.full(513, 0.5, np.float32))
    both = denoiser(audio, [0.0, 0.8]).numpy()
    np.testing.assert_allclose(both[0], denoiser(audio[:1], 0.0).numpy()[0], atol=1e-6)
    np.testing.assert_allclose(both[1], denoiser(audio[1:], 0.8).numpy()[0], atol=1e-6)


def test_block_wise_denoising_equals_one_call():
    audio = speech_like(50 * 256 + 17, seed=3)
    denoiser = Denoiser(np.abs(np.random.default_rng(2).normal(0, 0.3, 513)).astype(np.float32))
    whole = denoiser(audio[None], 0.5).numpy()[0]
    for block in (256, 1000, 4096):
        blocks = denoiser.denoise_long(audio, 0.5, block_samples=block)
        np.testing.assert_allclose(blocks, whole, atol=1e-6, rtol=0)
        # The same blocks inside a graph (what an exported SavedModel runs).
        in_graph = tf.function(lambda a, block=block: denoiser.denoise_blocks(a, 0.5, block_samples=block))
        np.testing.assert_allclose(in_graph(tf.constant(audio[None])).numpy()[0], whole, atol=1e-6, rtol=0)


def test_too_short_audio_is_refused_with_a_reason():
    denoiser = Denoiser(np.zeros(513, np.float32))
    with pytest.raises(ValueError, match="more than 512 samples"):
        denoise_in_blocks(denoiser, np.zeros(512, np.float32), 0.1, 1024, 256)
    with pytest.raises(tf.errors.InvalidArgumentError):
        denoiser(np.zeros([1, 512], np.float32), 0.1)
