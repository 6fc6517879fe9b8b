"""Widening a trained model's WNs (tfwaveglow.growth, scripts/grow_model.py).

The reference is the narrower model itself: the wider one must map every mel and latent to the
same audio, and every audio to the same latent and log-determinant, yet have new weights that
training moves.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfwaveglow
from tfwaveglow.growth import condition_index, embed, gated_index, widen_wn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")


def trained_like(params) -> tfwaveglow.WaveGlow:
    """A tiny model with every weight random (``end`` included, so no coupling is the identity)."""
    model = tfwaveglow.WaveGlow.from_params(params)
    rng = np.random.default_rng(7)
    for variable in model.weights:
        if "convinv" not in variable.path:  # keep the 1x1 convolutions invertible
            variable.assign(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
    return model


def mel_and_audio(frames=10):
    mel = tf.random.stateless_normal([2, frames, 80], seed=[1, 2])
    audio = tf.random.stateless_uniform([2, 256 * frames], seed=[3, 4], minval=-0.5, maxval=0.5)
    return mel, audio


def test_index_maps_are_the_documented_layouts():
    np.testing.assert_array_equal(gated_index(2, 3), [0, 1, 3, 4])
    np.testing.assert_array_equal(condition_index(2, 3, 2), [0, 1, 3, 4, 6, 7, 9, 10])
    target = np.full((3, 6), 9.0, np.float32)
    out = embed(target, np.ones((2, 4)), rows=np.arange(2), cols=gated_index(2, 3), zero_new_rows_of="old")
    expected = np.array([[1, 1, 9, 1, 1, 9], [1, 1, 9, 1, 1, 9], [0, 0, 9, 0, 0, 9]], np.float32)
    np.testing.assert_array_equal(out, expected)
    out = embed(target, np.ones((2, 4)), rows=np.arange(2), cols=gated_index(2, 3), zero_new_rows_of="all")
    np.testing.assert_array_equal(out[2], np.zeros(6))


@pytest.mark.parametrize(
    "separable, weight_norm", [(False, False), (True, True)], ids=["plain-folded", "separable-weight_norm"]
)
def test_a_widened_model_synthesises_and_scores_exactly_as_the_narrow_one(separable, weight_norm):
    narrow = trained_like(tfwaveglow.load_params(TINY, overrides={"model.wn.separable": separable}))
    wide_params = tfwaveglow.load_params(TINY, overrides={"model.wn.separable": separable, "model.wn.n_channels": 12})
    wide = tfwaveglow.WaveGlow.from_params(wide_params, weight_norm=weight_norm)
    widen_wn(narrow, wide)
    assert wide.wn_n_channels == 12 and wide.count_params() > narrow.count_params()
    mel, audio = mel_and_audio()
    z = tf.random.stateless_normal(narrow.latent_shape(mel), seed=[5, 6])
    expected = narrow.infer(mel, z=z).numpy()
    assert np.abs(expected).max() > 1.0  # the couplings are far from the identity
    np.testing.assert_allclose(wide.infer(mel, z=z).numpy(), expected, rtol=1e-5, atol=1e-5)
    a, b = narrow.forward(mel, audio), wide.forward(mel, audio)
    np.testing.assert_allclose(b["z"].numpy(), a["z"].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(b["log_s_sum"]), float(a["log_s_sum"]), rtol=1e-5)
    # The new channels have weights of their own (not all zero): the old ones' did not just get padded.
    start = wide.couplings[0].wn.start.effective_kernel().numpy()
    assert np.abs(start[:, 8:]).min() > 0


def test_the_zero_paths_get_gradients_so_training_grows_them():
    narrow = trained_like(tfwaveglow.load_params(TINY, overrides={"model.wn.separable": True}))
    wide = tfwaveglow.WaveGlow.from_params(
        tfwaveglow.load_params(TINY, overrides={"model.wn.separable": True, "model.wn.n_channels": 12})
    )
    widen_wn(narrow, wide)
    mel, audio = mel_and_audio()
    wn = wide.couplings[0].wn
    res_skip = wn.res_skip_layers[0].kernel
    np.testing.assert_array_equal(res_skip.numpy()[8:], 0.0)  # new gated units feed nothing yet
    with tf.GradientTape() as tape:
        out = wide.forward(mel, audio)
        loss = tf.reduce_sum(tf.square(out["z"])) - out["log_s_sum"]
    grad = tape.gradient(loss, res_skip).numpy()
    assert np.abs(grad[8:]).max() > 1e-6


def test_only_a_wider_wn_is_accepted():
    narrow = trained_like(tfwaveglow.load_params(TINY))
    with pytest.raises(ValueError, match="narrower"):
        widen_wn(
            narrow, tfwaveglow.WaveGlow.from_params(tfwaveglow.load_params(TINY, overrides={"model.wn.n_channels": 4}))
        )
    with pytest.raises(ValueError, match="only the WN width"):
        widen_wn(narrow, tfwaveglow.WaveGlow.from_params(tfwaveglow.load_params(TINY, overrides={"model.n_flows": 3})))


@pytest.mark.slow
def test_the_script_writes_a_wider_model_that_loads_and_synthesises_alike(tmp_path, capsys):
    params = tfwaveglow.load_params(TINY)
    narrow = trained_like(params)
    tfwaveglow.save_model(narrow, str(tmp_path / "narrow"), params)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "grow_model.py"),
            f"--model={tmp_path / 'narrow'}",
            f"--output_dir={tmp_path / 'wide'}",
            "--wn_channels=16",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WN channels 8 -> 16" in result.stdout
    wide = tfwaveglow.load_model(str(tmp_path / "wide"))
    assert wide.wn_n_channels == 16
    mel, _ = mel_and_audio()
    z = tf.random.stateless_normal(narrow.latent_shape(mel), seed=[8, 9])
    np.testing.assert_allclose(wide.infer(mel, z=z).numpy(), narrow.infer(mel, z=z).numpy(), rtol=1e-5, atol=1e-5)
    # Narrower than the model: refused with exit status 2 and the reason.
    spec = importlib.util.spec_from_file_location("grow_model", os.path.join(ROOT, "scripts", "grow_model.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = [f"--model={tmp_path / 'narrow'}", f"--output_dir={tmp_path / 'bad'}", "--wn_channels=4"]
    assert script.main(argv) == 2
    assert "below" in capsys.readouterr().err and not os.path.exists(tmp_path / "bad")
