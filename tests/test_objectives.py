"""Objectives beside the likelihood: spectral losses against NumPy, gradients through the reverse
pass against finite differences, the composed objective, learning-rate rules, the divergence guard,
and the discriminators' warm-up, checkpoint and resume in the trainer."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf
from test_training import FRAMES, clips, stream_fn, tiny_params, variables_by_path

import tfwaveglow
from tfwaveglow import training
from tfwaveglow.audio import mel_spectrogram
from tfwaveglow.objectives import spectral
from tfwaveglow.objectives.composite import TrainingObjective
from tfwaveglow.training.guards import DivergenceGuard, LearningRateScale, PlateauRule

# Resolutions that fit the tiny model's 1024-sample segments (FFT / hop / window).
SMALL_STFT = {
    "spectral__fft_sizes": [256, 512, 128],
    "spectral__hop_sizes": [32, 64, 16],
    "spectral__win_lengths": [128, 256, 64],
}
SMALL_DISCRIMINATORS = {
    "adversarial__mrd_fft_sizes": [128, 256],
    "adversarial__mrd_hop_sizes": [32, 64],
    "adversarial__mrd_win_lengths": [128, 256],
    "adversarial__mpd_periods": [2, 3],
    "adversarial__mpd_channels": [4, 8],
}
SPECTRAL = {"loss__nll": 0.1, "loss__stft": 1.0, "loss__mel": 1.0, **SMALL_STFT}
ADVERSARIAL = {**SPECTRAL, "loss__adv": 0.1, "loss__fm": 0.2, **SMALL_DISCRIMINATORS}


# ----------------------------------------------------------------------------- NumPy references
def numpy_magnitude(audio, fft_size, hop, win, floor=1e-7):
    """|STFT| of centred frames (reflect padding), SciPy's periodic Hann zero-padded to the FFT size."""
    window = np.zeros(fft_size)
    left = (fft_size - win) // 2
    window[left : left + win] = scipy.signal.get_window("hann", win, fftbins=True)
    padded = np.pad(audio.astype(np.float64), [(0, 0), (fft_size // 2, fft_size // 2)], mode="reflect")
    count = 1 + (padded.shape[1] - fft_size) // hop
    frames = np.stack([padded[:, i * hop : i * hop + fft_size] for i in range(count)], axis=1)
    spectrum = np.fft.rfft(frames * window, axis=-1)
    return np.sqrt(np.maximum(np.abs(spectrum) ** 2, floor))


def numpy_stft_loss(real, fake, resolutions):
    sc, mag = [], []
    for fft_size, hop, win in resolutions:
        r, f = numpy_magnitude(real, fft_size, hop, win), numpy_magnitude(fake, fft_size, hop, win)
        sc.append(np.mean(np.sqrt(np.sum((r - f) ** 2, axis=(1, 2))) / np.sqrt(np.sum(r**2, axis=(1, 2)))))
        mag.append(np.mean(np.abs(np.log(r) - np.log(f))))
    return np.mean(sc) + np.mean(mag), np.mean(sc), np.mean(mag)


def speechlike(n, length, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 22050
    tone = np.sin(2 * np.pi * rng.uniform(100, 300, (n, 1)) * t) * 0.3
    return (tone + 0.05 * rng.standard_normal((n, length))).astype(np.float32)


# ----------------------------------------------------------------------------- spectral losses
def test_multi_resolution_stft_loss_matches_numpy():
    real, fake = speechlike(2, 3000, 0), speechlike(2, 3000, 1)
    resolutions = [(1024, 120, 600), (2048, 240, 1200), (512, 50, 240)]
    terms = spectral.multi_resolution_stft_loss(real, fake, *zip(*resolutions))
    total, sc, mag = numpy_stft_loss(real, fake, resolutions)
    assert float(terms["loss/stft"]) == pytest.approx(total, rel=1e-4)
    assert float(terms["loss/stft_sc"]) == pytest.approx(sc, rel=1e-4)
    assert float(terms["loss/stft_mag"]) == pytest.approx(mag, rel=1e-4)
    same = spectral.multi_resolution_stft_loss(real, real, *zip(*resolutions))
    assert float(same["loss/stft"]) == 0.0


def test_log_mel_l1_matches_the_front_end_of_preprocessing():
    """The differentiable log-mel equals tfwaveglow.audio.mel_spectrogram (NumPy, float64) where it matters."""
    params = tfwaveglow.load_params(None)
    real, fake = speechlike(2, 5000, 2), speechlike(2, 5000, 3)
    ours = spectral.log_mel(real, params.audio).numpy()
    reference = np.stack([mel_spectrogram(x, params.audio) for x in real])
    np.testing.assert_allclose(ours, reference, atol=2e-3)
    expected = np.mean(np.abs(reference - np.stack([mel_spectrogram(x, params.audio) for x in fake])))
    assert float(spectral.log_mel_l1(real, fake, params.audio)) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("term,level", [("stft", 0.0), ("stft", 1e-6), ("mel", 0.0), ("mel", 1e-3)])
def test_spectral_losses_have_gradients_on_silence(term, level):
    """The power floors keep the square root differentiable on silent and near-silent output.

    Exactly silent output has a zero gradient (the power is quadratic in it). The log-mel's own
    clamp (mel at 1e-5) leaves output under it without a gradient, as in every front end that clamps.
    """
    params = tfwaveglow.load_params(None)
    fake = tf.Variable(level * np.random.default_rng(0).standard_normal((1, 2048)).astype(np.float32))
    real = speechlike(1, 2048, 4)
    with tf.GradientTape() as tape:
        if term == "stft":
            loss = spectral.multi_resolution_stft_loss(real, fake, [512], [128], [512])["loss/stft"]
        else:
            loss = spectral.log_mel_l1(real, fake, params.audio)
    grad = tape.gradient(loss, fake).numpy()
    assert np.all(np.isfinite(grad))
    assert np.any(grad != 0) == (level > 0)


# ----------------------------------------------------------------------------- gradients through infer
def tiny_model(**overrides):
    params = tiny_params(**overrides)
    model = tfwaveglow.WaveGlow.from_params(params, weight_norm=False)
    mel, _ = clips(2)
    model.forward(mel, np.zeros((2, 1024), np.float32))  # builds the variables
    rng = np.random.default_rng(0)
    # Non-zero end layers (a fresh WN's are zero), so every weight shapes the output.
    for v in model.trainable_variables:
        if np.all(v.numpy() == 0):
            v.assign(0.05 * rng.standard_normal(v.shape).astype(np.float32))
    return params, model, mel


@pytest.mark.parametrize("loss", ["weighted_sum", "spectral"])
def test_gradient_through_infer_matches_finite_differences(loss):
    """The tape's gradient of a loss on ``infer``'s output against central differences, per variable.

    ``spectral`` is the spectral convergence plus the log-mel L1; the log-magnitude L1 is left
    out because near-empty bins make its finite differences at float32 steps meaningless.
    """
    params, model, mel = tiny_model(**SMALL_STFT)
    z = tf.random.stateless_normal(model.latent_shape(mel), seed=[1, 2])
    rng = np.random.default_rng(1)
    weights = tf.constant(rng.standard_normal((2, FRAMES * 256)).astype(np.float32))
    target = speechlike(2, FRAMES * 256, 5)
    s = params.spectral

    def objective():
        x = model.infer(mel, sigma=0.6, z=z)
        if loss == "weighted_sum":
            return tf.reduce_sum(weights * x)
        terms = spectral.multi_resolution_stft_loss(target, x, s.fft_sizes, s.hop_sizes, s.win_lengths)
        return terms["loss/stft_sc"] + spectral.log_mel_l1(target, x, params.audio)

    with tf.GradientTape() as tape:
        value = objective()
    grads = tape.gradient(value, model.trainable_variables)
    checked = 0
    for var, grad in zip(model.trainable_variables, grads):
        assert grad is not None, var.path
        flat = np.abs(grad.numpy()).ravel()
        index = np.unravel_index(int(np.argmax(flat)), var.shape)  # the most sensitive entry of each variable
        if flat.max() < 1e-3:
            continue
        original = var.numpy()
        eps = 1e-2 * max(1.0, abs(float(original[index])))
        values = []
        for sign in (1, -1):
            shifted = original.copy()
            shifted[index] += sign * eps
            var.assign(shifted)
            values.append(float(objective()))
        var.assign(original)
        numeric = (values[0] - values[1]) / (2 * eps)
        assert float(grad.numpy()[index]) == pytest.approx(numeric, rel=5e-2, abs=1e-3), var.path
        checked += 1
    assert checked >= len(model.trainable_variables) // 2


# ----------------------------------------------------------------------------- the composed objective
def test_default_weights_are_the_nll_alone():
    params, model, mel = tiny_model()
    _, audio = clips(2)
    objective = TrainingObjective(params)
    assert not objective.uses_reverse_pass and objective.mode_for_step(0) == "nll"
    terms = objective(model, mel, audio, mode="nll")
    nll = float(tfwaveglow.nll_loss(model.forward(mel, audio)))
    assert float(terms["loss/total"]) == float(terms["loss/nll"]) == pytest.approx(nll, rel=1e-6)
    assert not any(k in terms for k in ("loss/stft", "loss/mel", "loss/adv"))


def test_weighted_terms_sum_to_the_objective():
    params, model, mel = tiny_model(loss__nll=0.3, loss__stft=2.0, loss__mel=0.5, **SMALL_STFT)
    _, audio = clips(2)
    z = tf.random.stateless_normal(model.latent_shape(mel), seed=[3, 4])
    terms = TrainingObjective(params)(model, mel, audio, mode="reverse", z=z)
    expected = 0.3 * terms["loss/nll"] + 2.0 * terms["loss/stft"] + 0.5 * terms["loss/mel"]
    assert float(terms["objective/generator"]) == pytest.approx(float(expected), rel=1e-6)
    fake = model.infer(mel, sigma=params.spectral.sigma, z=z)[:, :1024].numpy()
    s = params.spectral
    reference, _, _ = numpy_stft_loss(audio, fake, list(zip(s.fft_sizes, s.hop_sizes, s.win_lengths)))
    assert float(terms["loss/stft"]) == pytest.approx(reference, rel=1e-3)


def test_every_kth_step_and_the_adversarial_warm_up_and_ramp():
    params = tiny_params(spectral__every=3, adversarial__warmup_steps=4, adversarial__ramp_steps=4, **ADVERSARIAL)
    objective = TrainingObjective(params, discriminators=object())
    modes = [objective.mode_for_step(k) for k in range(10)]
    assert modes == ["discriminator", "nll", "nll", "discriminator", "nll", "nll", "reverse", "nll", "nll", "reverse"]
    assert [objective.adversarial_scale(k) for k in range(3, 10)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="needs discriminators"):
        TrainingObjective(params)


# ----------------------------------------------------------------------------- learning-rate rules
@pytest.mark.parametrize("schedule", ["exponential", "cosine"])
def test_decay_over_the_cpu_budget_and_the_scale(schedule):
    lr = training.TrainLearningRate(
        2e-4, schedule, warmup_steps=10, decay_rate=0.05, decay_over="cpu_budget", budget_seconds=3600.0
    )
    clock, scale = tf.Variable(0.0, dtype=tf.float64), tf.Variable(1.0)
    lr.clock, lr.scale = clock, scale
    for seconds, step, factor in [(0, 0, 1.0), (900, 50, 1.0), (1800, 500, 0.5), (3600, 900, 0.25), (5000, 950, 1.0)]:
        clock.assign(seconds)
        scale.assign(factor)
        u = min(seconds / 3600, 1.0) if schedule == "cosine" else seconds / 3600
        decay = 0.05**u if schedule == "exponential" else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * u))
        warm = min(1.0, (step + 1) / 10)
        assert float(lr(step)) == pytest.approx(2e-4 * warm * decay * factor, rel=1e-5)
    with pytest.raises(ValueError, match="budget_seconds"):
        training.TrainLearningRate(1e-4, "cosine", decay_over="cpu_budget")
    with pytest.raises(tfwaveglow.ConfigError, match="cpu_budget needs train.cpu_seconds_budget"):
        tiny_params(train__lr_decay_over="cpu_budget")


def test_plateau_rule_lowers_the_scale_after_patience_validations_without_gain():
    scale = LearningRateScale()
    rule = PlateauRule(patience=2, factor=0.5, min_delta=0.01, metric="loss/mel")
    scores = [1.0, 0.9, 0.895, 0.899, 0.8, 0.85, 0.81, 0.79, 0.795, 0.80]
    lowered = [rule.observe({"loss/mel": s}, scale) for s in scores]
    # Best 1.0 -> 0.9 -> 0.8; 0.79 does not beat 0.8 by more than 0.01, so it counts as no gain.
    assert lowered == [False, False, False, True, False, False, True, False, False, True]
    assert float(scale.value.numpy()) == pytest.approx(0.125)
    assert int(scale.plateau_reductions.numpy()) == 3
    with pytest.raises(KeyError, match="loss/mel"):
        rule.observe({"loss/total": 1.0}, scale)


def test_divergence_guard_flags_spikes_after_its_warm_up_and_keeps_its_levels():
    guard = DivergenceGuard(factor=5.0, decay=0.5, warmup_steps=3, num_modes=2)
    finite = tf.constant(True)
    history = [(1.0, 2.0), (1.2, 2.2), (0.8, 1.8), (1.1, 2.0), (50.0, 2.0), (1.0, 40.0), (1.0, 2.0)]
    spikes = [bool(guard.judge(0, tf.constant(loss), tf.constant(gn), finite)) for loss, gn in history]
    assert spikes == [False, False, False, False, True, True, False]
    # The levels follow the accepted steps only (NumPy replay of the moving averages).
    mean, dev, gn_mean = 1.0, 0.0, 2.0
    for loss, gn in [history[i] for i in (1, 2, 3, 6)]:
        mean, dev, gn_mean = 0.5 * mean + 0.5 * loss, 0.5 * dev + 0.5 * abs(loss - mean), 0.5 * gn_mean + 0.5 * gn
    assert float(guard.loss_mean[0]) == pytest.approx(mean, rel=1e-6)
    assert float(guard.loss_dev[0]) == pytest.approx(dev, rel=1e-6)
    assert float(guard.grad_norm_mean[0]) == pytest.approx(gn_mean, rel=1e-6)
    assert int(guard.count[1]) == 0 and int(guard.spikes.numpy()) == 2
    off = DivergenceGuard(factor=0.0, decay=0.5, warmup_steps=0, num_modes=1)
    assert not bool(off.judge(0, tf.constant(1e9), tf.constant(1e9), finite))


def test_a_forced_blow_up_is_skipped_then_rolled_back_with_a_lower_rate(tmp_path):
    """Steps 7-12 of the first pass see audio 1e4 times louder: the guard skips them, the fifth in a row
    rolls the run back to ckpt-4 with half the rate, and the run goes on to its end on clean data."""
    params = tiny_params(
        train__checkpoint_every=4,
        train__guard_factor=10.0,
        train__guard_warmup_steps=3,
        train__guard_max_skips=5,
        train__guard_lr_factor=0.5,
        train__summary_every=1,
    )
    mel, audio = clips(16)
    clean = stream_fn(mel, audio)
    opened = []

    def dataset_fn(start_step, context=None):
        dataset = clean(start_step, context)
        opened.append(start_step)
        if len(opened) > 1:
            return dataset
        boost = tf.data.Dataset.range(start_step, 10**6).map(
            lambda k: tf.where(tf.logical_and(k >= 6, k < 12), 1e4, 1.0)
        )
        return tf.data.Dataset.zip((dataset, boost)).map(lambda batch, b: (batch[0], batch[1] * tf.cast(b, tf.float32)))

    trainer = training.Trainer(params, tmp_path / "run")
    trainer.restore()
    summary = trainer.fit(dataset_fn, steps=14)
    assert opened == [0, 4]
    assert summary["step"] == 14 and int(trainer.step.numpy()) == 14
    assert int(trainer.lr_scale.rollbacks.numpy()) == 1
    assert float(trainer.lr_scale.value.numpy()) == 0.5
    assert int(trainer.guard.spikes.numpy()) == 0  # restored with ckpt-4, then no more spikes
    assert float(trainer.optimizer.learning_rate) == pytest.approx(0.5 * params.train.learning_rate)
    # The optimizer made steps 1-4 and, after the rollback, 5-14.
    assert int(trainer.optimizer.iterations.numpy()) == 14
    with open(tmp_path / "run" / "metrics.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    assert [int(r["step"]) for r in rows] == list(range(1, 15))
    assert [float(r["rollbacks"]) for r in rows] == [0] * 4 + [1] * 10
    assert all(float(r["lr_scale"]) == 0.5 for r in rows[4:])


def test_a_blow_up_with_nothing_to_roll_back_to_stops(tmp_path):
    params = tiny_params(train__guard_factor=10.0, train__guard_warmup_steps=2, train__guard_max_skips=2)
    mel, audio = clips(8)
    audio[4:] *= 1e5
    batches = tf.data.Dataset.from_tensor_slices((mel.reshape(2, 4, FRAMES, 16), audio.reshape(2, 4, 1024)))
    batches = batches.repeat(1).concatenate(batches.skip(1).repeat(4))
    trainer = training.Trainer(params, tmp_path / "run")
    trainer.restore()
    with pytest.raises(training.NonFiniteTrainingError, match="no checkpoint to roll back to"):
        trainer.fit(training.split_global_batches(lambda start: batches.skip(start)), steps=8)


# ----------------------------------------------------------------------------- the trainer with discriminators
def test_discriminators_warm_up_alone_then_both_sides_learn(tmp_path):
    params = tiny_params(adversarial__warmup_steps=2, adversarial__ramp_steps=2, **ADVERSARIAL)
    trainer = training.Trainer(params, tmp_path / "run")
    trainer.restore()
    mel, audio = clips(4)
    batch = (tf.constant(mel), tf.constant(audio))
    generator = variables_by_path(trainer.model.trainable_variables)
    discriminators = variables_by_path(trainer.discriminators.trainable_variables)
    results = [trainer.train_step(batch) for _ in range(2)]
    assert all(r["applied"] and "grad_norm" not in r and r["disc_grad_norm"] > 0 for r in results)
    for key, value in variables_by_path(trainer.model.trainable_variables).items():
        np.testing.assert_array_equal(value, generator[key], err_msg=key)
    assert any(
        not np.array_equal(v, discriminators[k])
        for k, v in variables_by_path(trainer.discriminators.trainable_variables).items()
    )
    result = trainer.train_step(batch)
    assert result["applied"] and result["grad_norm"] > 0
    for key in ("loss/nll", "loss/stft", "loss/mel", "loss/adv", "loss/fm", "loss/disc"):
        assert np.isfinite(result[key]), key
    # Step 3 is the first of the ramp: adversarial weights at half.
    expected = 0.1 * result["loss/nll"] + result["loss/stft"] + result["loss/mel"]
    expected += 0.5 * (0.1 * result["loss/adv"] + 0.2 * result["loss/fm"])
    assert result["loss/total"] == pytest.approx(expected, rel=1e-5)
    assert int(trainer.discriminator_optimizer.iterations.numpy()) == 3
    assert int(trainer.optimizer.iterations.numpy()) == 1
    assert trainer.trace_count == 2  # one compiled step per mode


@pytest.mark.slow  # about 100 s on a loaded host; CI runs it
def test_resume_with_discriminators_repeats_an_uninterrupted_run_exactly(tmp_path):
    """Deterministic mode: 5 steps straight == 3 steps, then a fresh trainer restores every slot and runs 2."""
    params = tiny_params(
        train__deterministic=True, adversarial__warmup_steps=1, train__guard_factor=10.0, **ADVERSARIAL
    )
    mel, audio = clips(16)

    def run(directory, *stops):
        trainer = None
        for stop in stops:
            trainer = training.Trainer(params, tmp_path / directory)
            trainer.restore()
            trainer.fit(stream_fn(mel, audio), steps=stop)
        return trainer

    straight, resumed = run("straight", 5), run("resumed", 3, 5)
    for a, b in [
        (straight.model.weights, resumed.model.weights),
        (straight.discriminators.weights, resumed.discriminators.weights),
        (straight.discriminator_optimizer.variables, resumed.discriminator_optimizer.variables),
    ]:
        a, b = variables_by_path(a), variables_by_path(b)
        assert a.keys() == b.keys() and a
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for a, b in zip(straight.guard.variables, resumed.guard.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    # The guard judged one warm-up step and four generator steps, each mode on its own levels.
    assert [int(c) for c in straight.guard.count.numpy()] == [0, 4, 1]
    assert int(resumed.discriminator_optimizer.iterations.numpy()) == 5


@pytest.mark.slow  # about 30 s; CI runs it
def test_an_nll_checkpoint_resumes_with_discriminators_added(tmp_path):
    """Discriminators added to a run's config start fresh; the flow and its optimizer resume."""
    mel, audio = clips(8)
    first = training.Trainer(tiny_params(**SMALL_STFT, **SMALL_DISCRIMINATORS), tmp_path / "run")
    first.restore()
    first.fit(stream_fn(mel, audio), steps=2)
    second = training.Trainer(tiny_params(**ADVERSARIAL), tmp_path / "run")
    assert second.restore() == 2
    for key, value in variables_by_path(first.model.weights).items():
        np.testing.assert_array_equal(variables_by_path(second.model.weights)[key], value, err_msg=key)
    second.fit(stream_fn(mel, audio), steps=3)
    assert int(second.discriminator_optimizer.iterations.numpy()) == 1


def test_bfloat16_training_with_every_objective_keeps_float32_variables(tmp_path):
    params = tiny_params(**ADVERSARIAL)
    trainer = training.Trainer(params, tmp_path / "run", mixed_precision="bfloat16")
    try:
        mel, audio = clips(4)
        result = trainer.train_step((tf.constant(mel), tf.constant(audio)))
        assert result["applied"] and all(np.isfinite(result[k]) for k in ("loss/stft", "loss/mel", "loss/adv"))
        assert all(v.dtype == tf.float32 for v in trainer.model.trainable_variables)
        assert all(v.dtype == tf.float32 for v in trainer.discriminators.trainable_variables)
    finally:
        import keras

        keras.mixed_precision.set_global_policy("float32")


def test_a_flow_only_model_warm_starts_a_run_with_a_post_filter(tmp_path):
    """The flow's weights are copied; the fresh post-filter is the identity, so synthesis is unchanged."""
    params, model, mel = tiny_model()
    tfwaveglow.save_model(model, str(tmp_path / "flow_only"), params)
    with_filter = tiny_params(
        model__postfilter__n_layers=2, model__postfilter__n_channels=8, spectral__every=2, **SPECTRAL
    )
    trainer = training.Trainer(with_filter, tmp_path / "run")
    assert trainer.restore(init_from=tmp_path / "flow_only") == 0
    z = tf.random.stateless_normal(model.latent_shape(mel), seed=[5, 6])
    expected = model.infer(mel, z=z).numpy()
    np.testing.assert_allclose(trainer.inference_model().infer(mel, z=z).numpy(), expected, rtol=1e-5, atol=1e-6)
    # The spectral terms train the post-filter (step 0); the likelihood does not reach it (step 1: NLL only).
    mel4, audio = clips(4)
    batch = (tf.constant(mel4), tf.constant(audio))
    before = variables_by_path(trainer.model.postfilter.trainable_variables)
    assert trainer.train_step(batch)["applied"]
    after = variables_by_path(trainer.model.postfilter.trainable_variables)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    flow = variables_by_path(trainer.model.couplings[0].trainable_variables)
    second = trainer.train_step(batch)
    assert second["applied"] and "loss/stft" not in second
    for key, value in variables_by_path(trainer.model.postfilter.trainable_variables).items():
        np.testing.assert_array_equal(value, after[key], err_msg=key)
    moved = variables_by_path(trainer.model.couplings[0].trainable_variables)
    assert any(not np.array_equal(flow[k], moved[k]) for k in flow)


# ----------------------------------------------------------------------------- kill safety and distribution
# The objectives of ADVERSARIAL sized for configs/tiny.yaml's 4096-sample segments, as dotted keys (train.py's
# --params_override): STFT resolutions up to FFT size 1024 (the reflect padding needs more than fft_size // 2
# samples), spectrogram discriminators up to FFT size 512 (the same padding).
TINY_YAML_ADVERSARIAL = {
    "loss.nll": 0.1,
    "loss.stft": 1.0,
    "loss.mel": 1.0,
    "loss.adv": 0.1,
    "loss.fm": 0.2,
    "spectral.fft_sizes": [512, 1024, 256],
    "spectral.hop_sizes": [64, 128, 32],
    "spectral.win_lengths": [256, 512, 128],
    "adversarial.mrd_fft_sizes": [256, 512],
    "adversarial.mrd_hop_sizes": [64, 128],
    "adversarial.mrd_win_lengths": [256, 512],
    "adversarial.mpd_periods": [2, 3],
    "adversarial.mpd_channels": [4, 8],
}
# The distribution tests' 4 steps take every mode: discriminators alone, NLL only, reverse pass, NLL only.
# Every term is a mean over the examples (spectral convergence too, per example), so the replicas' shares
# add up to the global batch's value.
DISTRIBUTED_SCHEDULE = {"spectral.every": 2, "adversarial.warmup_steps": 1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech_dir):
    """The shipped speech clips preprocessed into a training corpus (4 train, 2 valid utterances)."""
    from training_helpers import preprocess_speech

    root = tmp_path_factory.mktemp("corpus")
    preprocess_speech(speech_dir, root)
    return root


@pytest.mark.slow  # about 100 s on a busy 2-core machine; CI runs it
def test_sigkill_with_discriminators_leaves_readable_checkpoints_that_resume_them(tmp_path, corpus):
    """scripts/kill_test.py with every objective on: 4 SIGKILLs at random moments, each followed by a resume;
    the last checkpoint holds the discriminators and their Adam, which stepped once per step of the run."""
    import json
    import os
    import subprocess
    import sys

    from training_helpers import ROOT, slot_checkpoint_keys

    warmup = 2
    overrides = {**TINY_YAML_ADVERSARIAL, "adversarial.warmup_steps": warmup}
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "kill_test.py"),
            "--rounds=4",
            f"--work_dir={tmp_path}",
            f"--corpus={corpus}",
            "--min_delay=6",
            "--max_delay=20",
            *[f"--params_override={k}={json.dumps(v)}" for k, v in overrides.items()],
        ],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"], report
    latest = [r["latest_step"] or 0 for r in report["rounds"]]
    final = report["final"]["latest_step"]
    assert latest == sorted(latest) and final == latest[-1] + 3

    model_dir = report["model_dir"]
    saved = tfwaveglow.load_params(os.path.join(model_dir, "params.yaml"))
    assert (saved.loss.adv, saved.loss.fm, saved.adversarial.warmup_steps) == (0.1, 0.2, warmup)
    ckpt = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert ckpt.endswith(f"ckpt-{final}")
    assert int(tf.train.load_checkpoint(ckpt).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) == final
    # The discriminators and their Adam are in it (their weights saved under the optimizer's
    # _trainable_variables, the shortest path to them: see slot_checkpoint_keys).
    names = {name for name, _ in tf.train.list_variables(ckpt)}
    disc_keys = slot_checkpoint_keys(ckpt, "discriminators")
    assert disc_keys and set(disc_keys) <= names
    assert "discriminator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE" in names
    assert any(n.startswith("discriminator_optimizer/_variables/") for n in names)  # the Adam moments
    # A trainer of the run's config resumes every slot from it (each of its variables matched), its
    # discriminators trained ones. They stepped every step (alone in the warm-up, with the flow after
    # it), the flow only after the warm-up: the optimizers' counts survived every kill and resume.
    resumed = training.Trainer(saved, model_dir)
    assert len(disc_keys) == len(resumed.discriminators.weights)
    fresh = [v.numpy() for v in resumed.discriminators.weights]
    assert resumed.restore() == final
    resumed.run_lock.release()
    moved = [not np.array_equal(v.numpy(), f) for v, f in zip(resumed.discriminators.weights, fresh)]
    assert sum(moved) > len(moved) // 2
    assert int(resumed.discriminator_optimizer.iterations.numpy()) == final - 0
    assert int(resumed.optimizer.iterations.numpy()) == final - warmup


def load_disc(path):
    with np.load(path) as arrays:
        return {k: arrays[k] for k in arrays.files}


@pytest.mark.slow  # about 90 s on a busy 2-core machine; CI runs it
def test_mirrored_with_discriminators_over_two_cpu_devices_matches_one_device(tmp_path):
    """Every objective under MirroredStrategy on two CPU devices: the flow and the discriminators end where
    one device's run from the same weights ends (each replica takes its rows of the step's latent)."""
    import json

    from training_helpers import finish, run_worker

    out = finish(run_worker(["mirrored", str(tmp_path), "objectives"]), timeout=420)
    assert "replicas 2" in out
    for prefix in ("weights", "disc"):
        mirrored = load_disc(tmp_path / f"{prefix}_mirrored.npz")
        single = load_disc(tmp_path / f"{prefix}_default.npz")
        initial = load_disc(tmp_path / f"{prefix}_initial.npz")
        assert mirrored.keys() == single.keys() == initial.keys() and single
        moved = 0
        for key in single:
            np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
            moved += not np.array_equal(single[key], initial[key])
        assert moved > len(single) // 2, f"training must have changed the {prefix}"
    with open(tmp_path / "summaries.json", encoding="utf-8") as f:
        summaries = json.load(f)
    for split in ("train", "valid"):
        mirrored, single = summaries["mirrored"][split], summaries["default"][split]
        assert mirrored.keys() == single.keys()
        assert "loss/mel" in single
        for key in single:
            assert mirrored[key] == pytest.approx(single[key], rel=1e-5, abs=1e-5), (split, key)
    assert {"loss/adv", "loss/fm", "loss/disc"} <= summaries["default"]["train"].keys()


@pytest.mark.slow  # about 2 minutes on a busy 2-core machine; CI runs it
def test_multi_worker_with_discriminators_over_loopback_trains_identical_workers(tmp_path, corpus):
    """Every objective on two workers over loopback, each reading its half of every global batch: both end
    with the same flow and discriminators, and those of one process that trains on the whole batches."""
    import json
    import os

    from training_helpers import finish, free_ports, run_worker, slot_checkpoint_keys

    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = [
        run_worker(
            ["multi_worker", str(tmp_path), str(corpus), "objectives"],
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    outputs = [finish(w, timeout=540) for w in workers]
    assert all("replicas 2" in out for out in outputs)
    for prefix in ("weights", "disc"):
        w0, w1 = load_disc(tmp_path / f"{prefix}_worker0.npz"), load_disc(tmp_path / f"{prefix}_worker1.npz")
        single = load_disc(tmp_path / f"{prefix}_single.npz")
        assert w0.keys() == w1.keys() == single.keys() and single
        for key in w0:
            np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
            np.testing.assert_allclose(w0[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # Only the chief wrote the checkpoint; it holds the discriminators and their optimizer.
    run_dir = tmp_path / "run_multi_worker"
    ckpt = tf.train.latest_checkpoint(run_dir / "checkpoints")
    assert ckpt.endswith("ckpt-4")
    names = {name for name, _ in tf.train.list_variables(ckpt)}
    disc_keys = slot_checkpoint_keys(ckpt, "discriminators")
    assert len(disc_keys) == len(load_disc(tmp_path / "disc_worker0.npz")) and set(disc_keys) <= names
    assert "discriminator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE" in names
    assert not any(name.startswith(".worker_") for name in os.listdir(run_dir))


def test_validation_reports_the_spectral_terms_from_fixed_latents(tmp_path):
    from tfwaveglow.training.trainer import _VALID_LATENT_SEED

    params = tiny_params(**SPECTRAL)
    trainer = training.Trainer(params, tmp_path / "run")
    mel, audio = clips(2, seed=7)
    valid = tf.data.Dataset.from_tensor_slices((mel, audio)).batch(1)
    first, again = trainer.evaluate(valid), trainer.evaluate(valid)
    assert first == again  # the same latents every validation
    assert first["loss/total"] == first["loss/nll"]
    assert first["loss/spectral"] == pytest.approx(first["loss/stft"] + first["loss/mel"], rel=1e-6)
    # loss/mel against the NumPy front end of preprocessing, clip by clip.
    expected = []
    for i in range(2):
        fake = trainer.model.infer(mel[i : i + 1], sigma=params.spectral.sigma, seed=_VALID_LATENT_SEED)[0, :1024]
        a, b = mel_spectrogram(audio[i], params.audio), mel_spectrogram(fake.numpy(), params.audio)
        expected.append(np.mean(np.abs(a - b)))
    assert first["loss/mel"] == pytest.approx(np.mean(expected), rel=2e-3)
