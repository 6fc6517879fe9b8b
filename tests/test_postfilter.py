"""The WG-WaveNet-style post-filter: the layer against NumPy, its place in the model, weights, windows, exports."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from export_helpers import ROOT, synthesize_in_fresh_process

import tfwaveglow
from tfwaveglow import synthesis
from tfwaveglow.layers import PostFilter
from tfwaveglow.model import count_parameters, multiply_adds_per_sample
from tfwaveglow.model_io import ModelLoadError

TINY_YAML = os.path.join(ROOT, "configs", "tiny.yaml")
POSTFILTER = {"model.postfilter.n_layers": 2, "model.postfilter.n_channels": 8}
HOP, N_GROUP, N_MEL = 256, 8, 80  # tiny.yaml keeps params.yaml's hop, group and mel bins


def pf_params(**overrides):
    return tfwaveglow.load_params(TINY_YAML, overrides={**POSTFILTER, **overrides})


def flow_params(**overrides):
    return tfwaveglow.load_params(TINY_YAML, overrides=overrides)


def randomize_ends(model, seed):
    """Random WN ``end``s (the couplings mix their neighbours) and a random post-filter ``end`` (not the identity)."""
    rng = np.random.default_rng(seed)
    for coupling in model.couplings:
        end = coupling.wn.end
        end.assign_kernel(rng.normal(0.0, 0.3, end.kernel.shape), rng.normal(0.0, 0.3, end.bias.shape))
    if model.postfilter is not None:
        end = model.postfilter.end
        end.assign_kernel(rng.normal(0.0, 0.3, end.effective_kernel().shape), rng.normal(0.0, 0.05, [1]))
    return model


def pf_model(seed=0, weight_norm=False, params=None):
    keras.utils.set_random_seed(seed)
    model = tfwaveglow.WaveGlow.from_params(params or pf_params(), weight_norm=weight_norm)
    return randomize_ends(model, seed)


def random_inputs(rng, frames, batch=1):
    mel = rng.normal(-6.0, 2.0, (batch, frames, N_MEL)).astype(np.float32)
    z = rng.standard_normal((batch, frames * HOP // N_GROUP, N_GROUP)).astype(np.float32)
    return mel, z


# ---------------------------------------------------------------------- the layer
def numpy_postfilter(audio, weights, n_layers, kernel_size):
    """The post-filter's formula in float64 NumPy, taps read explicitly from a zero-padded copy.

    Args:
      audio: ``[B, T]``.
      weights: ``{name: (kernel, bias)}`` for ``start``, ``in_layers_i``, ``res_skip_layers_i``, ``end``.
    """
    audio = audio.astype(np.float64)
    steps = audio.shape[1]
    kernel, bias = weights["start"]
    x = audio[:, :, None] @ kernel + bias  # [B, T, C]
    channels = x.shape[-1]
    skips = 0.0
    for i in range(n_layers):
        dilation = 2**i
        kernel, bias = weights[f"in_layers_{i}"]  # [k, C, 2C]
        half = dilation * (kernel_size - 1) // 2
        padded = np.pad(x, ((0, 0), (half, half), (0, 0)))
        # Output t, tap j reads x[t + dilation * (j - (k - 1) / 2)] = padded[t + dilation * j].
        acts = bias + sum(padded[:, dilation * j : dilation * j + steps] @ kernel[j] for j in range(kernel_size))
        gated = np.tanh(acts[..., :channels]) / (1.0 + np.exp(-acts[..., channels:]))
        kernel, bias = weights[f"res_skip_layers_{i}"]
        res_skip = gated @ kernel + bias
        if i < n_layers - 1:
            x = x + res_skip[..., :channels]
            skips = skips + res_skip[..., channels:]
        else:
            skips = skips + res_skip
    kernel, bias = weights["end"]
    return audio + (skips @ kernel + bias)[..., 0]


def randomized_layer(rng, n_layers, n_channels, kernel_size, mode="time_to_batch", weight_norm=False):
    """A built PostFilter with every weight random (``end`` too) and those weights as float64 arrays."""
    layer = PostFilter(n_layers, n_channels, kernel_size, dilated_conv=mode, weight_norm=weight_norm)
    layer.build(None)
    sublayers = {"start": layer.start, "end": layer.end}
    for i in range(n_layers):
        sublayers[f"in_layers_{i}"] = layer.in_layers[i]
        sublayers[f"res_skip_layers_{i}"] = layer.res_skip_layers[i]
    weights = {}
    for name, sub in sublayers.items():
        shape = tuple(sub.effective_kernel().shape)
        kernel = rng.normal(0.0, 0.5, shape).astype(np.float32)
        bias = rng.normal(0.0, 0.2, shape[-1]).astype(np.float32)
        sub.assign_kernel(kernel, bias)
        weights[name] = (sub.effective_kernel().numpy().astype(np.float64), bias.astype(np.float64))
    return layer, weights


@pytest.mark.parametrize(
    "mode, kernel_size, weight_norm",
    [
        ("time_to_batch", 3, False),
        ("time_to_batch", 5, True),
        ("shifted_matmul", 3, False),
        ("phase_conv2d", 3, False),
    ],
)
def test_layer_equals_numpy_reference(mode, kernel_size, weight_norm):
    rng = np.random.default_rng(1)
    n_layers, channels = 3, 4
    layer, weights = randomized_layer(rng, n_layers, channels, kernel_size, mode, weight_norm)
    audio = rng.uniform(-1.0, 1.0, (2, 37)).astype(np.float32)  # 37: not a multiple of any dilation
    got = layer(tf.constant(audio)).numpy()
    expected = numpy_postfilter(audio, weights, n_layers, kernel_size)
    assert got.shape == audio.shape and got.dtype == np.float32
    assert np.max(np.abs(expected - audio)) > 0.1  # the correction is substantial
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


def test_a_single_layer_and_a_signal_shorter_than_the_taps():
    rng = np.random.default_rng(2)
    layer, weights = randomized_layer(rng, 1, 3, 3)
    for steps in (1, 2, 9):
        audio = rng.uniform(-1.0, 1.0, (1, steps)).astype(np.float32)
        np.testing.assert_allclose(layer(audio).numpy(), numpy_postfilter(audio, weights, 1, 3), atol=2e-5)


def test_fresh_postfilter_is_the_identity():
    keras.utils.set_random_seed(3)
    layer = PostFilter(4, 8, 3)
    audio = np.random.default_rng(3).uniform(-1.0, 1.0, (2, 100)).astype(np.float32)
    np.testing.assert_array_equal(layer(audio).numpy(), audio)
    assert np.all(layer.end.effective_kernel().numpy() == 0) and np.all(layer.end.bias.numpy() == 0)
    assert np.any(layer.in_layers[0].effective_kernel().numpy() != 0)  # only end starts at zero


def test_receptive_field_is_measured():
    """Perturbing input sample t0 changes exactly outputs t0 - P .. t0 + P, P = (k - 1) / 2 (2^L - 1)."""
    rng = np.random.default_rng(4)
    layer, _ = randomized_layer(rng, 4, 4, 5)
    assert layer.context == 2 * 15 and layer.receptive_field == (5 - 1) * (2**4 - 1) + 1
    audio = rng.uniform(-1.0, 1.0, (1, 200)).astype(np.float32)
    t0 = 100
    perturbed = audio.copy()
    perturbed[0, t0] += 0.5
    changed = np.flatnonzero(np.abs(layer(perturbed).numpy() - layer(audio).numpy())[0] > 1e-7)
    assert changed.min() == t0 - layer.context and changed.max() == t0 + layer.context


def test_network_follows_the_compute_dtype_and_the_sum_stays_float32():
    rng = np.random.default_rng(5)
    layer, _ = randomized_layer(rng, 3, 8, 3)
    audio = tf.constant(rng.uniform(-1.0, 1.0, (1, 300)).astype(np.float32))
    full = layer.call(audio).numpy()
    half = layer.call(audio, compute_dtype=tf.bfloat16)
    assert half.dtype == tf.float32
    error = np.max(np.abs(half.numpy() - full))
    assert 0 < error < 0.05  # bfloat16 rounding of the correction only
    graph = tf.function(lambda a: layer.call(a, compute_dtype=tf.bfloat16)).get_concrete_function(audio).graph
    products = {op.get_attr("T") for op in graph.get_operations() if op.type == "MatMul"}
    assert products == {tf.bfloat16}


def test_even_kernel_and_no_layers_are_refused():
    with pytest.raises(ValueError, match="odd"):
        PostFilter(2, 8, 4)
    with pytest.raises(ValueError, match="n_layers >= 1"):
        PostFilter(0, 8, 3)


# ---------------------------------------------------------------------- in the model
def test_infer_is_the_flow_then_the_postfilter():
    model = pf_model(seed=6)
    rng = np.random.default_rng(6)
    mel, z = random_inputs(rng, 12, batch=2)
    flow = model.infer(mel, 0.7, z=z, apply_postfilter=False)
    expected = model.postfilter(flow).numpy()
    np.testing.assert_array_equal(model.infer(mel, 0.7, z=z).numpy(), expected)
    assert np.max(np.abs(expected - flow.numpy())) > 0.05
    # The compiled path and composed conditioning apply it too.
    compiled = model.infer_function()(tf.constant(mel), tf.constant(0.7), tf.constant(z)).numpy()
    np.testing.assert_allclose(compiled, expected, atol=1e-5)
    composed = model.infer(mel, 0.7, z=z, conditioning=model.compose_conditioning()).numpy()
    np.testing.assert_allclose(composed, expected, atol=1e-4)


def test_forward_ignores_the_postfilter():
    """The likelihood is the flow's: the same as a flow-only model's, and no gradient reaches the post-filter."""
    model = pf_model(seed=7)
    flow_only = tfwaveglow.WaveGlow.from_params(flow_params())
    flow_only.copy_weights_from(model, flow_only=True)
    rng = np.random.default_rng(7)
    mel, _ = random_inputs(rng, 4)
    audio = tf.constant(rng.uniform(-0.5, 0.5, (1, 4 * HOP)).astype(np.float32))
    with tf.GradientTape() as tape:
        out = model.forward(mel, audio)
        loss = tf.reduce_sum(out["z"] ** 2) - out["log_s_sum"]
    reference = flow_only.forward(mel, audio)
    np.testing.assert_array_equal(out["z"].numpy(), reference["z"].numpy())
    grads = tape.gradient(loss, model.postfilter.trainable_variables)
    assert grads and all(g is None for g in grads)


def test_warm_start_from_a_flow_only_model_synthesises_as_before():
    flow_only = randomize_ends(tfwaveglow.WaveGlow.from_params(flow_params()), 8)
    keras.utils.set_random_seed(8)
    model = tfwaveglow.WaveGlow.from_params(pf_params())  # a fresh post-filter
    with pytest.raises(ValueError, match="architectures differ"):
        model.copy_weights_from(flow_only)
    model.copy_weights_from(flow_only, flow_only=True)
    mel, z = random_inputs(np.random.default_rng(8), 6)
    np.testing.assert_array_equal(model.infer(mel, 0.6, z=z).numpy(), flow_only.infer(mel, 0.6, z=z).numpy())


def test_flow_only_models_are_described_as_before():
    flow_only = tfwaveglow.WaveGlow.from_params(flow_params())
    assert flow_only.postfilter is None and flow_only.postfilter_receptive_field() == 0
    assert not any(k.startswith("postfilter") for k in flow_only.architecture())
    assert not any(name.startswith("postfilter") for name in flow_only.named_layers())
    model = tfwaveglow.WaveGlow.from_params(pf_params())
    arch = model.architecture()
    assert (arch["postfilter_n_layers"], arch["postfilter_n_channels"], arch["postfilter_kernel_size"]) == (2, 8, 3)
    assert {k: v for k, v in arch.items() if not k.startswith("postfilter")} == flow_only.architecture()
    assert tfwaveglow.WaveGlow.from_config(model.get_config()).architecture() == arch


def test_parameter_and_multiply_add_counts():
    layers, channels, k = 2, 8, 3
    model = tfwaveglow.WaveGlow.from_params(pf_params())
    flow_only = tfwaveglow.WaveGlow.from_params(flow_params())
    c = channels
    weights = 2 * c + layers * (k * c * 2 * c + 2 * c) + (layers - 1) * (2 * c * c + 2 * c) + (c * c + c) + (c + 1)
    assert count_parameters(model) - count_parameters(flow_only) == weights
    macs = c + layers * 2 * k * c * c + (layers - 1) * 2 * c * c + c * c + c
    assert multiply_adds_per_sample(model) - multiply_adds_per_sample(flow_only) == pytest.approx(macs)
    assert model.postfilter.multiply_adds_per_sample() == macs


def test_mixed_precision_runs_the_postfilter_in_the_mels_dtype():
    model = pf_model(seed=9)
    mel, z = random_inputs(np.random.default_rng(9), 8)
    full = model.infer(mel, 0.6, z=z).numpy()
    half = model.infer(tf.cast(mel, tf.bfloat16), 0.6, z=z)
    assert half.dtype == tf.float32
    snr = 10 * np.log10(np.sum(full**2) / np.sum((full - half.numpy()) ** 2))
    assert 15 < snr < 80


# ---------------------------------------------------------------------- weights on disk
def test_save_and_load_round_trip(tmp_path):
    params = pf_params()
    model = pf_model(seed=10)
    tfwaveglow.save_model(model, tmp_path / "m", params)
    with np.load(tmp_path / "m" / "weights.npz") as data:
        assert {"postfilter.end.kernel", "postfilter.in_layers.1.kernel", "postfilter.res_skip_layers.0.bias"} <= set(
            data.files
        )
    loaded = tfwaveglow.load_model(tmp_path / "m")
    assert loaded.architecture() == model.architecture()
    mel, z = random_inputs(np.random.default_rng(10), 6)
    np.testing.assert_array_equal(loaded.infer(mel, 0.6, z=z).numpy(), model.infer(mel, 0.6, z=z).numpy())

    # The weights do not fit a flow-only config, nor a post-filter of another width.
    with pytest.raises(ModelLoadError, match="unused.*postfilter"):
        tfwaveglow.load_model(tmp_path / "m", params=flow_params())
    with pytest.raises(ModelLoadError, match="postfilter.*has shape"):
        tfwaveglow.load_model(tmp_path / "m", params=pf_params(**{"model.postfilter.n_channels": 4}))
    with pytest.raises(ModelLoadError, match="postfilter_n_layers"):
        tfwaveglow.save_model(model, tmp_path / "other", flow_params())


def test_weight_norm_checkpoint_loads_folded(tmp_path):
    params = pf_params()
    model = pf_model(seed=11, weight_norm=True)
    assert model.postfilter.in_layers[0].weight_norm and not model.postfilter.end.weight_norm
    tfwaveglow.save_params(params, tmp_path / "params.yaml")
    tf.train.Checkpoint(model=model).save(str(tmp_path / "checkpoints" / "ckpt"))
    loaded = tfwaveglow.load_model(tmp_path)
    assert not loaded.weight_norm
    mel, z = random_inputs(np.random.default_rng(11), 5)
    expected = model.infer(mel, 0.6, z=z).numpy()
    np.testing.assert_allclose(loaded.infer(mel, 0.6, z=z).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(model.fold_weight_norm().infer(mel, 0.6, z=z).numpy(), expected, atol=1e-5)


# ---------------------------------------------------------------------- windows
def test_context_includes_the_postfilter():
    # 2 couplings x 3 steps (kernel 3, 2 layers) x 8 = 48 samples; a post-filter of 8 layers reads
    # 255 samples a side = 32 more steps: 304 samples -> 2 frames right, ceil((304 + 256) / 256) - 1 = 2 left.
    assert synthesis.receptive_context_frames(2, 3, 8, 256, 256) == (1, 1)
    assert synthesis.receptive_context_frames(2, 3, 8, 256, 256, postfilter_receptive_field=255) == (2, 2)
    model = tfwaveglow.WaveGlow.from_params(pf_params(**{"model.postfilter.n_layers": 8}))
    assert model.postfilter_receptive_field() == 255
    assert synthesis.context_frames(model) == (2, 2)


def test_windowed_synthesis_equals_one_shot():
    model = pf_model(seed=12)
    engine = synthesis.ModelEngine(model, pf_params(), conditioning="plain")
    mel, z = random_inputs(np.random.default_rng(12), 61)
    left, right = engine.context
    synth = synthesis.Synthesizer(engine, window_frames=left + right + 4, batch_size=3, margin_frames=0)
    assert len(synthesis.plan_windows(61, synth.window_frames, *synth.context)) >= 10
    out = synth.synthesize([mel[0]], sigma=0.7, latents=[z[0]])[0]
    np.testing.assert_allclose(out, model.infer(mel, 0.7, z=z).numpy()[0], atol=1e-5, rtol=0)


def test_windows_need_the_postfilters_context():
    """With a post-filter wider than a frame, the flow's context alone leaves seams; the full context does not."""
    params = pf_params(**{"model.postfilter.n_layers": 8, "model.postfilter.n_channels": 4})
    model = pf_model(seed=13, params=params)
    # Larger weights than the initial ones, so that samples ~250 away still weigh in.
    rng = np.random.default_rng(13)
    pf = model.postfilter
    for layer in (pf.start, *pf.in_layers, *pf.res_skip_layers, pf.end):
        shape = layer.effective_kernel().shape
        layer.assign_kernel(rng.normal(0.0, 0.5, shape), rng.normal(0.0, 0.1, shape[-1]))
    engine = synthesis.ModelEngine(model, params, conditioning="plain")
    mel, z = random_inputs(np.random.default_rng(13), 40)
    reference = model.infer(mel, 0.7, z=z).numpy()[0]
    synth = synthesis.Synthesizer(engine, window_frames=8, margin_frames=0)
    assert synth.context == (2, 2)
    np.testing.assert_allclose(synth.synthesize([mel[0]], sigma=0.7, latents=[z[0]])[0], reference, atol=1e-5)
    synth.context = synthesis.receptive_context_frames(2, model.receptive_field(), N_GROUP, HOP, 256)  # flow's only
    assert synth.context == (1, 1)
    out = synth.synthesize([mel[0]], sigma=0.7, latents=[z[0]])[0]
    assert np.max(np.abs(out - reference)) > 1e-4  # ten times the tolerance of the full context


