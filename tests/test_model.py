"""WaveGlow's upsampler, mel grouping, size, loss and input checks."""

import numpy as np
import pytest
import tensorflow as tf

import tfwaveglow
from tfwaveglow import WaveGlow
from tfwaveglow.layers.upsampler import Upsampler


def test_default_model_has_nvidia_parameter_count():
    params = tfwaveglow.load_params("params.yaml")
    model = WaveGlow.from_params(params)
    # NVIDIA's published 256-channel WaveGlow, weight norm folded.
    assert tfwaveglow.count_parameters(model) == 87_731_816
    # Weight norm adds one g per output channel of every WN conv but `end`.
    with_wn = WaveGlow.from_params(params, weight_norm=True)
    per_flow = 256 + 2 * 256 * 8 + 8 * 2 * 256 + 7 * 2 * 256 + 256
    assert tfwaveglow.count_parameters(with_wn) == 87_731_816 + 12 * per_flow


def test_upsampler_matches_numpy_transposed_convolution():
    layer = Upsampler(channels=3, kernel_size=8, stride=4)
    layer.build(None)
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((8, 3, 3)).astype(np.float32)  # [k, out, in]
    bias = rng.standard_normal(3).astype(np.float32)
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    mel = rng.standard_normal((2, 5, 3)).astype(np.float32)
    expected = np.zeros((2, (5 - 1) * 4 + 8, 3)) + bias
    for f in range(5):
        for j in range(8):
            expected[:, f * 4 + j, :] += mel[:, f, :] @ kernel[j].T
    np.testing.assert_allclose(layer(tf.constant(mel)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_group_mel_is_mel_major():
    model = WaveGlow(n_mel_channels=3, n_flows=1, n_group=4, upsample_kernel_size=8, upsample_stride=4, wn_n_layers=1)
    up = np.arange(2 * 12 * 3, dtype=np.float32).reshape(2, 12, 3)
    grouped = model.group_mel(tf.constant(up)).numpy()
    assert grouped.shape == (2, 3, 12)
    for t in range(3):
        for m in range(3):
            for j in range(4):
                np.testing.assert_array_equal(grouped[:, t, m * 4 + j], up[:, 4 * t + j, m])


def test_infer_length_and_latent_scaling():
    model = WaveGlow(n_flows=4, wn_n_layers=2, wn_n_channels=8)
    mel = tf.random.normal([1, 3, 80], seed=1)
    assert model.infer(mel, sigma=0.6).shape == (1, 3 * 256)
    # With zero-initialised `end` convs every coupling is the identity, so
    # audio = W^-1 ... (sigma * z): scaling sigma scales the audio linearly.
    z = tf.random.normal([1, 96, 8], seed=2)
    a1 = model.infer(mel, sigma=1.0, z=z).numpy()
    a2 = model.infer(mel, sigma=0.5, z=z).numpy()
    np.testing.assert_allclose(a2, 0.5 * a1, atol=1e-6)
    # Same seed, same audio; per-item sigma broadcasts over the batch.
    mel2 = tf.random.normal([2, 3, 80], seed=3)
    np.testing.assert_array_equal(model.infer(mel2, 0.6, seed=7).numpy(), model.infer(mel2, 0.6, seed=7).numpy())
    z2 = tf.random.normal([2, 96, 8], seed=4)
    both = model.infer(mel2, sigma=tf.constant([1.0, 0.5]), z=z2).numpy()
    np.testing.assert_allclose(both[1], model.infer(mel2[1:], 0.5, z2[1:]).numpy()[0], atol=1e-6)


def test_loss_matches_hand_computation():
    model = WaveGlow(n_flows=4, wn_n_layers=2, wn_n_channels=8)
    for coupling in model.couplings:
        end = coupling.wn.end
        end.kernel.assign(np.random.default_rng(5).normal(0, 0.1, end.kernel.shape).astype(np.float32))
    rng = np.random.default_rng(6)
    mel = rng.standard_normal((2, 4, 80)).astype(np.float32)
    audio = rng.uniform(-0.5, 0.5, (2, 1024)).astype(np.float32)
    out = model.forward(mel, audio)
    z = out["z"].numpy().astype(np.float64)
    log_s_sum = sum(ls.numpy().astype(np.float64).sum() for ls in out["log_s"])
    log_det = sum(2 * 128 * np.linalg.slogdet(c.kernel.numpy().astype(np.float64))[1] for c in model.convinv)
    for sigma in (1.0, 0.7):
        expected = ((z**2).sum() / (2 * sigma**2) - log_s_sum - log_det) / z.size
        assert float(tfwaveglow.nll_loss(out, sigma=sigma)) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    terms = tfwaveglow.nll_terms(out)
    assert set(terms) == {"loss/total", "loss/z", "loss/log_s", "loss/log_det_w"}
    total = float(terms["loss/z"]) - float(terms["loss/log_s"]) - float(terms["loss/log_det_w"])
    assert float(terms["loss/total"]) == pytest.approx(total, rel=1e-6)
    assert float(terms["loss/log_s"]) == pytest.approx(log_s_sum / z.size, rel=1e-5)


class TestBadInput:
    model = None

    @classmethod
    def setup_class(cls):
        cls.model = WaveGlow(n_flows=2, n_early_every=4, wn_n_layers=1, wn_n_channels=4)

    def test_wrong_mel_channels(self):
        with pytest.raises(ValueError, match=r"mel has 79 channels.*\(1, 4, 79\)"):
            self.model.infer(np.zeros((1, 4, 79), np.float32))
        with pytest.raises(ValueError, match="79 channels"):
            self.model.forward(np.zeros((1, 4, 79), np.float32), np.zeros((1, 1024), np.float32))

    def test_mel_rank_and_zero_frames_and_dtype(self):
        with pytest.raises(ValueError, match=r"shape \(4, 80\)"):
            self.model.infer(np.zeros((4, 80), np.float32))
        with pytest.raises(ValueError, match="zero frames"):
            self.model.infer(np.zeros((1, 0, 80), np.float32))
        with pytest.raises(TypeError, match="int32"):
            self.model.infer(np.zeros((1, 4, 80), np.int32))

    def test_audio_length_does_not_match_mel(self):
        with pytest.raises(ValueError, match=r"audio of shape \(1, 2048\) does not match mel of shape \(1, 4, 80\)"):
            self.model.forward(np.zeros((1, 4, 80), np.float32), np.zeros((1, 2048), np.float32))
        with pytest.raises(ValueError, match=r"\(1, 1020\).*divisible by n_group=8"):
            self.model.forward(np.zeros((1, 4, 80), np.float32), np.zeros((1, 1020), np.float32))
        with pytest.raises(ValueError, match="batch sizes differ"):
            self.model.forward(np.zeros((2, 4, 80), np.float32), np.zeros((1, 1024), np.float32))

    def test_non_finite_values(self):
        mel = np.zeros((1, 4, 80), np.float32)
        mel[0, 2, 5] = np.nan
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"mel contains NaN or Inf.*\(1, 4, 80\)"):
            self.model.infer(mel)
        audio = np.zeros((1, 1024), np.float32)
        audio[0, 3] = np.inf
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"audio contains NaN or Inf.*\(1, 1024\)"):
            self.model.forward(np.zeros((1, 4, 80), np.float32), audio)

    def test_latent_of_wrong_shape(self):
        with pytest.raises(ValueError, match=r"z must be .*\[batch, 128, 8\].*\(1, 100, 8\)"):
            self.model.infer(np.zeros((1, 4, 80), np.float32), 0.6, z=np.zeros((1, 100, 8), np.float32))

    def test_checks_hold_inside_tf_function(self):
        fn = tf.function(
            lambda mel, audio: self.model.forward(mel, audio)["z"],
            input_signature=[tf.TensorSpec([None, None, 80]), tf.TensorSpec([None, None])],
        )
        assert fn(np.zeros((1, 4, 80), np.float32), np.zeros((1, 1024), np.float32)).shape == (1, 128, 8)
        with pytest.raises(tf.errors.InvalidArgumentError, match="longer than the mel frames cover"):
            fn(np.zeros((1, 4, 80), np.float32), np.zeros((1, 2048), np.float32))
