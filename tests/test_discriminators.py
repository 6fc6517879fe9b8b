"""The discriminators (tfwaveglow.objectives.discriminators) and the LSGAN losses (tfwaveglow.objectives.adversarial).

Losses against NumPy; the two first stages (STFT magnitude, period fold) against
scipy / NumPy; output shapes, gradients, the config's switches, float32 under a mixed
policy, a distribution strategy and checkpoints on small discriminators.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from tfwaveglow.config import AdversarialParams
from tfwaveglow.objectives import adversarial
from tfwaveglow.objectives.discriminators import (
    Discriminators,
    PeriodDiscriminator,
    PeriodSubDiscriminator,
    SpectrogramDiscriminator,
    SpectrogramSubDiscriminator,
    fold_periods,
    stft_magnitude,
)

# Small but complete: both kinds, unequal resolutions (one window shorter than its FFT), odd periods.
SMALL = AdversarialParams(
    mrd_fft_sizes=(256, 512),
    mrd_hop_sizes=(64, 128),
    mrd_win_lengths=(192, 512),
    mrd_channels=4,
    mrd_stride=2,
    mpd_periods=(2, 3, 5),
    mpd_channels=(4, 8, 8),
    mpd_kernel_size=5,
    mpd_stride=3,
)
SHAPES = [(2, 7, 3, 1), (2, 5, 1), (2, 11, 4, 1), (3,)]


def _random_maps(rng, shapes):
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def _waveforms(batch, length, seed):
    return (0.3 * np.random.default_rng(seed).standard_normal((batch, length))).astype(np.float32)


# ---------------------------------------------------------------- losses


def test_discriminator_loss_matches_numpy():
    rng = np.random.default_rng(0)
    real, fake = _random_maps(rng, SHAPES), _random_maps(rng, SHAPES)
    expected = np.mean([np.mean((1.0 - r) ** 2) + np.mean(f**2) for r, f in zip(real, fake)])
    got = adversarial.discriminator_loss([tf.constant(r) for r in real], [tf.constant(f) for f in fake])
    assert got.dtype == tf.float32 and got.shape == ()
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_generator_adversarial_loss_matches_numpy():
    rng = np.random.default_rng(1)
    fake = _random_maps(rng, SHAPES)
    expected = np.mean([np.mean((1.0 - f) ** 2) for f in fake])
    got = adversarial.generator_adversarial_loss([tf.constant(f) for f in fake])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_feature_matching_loss_matches_numpy_and_treats_real_features_as_constants():
    rng = np.random.default_rng(2)
    layer_shapes = [[(2, 9, 3, 4), (2, 5, 3, 8)], [(2, 6, 2)], [(2, 4, 4, 2), (2, 3, 4, 2), (2, 3, 4, 1)]]
    real = [_random_maps(rng, shapes) for shapes in layer_shapes]
    fake = [_random_maps(rng, shapes) for shapes in layer_shapes]
    # Mean over layers within a sub-discriminator, then over sub-discriminators.
    expected = np.mean([np.mean([np.mean(np.abs(r - f)) for r, f in zip(rs, fs)]) for rs, fs in zip(real, fake)])
    real_t = [[tf.Variable(r) for r in rs] for rs in real]
    fake_t = [[tf.Variable(f) for f in fs] for fs in fake]
    with tf.GradientTape(persistent=True) as tape:
        got = adversarial.feature_matching_loss(real_t, fake_t)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert all(g is None for g in tape.gradient(got, [v for vs in real_t for v in vs]))
    # d/df of 1/K * 1/L_k * mean|r - f| is sign(f - r) / (K * L_k * size).
    for k, (rs, fs) in enumerate(zip(real, fake)):
        for r, f, g in zip(rs, fs, tape.gradient(got, fake_t[k])):
            scale = len(real) * len(rs) * f.size
            np.testing.assert_allclose(g.numpy(), np.sign(f - r) / scale, rtol=1e-5)


def test_losses_reject_mismatched_or_empty_outputs():
    one = [tf.zeros([2, 3])]
    with pytest.raises(ValueError):
        adversarial.discriminator_loss(one, one + one)
    with pytest.raises(ValueError):
        adversarial.generator_adversarial_loss([])
    with pytest.raises(ValueError):
        adversarial.feature_matching_loss([[tf.zeros([2])]], [[tf.zeros([2]), tf.zeros([2])]])


# ---------------------------------------------------------------- first stages


@pytest.mark.parametrize("fft_size,hop_size,win_length", [(64, 16, 64), (128, 32, 96), (256, 100, 200)])
@pytest.mark.parametrize("compression", ["none", "log1p"])
def test_stft_magnitude_matches_scipy(fft_size, hop_size, win_length, compression):
    x = _waveforms(2, 1000, seed=3).astype(np.float64)
    pad = win_length // 2
    padded = np.pad(x, [(0, 0), (pad, pad)], mode="reflect")
    _, _, spectrum = scipy.signal.stft(
        padded,
        window="hann",  # periodic, as tf.signal.hann_window
        nperseg=win_length,
        noverlap=win_length - hop_size,
        nfft=fft_size,
        detrend=False,
        boundary=None,
        padded=False,
        axis=-1,
    )
    # scipy divides by the window's sum ("spectrum" scaling) and puts frequency before time.
    window_sum = scipy.signal.get_window("hann", win_length).sum()
    magnitude = np.abs(spectrum * window_sum).transpose(0, 2, 1)
    expected = np.log1p(magnitude) if compression == "log1p" else magnitude

    got = stft_magnitude(tf.constant(x, tf.float32), fft_size, hop_size, win_length, compression).numpy()
    assert got.shape == (2, 1 + 1000 // hop_size, fft_size // 2 + 1) == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    sub = SpectrogramSubDiscriminator(fft_size, hop_size, win_length, channels=2, compression=compression)
    np.testing.assert_array_equal(sub.spectrogram(tf.constant(x, tf.float32)).numpy(), got)


@pytest.mark.parametrize("period", [1, 2, 3, 5, 7, 11])
def test_fold_periods_on_a_ramp(period):
    length = 100
    x = np.stack([np.arange(length), 1000 + np.arange(length)]).astype(np.float32)
    folded = fold_periods(tf.constant(x), period).numpy()
    rows = math.ceil(length / period)
    assert folded.shape == (2, rows, period)
    padded = np.pad(x, [(0, 0), (0, rows * period - length)], mode="reflect")
    for b in range(2):
        for i in range(rows):
            for j in range(period):
                assert folded[b, i, j] == padded[b, i * period + j]
                if i * period + j < length:
                    assert folded[b, i, j] == x[b, i * period + j]
    sub = PeriodSubDiscriminator(period, channels=(2,))
    np.testing.assert_array_equal(sub.fold(tf.constant(x)).numpy(), folded)


# ---------------------------------------------------------------- discriminators


def _up(n, stride, times):
    for _ in range(times):
        n = math.ceil(n / stride)
    return n


def test_scores_and_features_shapes():
    batch, length = 2, 4096
    a = dataclasses.replace(SMALL, mrd_fft_sizes=(512, 1024), mrd_hop_sizes=(128, 256), mrd_win_lengths=(512, 1024))
    discriminators = Discriminators.from_params(a)
    scores, features = discriminators(tf.constant(_waveforms(batch, length, seed=4)))
    assert discriminators.num_discriminators == len(scores) == len(features) == 2 + 3

    for k, (fft_size, hop) in enumerate(zip(a.mrd_fft_sizes, a.mrd_hop_sizes)):
        frames, bins = 1 + length // hop, fft_size // 2 + 1
        widths = [bins] + [_up(bins, a.mrd_stride, i) for i in (1, 2, 3, 3)]
        assert [tuple(f.shape) for f in features[k]] == [(batch, frames, w, a.mrd_channels) for w in widths]
        assert tuple(scores[k].shape) == (batch, frames, widths[-1], 1)

    for k, period in enumerate(a.mpd_periods, start=len(a.mrd_fft_sizes)):
        rows = [_up(math.ceil(length / period), a.mpd_stride, i) for i in range(1, len(a.mpd_channels) + 1)]
        rows.append(rows[-1])
        channels = [*a.mpd_channels, a.mpd_channels[-1]]
        assert [tuple(f.shape) for f in features[k]] == [(batch, r, period, c) for r, c in zip(rows, channels)]
        assert tuple(scores[k].shape) == (batch, rows[-1], period, 1)

    for t in [*scores, *(f for fs in features for f in fs)]:
        assert t.dtype == tf.float32 and np.all(np.isfinite(t.numpy()))


def test_gradients_reach_every_variable_and_the_input():
    discriminators = Discriminators.from_params(SMALL)
    real = tf.constant(_waveforms(2, 4096, seed=5))
    fake = tf.Variable(_waveforms(2, 4096, seed=6))

    # Any batch and length: the graph is traced once for unknown shapes.
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)] * 2)
    def gradients(real, fake):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(fake)
            real_scores, real_features = discriminators(real)
            fake_scores, fake_features = discriminators(fake)
            loss_d = adversarial.discriminator_loss(real_scores, fake_scores)
            loss_g = adversarial.generator_adversarial_loss(fake_scores) + adversarial.feature_matching_loss(
                real_features, fake_features
            )
        return tape.gradient(loss_d, discriminators.trainable_variables), tape.gradient(loss_g, fake)

    variable_grads, input_grad = gradients(real, tf.convert_to_tensor(fake))
    assert len(variable_grads) == len(discriminators.trainable_variables) > 0
    for variable, grad in zip(discriminators.trainable_variables, variable_grads):
        assert grad is not None, variable.path
        grad = grad.numpy()
        assert np.all(np.isfinite(grad)) and np.any(grad != 0), variable.path
    input_grad = input_grad.numpy()
    assert input_grad.shape == (2, 4096) and np.all(np.isfinite(input_grad)) and np.any(input_grad != 0)


def test_an_empty_list_leaves_that_kind_out():
    only_spectrogram = Discriminators.from_params(dataclasses.replace(SMALL, mpd_periods=()))
    assert only_spectrogram.num_discriminators == len(SMALL.mrd_fft_sizes)
    assert [type(k) for k in only_spectrogram.kinds] == [SpectrogramDiscriminator]

    only_period = Discriminators.from_params(
        dataclasses.replace(SMALL, mrd_fft_sizes=(), mrd_hop_sizes=(), mrd_win_lengths=())
    )
    assert only_period.num_discriminators == len(SMALL.mpd_periods)
    assert [type(k) for k in only_period.kinds] == [PeriodDiscriminator]
    scores, features = only_period(tf.constant(_waveforms(1, 2048, seed=7)))
    assert [s.shape[2] for s in scores] == list(SMALL.mpd_periods)

    both = Discriminators.from_params(SMALL)
    paths = [v.path for v in both.trainable_variables]
    assert len(set(paths)) == len(paths)  # unique, e.g. discriminators/period/period_3/conv_0/kernel
    assert sorted(paths) == sorted(v.path for v in [*only_spectrogram.variables, *only_period.variables])

    with pytest.raises(ValueError):
        Discriminators.from_params(
            dataclasses.replace(SMALL, mrd_fft_sizes=(), mrd_hop_sizes=(), mrd_win_lengths=(), mpd_periods=())
        )


def test_float32_under_a_mixed_policy_and_variables_exist_after_construction():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        discriminators = Discriminators.from_params(SMALL)
        assert discriminators.trainable_variables  # created by the constructor, before any call
        assert all(v.dtype == "float32" for v in discriminators.variables)
        scores, features = discriminators(tf.constant(_waveforms(1, 2048, seed=8), tf.bfloat16))
        assert all(t.dtype == tf.float32 for t in [*scores, *(f for fs in features for f in fs)])
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_trains_under_a_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        discriminators = Discriminators.from_params(SMALL)
        optimizer = keras.optimizers.Adam(1e-3, beta_1=0.8, beta_2=0.99)
        optimizer.build(discriminators.trainable_variables)
    assert all(isinstance(v.value, tf.distribute.DistributedValues) for v in discriminators.trainable_variables)
    before = [v.numpy().copy() for v in discriminators.trainable_variables]
    real, fake = tf.constant(_waveforms(2, 2048, seed=9)), tf.constant(_waveforms(2, 2048, seed=10))

    def replica_step(real, fake):
        with tf.GradientTape() as tape:
            loss = adversarial.discriminator_loss(discriminators(real)[0], discriminators(fake)[0])
        variables = discriminators.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function
    def step(real, fake):
        return strategy.reduce("MEAN", strategy.run(replica_step, args=(real, fake)), axis=None)

    losses = [float(step(real, fake)) for _ in range(3)]
    assert all(np.isfinite(losses))
    after = [v.numpy() for v in discriminators.trainable_variables]
    assert all(np.any(a != b) for a, b in zip(after, before))


def test_checkpoint_round_trip(tmp_path):
    x = tf.constant(_waveforms(1, 2048, seed=11))
    trained = Discriminators.from_params(SMALL)
    path = tf.train.Checkpoint(discriminators=trained).write(str(tmp_path / "ckpt"))
    fresh = Discriminators.from_params(SMALL)
    tf.train.Checkpoint(discriminators=fresh).read(path).assert_consumed()
    for a, b in zip(trained(x)[0], fresh(x)[0]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
