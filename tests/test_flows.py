"""Every flow step and the whole model invert, and their log-determinants are right."""

import numpy as np
import pytest
import tensorflow as tf

from tfwaveglow import WaveGlow
from tfwaveglow.layers import AffineCoupling, Invertible1x1Conv

# The Jacobians below use experimental_use_pfor=False: the vectorised path aborts the
# process on this TensorFlow build for these graphs.


def randomize(model_or_layer, scale=0.1, seed=0):
    """Random non-zero values in every variable (WN's zero-initialised `end` included)."""
    rng = np.random.default_rng(seed)
    for var in model_or_layer.weights:
        if "convinv" in var.path or var.path.endswith("kernel_g"):
            continue  # keep W a rotation-like matrix and g positive
        var.assign(rng.normal(0.0, scale, var.shape).astype(np.float32))


def tiny_model(**overrides):
    config = dict(
        n_mel_channels=5,
        n_flows=6,
        n_group=4,
        n_early_every=2,
        n_early_size=2,
        upsample_kernel_size=16,
        upsample_stride=8,
        wn_n_layers=2,
        wn_n_channels=6,
        wn_kernel_size=3,
    )
    config.update(overrides)
    return WaveGlow(**config)


def test_invertible_conv_round_trip_and_log_det():
    layer = Invertible1x1Conv(6, seed=3)
    layer.build(None)
    w = np.random.default_rng(1).standard_normal((6, 6)).astype(np.float32)
    layer.kernel.assign(w)  # a general matrix, negative determinant allowed
    x = np.random.default_rng(2).standard_normal((3, 7, 6)).astype(np.float32)
    z, log_det = layer.forward(tf.constant(x))
    np.testing.assert_allclose(z.numpy(), x @ w.T, rtol=1e-5, atol=1e-5)
    _, logabsdet = np.linalg.slogdet(w.astype(np.float64))
    np.testing.assert_allclose(log_det.numpy(), 3 * 7 * logabsdet, rtol=1e-5)
    np.testing.assert_allclose(layer.inverse(z).numpy(), x, atol=1e-5)


def test_invertible_conv_initialises_as_rotation_with_positive_determinant():
    for seed in range(5):
        layer = Invertible1x1Conv(8, seed=seed)
        layer.build(None)
        w = layer.kernel.numpy().astype(np.float64)
        np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-5)
        assert np.linalg.det(w) == pytest.approx(1.0, abs=1e-5)


def test_affine_coupling_round_trip_and_log_det_by_numerical_jacobian():
    coupling = AffineCoupling(4, 3, wn_options={"n_layers": 2, "n_channels": 5, "kernel_size": 3, "weight_norm": True})
    coupling.build(None)
    randomize(coupling, scale=0.3, seed=4)
    rng = np.random.default_rng(5)
    x = tf.constant(rng.standard_normal((1, 6, 4)), tf.float32)
    spect = tf.constant(rng.standard_normal((1, 6, 3)), tf.float32)
    y, log_s = coupling.forward(x, spect)
    assert float(tf.reduce_max(tf.abs(log_s))) > 1e-3, "log_s must be non-trivial for this check"
    np.testing.assert_allclose(coupling.inverse(y, spect).numpy(), x.numpy(), atol=1e-5)

    x64 = tf.cast(x, tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x64)
        y64, _ = coupling.forward(tf.cast(x64, tf.float32), spect)
        y64 = tf.cast(y64, tf.float64)
    jac = tape.jacobian(y64, x64, experimental_use_pfor=False).numpy().reshape(24, 24)
    sign, logabsdet = np.linalg.slogdet(jac)
    assert sign > 0
    np.testing.assert_allclose(logabsdet, float(tf.reduce_sum(log_s)), rtol=1e-4, atol=1e-4)


def test_affine_coupling_config_rebuilds_the_same_wn():
    options = {"n_layers": 3, "n_channels": 6, "kernel_size": 5, "weight_norm": True, "separable": True}
    coupling = AffineCoupling(6, 3, wn_options=options, name="c")
    coupling.build(None)
    randomize(coupling, scale=0.3, seed=6)
    config = coupling.get_config()
    assert config["wn_options"] == {**options, "dilated_conv": "time_to_batch"}
    rebuilt = AffineCoupling.from_config(config)
    rebuilt.build(None)
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in coupling.weights]
    rebuilt.set_weights(coupling.get_weights())
    rng = np.random.default_rng(7)
    x = tf.constant(rng.standard_normal((2, 9, 6)), tf.float32)
    spect = tf.constant(rng.standard_normal((2, 9, 3)), tf.float32)
    np.testing.assert_array_equal(rebuilt.forward(x, spect)[0].numpy(), coupling.forward(x, spect)[0].numpy())
    assert float(tf.reduce_max(tf.abs(coupling.forward(x, spect)[0] - x))) > 1e-3  # WN is not the identity here


