"""Synthesis: mel input, latents from seeds, receptive-field context, windows, batching."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from synth_helpers import HOP, N_GROUP, N_MEL, random_mel, reference_latent, tiny_model, tiny_params

import tfwaveglow.model
from tfwaveglow import synthesis
from tfwaveglow.synthesis import MelError, ModelEngine, Synthesizer, mel_from_array, plan_windows


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


@pytest.fixture(scope="module")
def engine(model):
    return ModelEngine(model, tiny_params(), conditioning="plain")


def one_shot(model, mel, sigma, z):
    """The reference: one ``infer`` call on the whole mel."""
    return model.infer(mel[None], sigma, z=z[None]).numpy()[0]


# ---------------------------------------------------------------------- mel input
def test_mel_layouts_are_normalised_to_frames_by_channels():
    rng = np.random.default_rng(0)
    mel = random_mel(rng, 7)
    np.testing.assert_array_equal(mel_from_array(mel, N_MEL), mel)
    np.testing.assert_array_equal(mel_from_array(mel.T, N_MEL), mel)  # NVIDIA / Tacotron 2 [n_mel, frames]
    np.testing.assert_array_equal(mel_from_array(mel.T[None], N_MEL), mel)  # with a batch axis of 1
    np.testing.assert_array_equal(mel_from_array(mel.astype(np.float64), N_MEL), mel)
    square = random_mel(rng, N_MEL)
    np.testing.assert_array_equal(mel_from_array(square, N_MEL), square)
    np.testing.assert_array_equal(mel_from_array(square, N_MEL, channels_first=True), square.T)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((20, 79), np.float32), "must have 80 channels"),
        (np.zeros((0, 80), np.float32), "zero frames"),
        (np.zeros((80, 0), np.float32), "zero frames"),
        (np.full((20, 80), np.nan, np.float32), "NaN or Inf"),
        (np.full((20, 80), np.inf, np.float32), "NaN or Inf"),
        (np.zeros((20, 80), np.int16), "floating-point"),
        (np.zeros(80, np.float32), "must be 2-D"),
        (np.zeros((2, 20, 80), np.float32), "must be 2-D"),
    ],
)
def test_bad_mels_are_rejected_with_the_problem_named(array, message):
    with pytest.raises(MelError, match=message) as info:
        mel_from_array(array, N_MEL, source="utt7.npy")
    assert "utt7.npy" in str(info.value)


def test_read_mel_files(tmp_path):
    mel = random_mel(np.random.default_rng(1), 9)
    np.save(tmp_path / "t2.npy", mel.T)
    np.testing.assert_array_equal(synthesis.read_mel(tmp_path / "t2.npy", N_MEL), mel)
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(MelError, match="broken.npy: not a readable .npy"):
        synthesis.read_mel(tmp_path / "broken.npy", N_MEL)
    with pytest.raises(MelError, match="missing.npy: file not found"):
        synthesis.read_mel(tmp_path / "missing.npy", N_MEL)


# ---------------------------------------------------------------------- latent
def test_latent_is_the_documented_stateless_draw(engine):
    synth = Synthesizer(engine, window_frames=24)
    z = synth.latent(seed=1234, frames=11)
    np.testing.assert_array_equal(z, reference_latent(1234, 11))
    assert z.shape == (11 * HOP // N_GROUP, N_GROUP)
    assert abs(float(z.mean())) < 0.2 and abs(float(z.std()) - 1.0) < 0.1
    assert not np.array_equal(z, synth.latent(seed=1235, frames=11))


# ---------------------------------------------------------------------- context
def test_context_frames_of_the_default_model():
    # 12 couplings x 255 group steps (8 layers, kernel 3: 1 + 2 + ... + 128) x 8 samples = 24480 samples;
    # right: ceil(24480 / 256) = 96 frames; left: ceil((24480 + 1024) / 256) - 1 = 99 frames.
    assert synthesis.receptive_context_frames(12, 255, 8, 256, 1024) == (99, 96)
    default = tiny_params(**{"model.wn.n_layers": 8, "model.wn.n_channels": 2, "model.n_flows": 2})
    from tfwaveglow import WaveGlow

    assert WaveGlow.from_params(default).receptive_field() == 255


def test_context_bounds_the_measured_receptive_field(model):
    """Perturb one latent step and one mel frame; only outputs inside the derived context may change."""
    rng = np.random.default_rng(5)
    frames = 60
    mel = random_mel(rng, frames)
    z = rng.standard_normal((frames * HOP // N_GROUP, N_GROUP)).astype(np.float32)
    base = one_shot(model, mel, 1.0, z)
    steps = model.n_flows * model.receptive_field()  # group steps per side

    t0 = z.shape[0] // 2
    z2 = z.copy()
    z2[t0] += 1.0
    changed = np.flatnonzero(np.abs(one_shot(model, mel, 1.0, z2) - base) > 1e-7) // N_GROUP
    assert changed.min() >= t0 - steps and changed.max() <= t0 + steps
    # The couplings stack: the influence reaches well past one coupling's receptive field.
    assert changed.max() - t0 > 2 * model.receptive_field() and t0 - changed.min() > 2 * model.receptive_field()

    f0 = frames // 2
    mel2 = mel.copy()
    mel2[f0] += 1.0
    changed = np.flatnonzero(np.abs(one_shot(model, mel2, 1.0, z) - base) > 1e-7)
    left, right = synthesis.context_frames(model)
    # Frame f0 reaches samples [f0 * hop - steps * g, f0 * hop + kernel + steps * g): an output
    # frame f needs mel frames f - left .. f + right.
    assert changed.min() // HOP >= f0 - right
    assert changed.max() // HOP <= f0 + left
    assert changed.max() // HOP > f0 + left - 2 and changed.min() // HOP < f0 - right + 2


@pytest.mark.parametrize("frames", [1, 23, 24, 25, 61, 200])
def test_windows_tile_the_input_with_full_context(frames):
    left, right, size = 7, 4, 24
    windows = plan_windows(frames, size, left, right)
    assert windows[0].keep_start == 0 and windows[-1].keep_stop == frames
    for a, b in zip(windows, windows[1:]):
        assert a.keep_stop == b.keep_start
    for w in windows:
        assert w.stop - w.start == min(size, frames)
        assert 0 <= w.start <= w.keep_start < w.keep_stop <= w.stop <= frames
        assert w.start == 0 or w.keep_start - w.start >= left
        assert w.stop == frames or w.stop - w.keep_stop >= right


def test_window_must_exceed_the_context(engine):
    left, right = engine.context
    with pytest.raises(ValueError, match="must exceed the model's context"):
        Synthesizer(engine, window_frames=left + right + 2)


# ---------------------------------------------------------------------- long-form and batching
def test_windowed_synthesis_equals_one_shot(model, engine):
    rng = np.random.default_rng(7)
    mel = random_mel(rng, 157)
    z = rng.standard_normal((157 * HOP // N_GROUP, N_GROUP)).astype(np.float32)
    left, right = engine.context
    synth = Synthesizer(engine, window_frames=left + right + 6, batch_size=3, margin_frames=0)
    assert len(plan_windows(157, synth.window_frames, *synth.context)) >= 10  # many seams
    reference = one_shot(model, mel, 0.7, z)
    out = synth.synthesize([mel], sigma=0.7, latents=[z])[0]
    assert out.shape == reference.shape == (157 * HOP,)
    np.testing.assert_allclose(out, reference, atol=1e-4, rtol=0)


def test_composed_conditioning_engine_equals_one_shot_plain_synthesis(model):
    composed = ModelEngine(model, tiny_params(), conditioning="composed")
    assert composed.conditioning == "composed"
    held = sum(int(np.prod(k.shape)) * 4 for flow in composed._composed.kernels for k in flow)
    assert held == tfwaveglow.model.ComposedConditioning.size_bytes(model)
    rng = np.random.default_rng(8)
    mel = random_mel(rng, 61)
    z = rng.standard_normal((61 * HOP // N_GROUP, N_GROUP)).astype(np.float32)
    left, right = composed.context
    synth = Synthesizer(composed, window_frames=left + right + 6, batch_size=2, margin_frames=0)
    out = synth.synthesize([mel], sigma=0.7, latents=[z])[0]
    np.testing.assert_allclose(out, one_shot(model, mel, 0.7, z), atol=1e-4, rtol=0)


def test_auto_conditioning_composes_only_within_the_memory_budget(model, monkeypatch):
    # The composed kernels' size, from the shapes: Q frames x n_mel x (hop / g) phases x 2C, per WN layer.
    p = tiny_params().model
    expected = 4 * (p.upsample_kernel_size // HOP) * N_MEL * (HOP // N_GROUP) * 2 * p.wn.n_channels
    expected *= p.wn.n_layers * p.n_flows
    assert tfwaveglow.model.ComposedConditioning.size_bytes(model) == expected
    monkeypatch.setattr(synthesis, "composed_conditioning_budget", lambda: expected)
    assert ModelEngine(model, tiny_params()).conditioning == "composed"
    monkeypatch.setattr(synthesis, "composed_conditioning_budget", lambda: expected - 1)
    assert ModelEngine(model, tiny_params()).conditioning == "plain"
    with pytest.raises(ValueError, match="conditioning must be one of"):
        ModelEngine(model, tiny_params(), conditioning="fast")


def test_a_context_smaller_than_derived_does_not_match(model, engine):
    """Context from one coupling's receptive field alone (ignoring that couplings stack) leaves seams."""
    rng = np.random.default_rng(8)
    mel = random_mel(rng, 157)
    z = rng.standard_normal((157 * HOP // N_GROUP, N_GROUP)).astype(np.float32)
    one_coupling = synthesis.receptive_context_frames(
        1, model.receptive_field(), N_GROUP, HOP, model.upsample_kernel_size
    )
    assert one_coupling[0] < engine.context[0] and one_coupling[1] < engine.context[1]

    synth = Synthesizer(engine, window_frames=20, margin_frames=0)
    synth.context = one_coupling
    out = synth.synthesize([mel], sigma=0.7, latents=[z])[0]
    assert np.max(np.abs(out - one_shot(model, mel, 0.7, z))) > 1e-3


def test_batched_utterances_of_different_lengths_equal_one_at_a_time(model, engine):
    rng = np.random.default_rng(9)
    lengths = [5, 40, 17, 40, 63, 5, 1, 90]
    mels = [random_mel(rng, n) for n in lengths]
    seeds = [100 + i for i in range(len(mels))]
    sigmas = [0.6, 0.8, 0.5, 0.6, 1.0, 0.6, 0.6, 0.3]
    batched = Synthesizer(engine, window_frames=30, batch_size=5).synthesize(mels, sigma=sigmas, seeds=seeds)
    alone = [
        Synthesizer(engine, window_frames=30, batch_size=1).synthesize([m], sigma=s, seeds=[seed])[0]
        for m, s, seed in zip(mels, sigmas, seeds)
    ]
    for m, s, seed, b, a in zip(mels, sigmas, seeds, batched, alone):
        reference = one_shot(model, m, s, reference_latent(seed, m.shape[0]))
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
        np.testing.assert_allclose(b, reference, atol=1e-4, rtol=0)


def test_same_seed_same_audio_and_explicit_latents(engine):
    rng = np.random.default_rng(10)
    mel = random_mel(rng, 12)
    synth = Synthesizer(engine, window_frames=30)
    a = synth.synthesize([mel], seeds=[42])[0]
    np.testing.assert_array_equal(a, synth.synthesize([mel], seeds=[42])[0])
    assert np.max(np.abs(a - synth.synthesize([mel], seeds=[43])[0])) > 1e-3
    with pytest.raises(ValueError, match="latent 0 must have shape"):
        synth.synthesize([mel], latents=[np.zeros((5, N_GROUP), np.float32)])
    with pytest.raises(ValueError, match="exactly one of seeds and latents"):
        synth.synthesize([mel])
    with pytest.raises(MelError, match="80 channels"):
        synth.synthesize([mel[:, :40]], seeds=[1])


def test_latent_slices_are_what_the_windows_see(engine):
    """Windows of one utterance read one global latent: the output does not depend on the window size."""
    rng = np.random.default_rng(11)
    mel = random_mel(rng, 120)
    outs = [Synthesizer(engine, window_frames=w).synthesize([mel], seeds=[5])[0] for w in (20, 37, 500)]
    np.testing.assert_allclose(outs[0], outs[2], atol=1e-4, rtol=0)
    np.testing.assert_allclose(outs[1], outs[2], atol=1e-4, rtol=0)
    assert tf.reduce_max(tf.abs(outs[2])) > 0.01


def test_default_window_is_512_frames_unless_the_context_needs_longer():
    # NVIDIA's model: 100 + 97 frames of context with the margins; 512 frames keep 315 of them.
    assert synthesis.default_window_frames((100, 97)) == 512
    assert synthesis.default_window_frames((128, 127)) == 512
    # A frame-rate model: 12 couplings x 127 steps of one frame, plus context and margin, each side.
    assert synthesis.default_window_frames((1526, 1526)) == 4 * 3052
    assert synthesis.default_window_frames((128, 128)) == 4 * 256
