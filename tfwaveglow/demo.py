"""A short demonstration of the model on the built-in default config.

Builds the small preset, runs a 1-second chirp through the flow and back
(audio -> z -> audio) and reports the round-trip error, the NLL and the
parameter count of the default (NVIDIA-size) model.

    python -m tfwaveglow.demo
"""

from __future__ import annotations

import json
import os

import numpy as np

import tfwaveglow

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> dict:
    import tensorflow as tf

    params = tfwaveglow.load_params(os.path.join(_ROOT, "configs", "small.yaml"))
    model = tfwaveglow.WaveGlow.from_params(params)
    hop, sr = params.audio.hop_length, params.audio.sampling_rate
    frames = sr // hop
    t = np.arange(frames * hop) / sr
    audio = (0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t)).astype(np.float32)[None]
    mel = tf.random.normal([1, frames, params.audio.n_mel_channels], seed=0)
    out = model.forward(mel, audio)
    restored = model.infer(mel, sigma=1.0, z=out["z"])
    report = {
        "small_model_parameters": tfwaveglow.count_parameters(model),
        "default_model_parameters": tfwaveglow.count_parameters(
            tfwaveglow.WaveGlow.from_params(tfwaveglow.load_params(os.path.join(_ROOT, "params.yaml")))
        ),
        "nll": float(tfwaveglow.nll_loss(out)),
        "round_trip_max_abs_error": float(np.max(np.abs(restored.numpy() - audio))),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
