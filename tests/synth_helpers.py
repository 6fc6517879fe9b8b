"""Tiny models, mels and independent references shared by the synthesis, denoiser and export tests."""

from __future__ import annotations

import keras
import librosa
import numpy as np
import tensorflow as tf
from spectral_reference import librosa_stft

import tfwaveglow

# hop 64 and a 256-tap upsampler keep the models tiny while the receptive field
# (4 couplings x 7 group steps x 8 samples = 224 samples) still spans several frames.
TINY_OVERRIDES = {
    "audio.hop_length": 64,
    "audio.filter_length": 256,
    "audio.win_length": 256,
    "model.upsample_stride": 64,
    "model.upsample_kernel_size": 256,
    "model.n_flows": 4,
    "model.n_early_every": 2,
    "model.wn.n_layers": 3,
    "model.wn.n_channels": 16,
}
N_MEL = 80
HOP = 64
N_GROUP = 8


def tiny_params(**overrides):
    return tfwaveglow.load_params(overrides={**TINY_OVERRIDES, **overrides})


def tiny_model(seed: int = 0, weight_norm: bool = False, params=None):
    """A tiny WaveGlow whose couplings are not the identity.

    WN's ``end`` starts at zero (each coupling is then the identity and no
    output depends on its neighbours); random ``end`` weights make every
    coupling mix in its receptive field, which is what these tests are about.
    """
    params = params or tiny_params()
    keras.utils.set_random_seed(seed)
    model = tfwaveglow.WaveGlow.from_params(params, weight_norm=weight_norm)
    rng = np.random.default_rng(seed)
    for coupling in model.couplings:
        end = coupling.wn.end
        end.assign_kernel(rng.normal(0.0, 0.3, end.kernel.shape), rng.normal(0.0, 0.3, end.bias.shape))
    return model


def random_mel(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A log-mel-like ``[frames, 80]`` float32 array (values around -6 +- 2)."""
    return rng.normal(-6.0, 2.0, (frames, N_MEL)).astype(np.float32)


def reference_latent(seed: int, frames: int) -> np.ndarray:
    """The documented latent: ``stateless_normal([frames*hop/g, g], seed=[seed, 0], alg="philox")``."""
    return tf.random.stateless_normal(
        [frames * HOP // N_GROUP, N_GROUP], seed=[seed, 0], alg="philox", dtype=tf.float32
    ).numpy()


def librosa_denoise(audio, bias_audio, strength, n_fft, hop, win):
    """NVIDIA's bias denoiser with librosa's STFT (reflect-padded, centred; window-sum-square inverse).

    ``bias_audio`` is the model's output for an all-zero mel at sigma 0; the
    bias is the magnitude of its first STFT frame.
    """

    bias = np.abs(librosa_stft(bias_audio, n_fft, hop, win))[:, :1]
    spec = librosa_stft(audio, n_fft, hop, win)
    magnitude = np.maximum(np.abs(spec) - strength * bias, 0.0)
    return librosa.istft(
        magnitude * np.exp(1j * np.angle(spec)),
        hop_length=hop,
        win_length=win,
        n_fft=n_fft,
        window="hann",
        center=True,
        length=len(audio),
    ).astype(np.float32)