def test_whole_model_log_det_matches_numerical_jacobian():
    model = tiny_model(weight_norm=True)
    randomize(model, scale=0.2, seed=6)
    rng = np.random.default_rng(7)
    frames = 3
    samples = frames * 8  # 24 samples -> 6 group steps of 4
    mel = tf.constant(rng.standard_normal((1, frames, 5)), tf.float32)
    audio = tf.constant(rng.uniform(-0.5, 0.5, (1, samples)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(audio)
        out = model.forward(mel, audio)
        z = tf.reshape(out["z"], [-1])
    jac = tape.jacobian(z, audio, experimental_use_pfor=False).numpy().reshape(samples, samples).astype(np.float64)
    sign, logabsdet = np.linalg.slogdet(jac)
    assert sign > 0
    expected = float(out["log_s_sum"] + out["log_det_w_sum"])
    np.testing.assert_allclose(logabsdet, expected, rtol=1e-3, atol=1e-3)
    # The 1x1 log-dets on their own: sum over flows of batch * groups * log|det W_k|.
    manual = sum(6 * np.linalg.slogdet(c.kernel.numpy().astype(np.float64))[1] for c in model.convinv)
    np.testing.assert_allclose(float(out["log_det_w_sum"]), manual, atol=1e-4)


@pytest.mark.parametrize("dilated_conv", ["shifted_matmul", "time_to_batch", "phase_conv2d", "native"])
def test_whole_model_inverts_with_nvidia_shapes(dilated_conv):
    # NVIDIA's structure (12 flows, n_group 8, early outputs every 4, hop 256) with a narrow WN.
    model = WaveGlow(n_flows=12, wn_n_layers=3, wn_n_channels=16, dilated_conv=dilated_conv, weight_norm=True)
    randomize(model, scale=0.05, seed=8)
    rng = np.random.default_rng(9)
    frames = 6
    mel = tf.constant(rng.standard_normal((2, frames, 80)), tf.float32)
    audio = tf.constant(rng.uniform(-0.9, 0.9, (2, frames * 256)), tf.float32)
    out = model.forward(mel, audio)
    assert out["z"].shape == (2, frames * 32, 8)
    assert abs(float(out["log_s_sum"])) > 1e-2
    restored = model.infer(mel, sigma=1.0, z=out["z"])
    assert restored.shape == (2, frames * 256)
    assert float(tf.reduce_max(tf.abs(restored - audio))) < 1e-4


def test_early_outputs_are_the_squeezed_audio_channels_of_forward():
    # Before the first early output only flows 0..3 touch the audio; with n_flows=1 and identity
    # couplings, z is the 1x1 conv of the squeezed audio: channel j at step t holds sample 8t + j.
    model = WaveGlow(n_flows=1, wn_n_layers=1, wn_n_channels=4)
    model.convinv[0].kernel.assign(np.eye(8, dtype=np.float32))
    audio = np.arange(2 * 512, dtype=np.float32).reshape(2, 512) / 1024.0
    mel = np.zeros((2, 2, 80), np.float32)
    z = model.forward(mel, audio)["z"].numpy()
    np.testing.assert_allclose(z, audio.reshape(2, 64, 8), atol=1e-6)


def test_fold_weight_norm_keeps_outputs():
    model = tiny_model(weight_norm=True)
    randomize(model, scale=0.2, seed=10)
    folded = model.fold_weight_norm()
    assert not folded.weight_norm
    rng = np.random.default_rng(11)
    mel = tf.constant(rng.standard_normal((2, 4, 5)), tf.float32)
    z = tf.constant(rng.standard_normal((2, 8, 4)), tf.float32)
    np.testing.assert_allclose(folded.infer(mel, 0.7, z).numpy(), model.infer(mel, 0.7, z).numpy(), atol=1e-5)