# ---------------------------------------------------------------------- exports
def stateless_latent(seed, frames):
    return tf.random.stateless_normal(
        [frames * HOP // N_GROUP, N_GROUP], seed=[seed, 0], alg="philox", dtype=tf.float32
    ).numpy()


def test_serving_module_windows_equal_model_infer(tmp_path):
    """The export's graph (windowed synthesis in a while loop), called in-process without saving."""
    from tfwaveglow.export import WaveGlowServingModule

    params = pf_params()
    model = pf_model(seed=17)
    tfwaveglow.save_params(params, tmp_path / "params.yaml")
    left, right = synthesis.context_frames(model)
    module = WaveGlowServingModule(model, params, str(tmp_path / "params.yaml"), window_frames=left + right + 2 + 3)
    mel, z = random_inputs(np.random.default_rng(17), 23)
    sigma = np.array([0.8], np.float32)
    got = module.synthesize_from_latent(tf.constant(mel), tf.constant(z), tf.constant(sigma))["audio"].numpy()
    np.testing.assert_allclose(got, model.infer(mel, 0.8, z=z).numpy(), atol=1e-5, rtol=0)


@pytest.mark.slow  # about 20 s: the export, and TensorFlow started again in a fresh process
def test_saved_model_in_a_fresh_process_equals_model_infer(tmp_path):
    from tfwaveglow.export import export_saved_model

    params = pf_params()
    model = pf_model(seed=14, weight_norm=True)
    folded = model.fold_weight_norm()
    left, right = synthesis.context_frames(model)
    window = left + right + 2 + 3  # the margin of one frame each side, and three kept frames
    path = export_saved_model(model, params, tmp_path / "waveglow" / "1", window_frames=window)
    rng = np.random.default_rng(14)
    frames = 4 * window + 1
    mel, z = random_inputs(rng, frames, batch=2)
    inputs = {"mel": mel, "z": z, "sigma": np.array([0.6, 0.9], np.float32), "seeds": np.array([3, 4], np.int64)}
    results = synthesize_in_fresh_process(tmp_path, path, inputs)
    expected = folded.infer(mel, inputs["sigma"], z=z).numpy()
    assert np.max(np.abs(expected - folded.infer(mel, inputs["sigma"], z=z, apply_postfilter=False).numpy())) > 0.05
    np.testing.assert_allclose(results["from_latent"], expected, atol=1e-5, rtol=0)
    for i, seed in enumerate(inputs["seeds"]):
        one_shot = folded.infer(mel[i : i + 1], inputs["sigma"][i], z=stateless_latent(int(seed), frames)[None])
        np.testing.assert_allclose(results["seeded"][i], np.clip(one_shot.numpy()[0], -1, 1), atol=1e-5, rtol=0)


@pytest.mark.slow  # about 20 s: two SavedModels
def test_bfloat16_saved_model_is_close_to_float32(tmp_path):
    from tfwaveglow.export import export_saved_model

    model, params = pf_model(seed=15), pf_params()
    f32 = tf.saved_model.load(export_saved_model(model, params, tmp_path / "f32" / "1"))
    bf16 = tf.saved_model.load(export_saved_model(model, params, tmp_path / "bf16" / "1", precision="bfloat16"))
    mel, z = random_inputs(np.random.default_rng(15), 10)
    sigma = np.array([0.6], np.float32)
    a = f32.signatures["synthesize_from_latent"](mel=mel, z=z, sigma=sigma)["audio"].numpy()
    b = bf16.signatures["synthesize_from_latent"](mel=mel, z=z, sigma=sigma)["audio"].numpy()
    np.testing.assert_allclose(a, model.infer(mel, 0.6, z=z).numpy(), atol=1e-5)
    snr = 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2))
    assert 15 < snr < 80


@pytest.mark.slow  # about 10 s: the LiteRT conversion
def test_litert_is_within_1e4_of_model_infer(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from tfwaveglow.export_litert import LITERT_SIGNATURE, export_litert

    params = pf_params()
    model = pf_model(seed=16)
    left, right = synthesis.context_frames(model)
    window = left + right + 2 + 4
    path = export_litert(model, params, tmp_path / "waveglow.tflite", window_frames=window)
    runner = Interpreter(model_path=path).get_signature_runner(LITERT_SIGNATURE)
    rng = np.random.default_rng(16)
    for frames in (5, 4 * window + 3):  # one window, and many
        mel, z = random_inputs(rng, frames)
        audio = runner(mel=mel, z=z, sigma=np.array([0.7], np.float32))["audio"]
        expected = model.infer(mel, 0.7, z=z).numpy()
        assert audio.shape == expected.shape
        assert np.max(np.abs(audio - expected)) < 1e-4, frames
