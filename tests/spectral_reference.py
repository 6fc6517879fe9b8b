"""librosa's STFT with the NVIDIA / Tacotron 2 conventions: the independent reference of the spectral tests."""

from __future__ import annotations

import librosa
import numpy as np


def librosa_stft(y, n_fft: int = 1024, hop: int = 256, win: int | None = None) -> np.ndarray:
    """Complex STFT ``[n_fft // 2 + 1, frames]`` of ``y`` in float64: periodic Hann, centred, reflect-padded."""
    return librosa.stft(
        np.asarray(y, np.float64),
        n_fft=n_fft,
        hop_length=hop,
        win_length=n_fft if win is None else win,
        window="hann",
        center=True,
        pad_mode="reflect",
    )
