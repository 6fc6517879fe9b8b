"""The CPU-efficient options: the ``repeat`` upsampler (frame-rate conditioning) and separable WNs.

Each option is checked against an independent reference (NumPy loops, an
autodiff Jacobian, one-shot synthesis) and through every flow property the
default model has: invertibility, the log-determinant, windowed synthesis,
float16 storage and weight norm folding.
"""

from __future__ import annotations

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from synth_helpers import random_mel
from test_flows import randomize

import tfwaveglow
from tfwaveglow import synthesis
from tfwaveglow.layers import DepthwiseDilatedConv1D, dilated_depthwise_conv1d
from tfwaveglow.layers.dilated_conv import MODES
from tfwaveglow.model_io import load_model, save_model

REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
HOP = 64
# Frame rate (n_group = hop), two steps per frame (hop / 2), and NVIDIA's upsampler with a separable WN.
VARIANTS = {
    "repeat_g64_separable": {"model.n_group": 64, "model.upsampler": "repeat", "model.wn.separable": True},
    "repeat_g32_context0": {"model.n_group": 32, "model.upsampler": "repeat", "model.frame_context": 0},
    "transposed_g8_separable": {"model.wn.separable": True},
}


def variant_params(name, **extra):
    overrides = {
        "audio.hop_length": HOP,
        "audio.filter_length": 256,
        "audio.win_length": 256,
        "model.upsample_stride": HOP,
        "model.upsample_kernel_size": 256,
        "model.n_flows": 4,
        "model.n_early_every": 2,
        "model.n_early_size": 8 if VARIANTS[name].get("model.n_group", 8) > 8 else 2,
        "model.wn.n_layers": 3,
        "model.wn.n_channels": 12,
        **VARIANTS[name],
        **extra,
    }
    return tfwaveglow.load_params(overrides=overrides)


def variant_model(name, seed=0, weight_norm=False, **extra):
    keras.utils.set_random_seed(seed)
    model = tfwaveglow.WaveGlow.from_params(variant_params(name, **extra), weight_norm=weight_norm)
    randomize(model, scale=0.1, seed=seed)
    return model


# ---------------------------------------------------------------------- the layers against NumPy
def numpy_depthwise(x, kernel, dilation):
    """Loops over taps: ``y[b, t, c] = sum_j kernel[j, c] x[b, t + d (j - (k - 1) / 2), c]``, zero outside."""
    batch, time, channels = x.shape
    k = kernel.shape[0]
    y = np.zeros_like(x, dtype=np.float64)
    for t in range(time):
        for j in range(k):
            source = t + dilation * (j - (k - 1) // 2)
            if 0 <= source < time:
                y[:, t, :] += kernel[j] * x[:, source, :]
    return y


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("time, dilation, k", [(17, 1, 3), (17, 4, 3), (9, 8, 3), (5, 16, 5), (30, 3, 5)])
def test_depthwise_dilated_conv_matches_numpy(mode, time, dilation, k):
    rng = np.random.default_rng(time + dilation + k)
    x = rng.standard_normal((2, time, 6)).astype(np.float32)
    kernel = rng.standard_normal((k, 6)).astype(np.float32)
    got = dilated_depthwise_conv1d(tf.constant(x), tf.constant(kernel), dilation, mode).numpy()
    np.testing.assert_allclose(got, numpy_depthwise(x, kernel, dilation), rtol=1e-5, atol=1e-5)


def test_depthwise_gradients_match_between_time_to_batch_and_shifted_sums():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((2, 21, 5)), tf.float32)
    kernel = tf.Variable(rng.standard_normal((3, 5)), dtype=tf.float32)
    grads = []
    for mode in ("time_to_batch", "shifted_matmul"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = dilated_depthwise_conv1d(x, kernel, 4, mode)
            loss = tf.reduce_sum(y * tf.sin(tf.range(21, dtype=tf.float32))[None, :, None])
        grads.append([g.numpy() for g in tape.gradient(loss, [x, kernel])])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_depthwise_layer_weight_norm_normalises_each_channel_over_its_taps():
    layer = DepthwiseDilatedConv1D(4, kernel_size=3, dilation_rate=2, weight_norm=True)
    layer.build(None)
    v = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    layer.kernel_v.assign(v)
    layer.kernel_g.assign(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    expected = v / np.linalg.norm(v, axis=0) * np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(layer.effective_kernel().numpy(), expected, rtol=1e-6)


def test_repeat_condition_stacks_each_steps_frame_window():
    model = variant_model("repeat_g32_context0", **{"model.frame_context": 2})
    rng = np.random.default_rng(2)
    mel = rng.standard_normal((2, 5, 80)).astype(np.float32)
    samples = 4 * HOP + 32  # 9 group steps of 32: frames 0,0,1,1,2,2,3,3,4
    cond = model.condition(tf.constant(mel), samples).numpy()
    assert cond.shape == (2, 9, 5 * 80)
    padded = np.pad(mel, [(0, 0), (2, 2), (0, 0)])
    for t in range(9):
        frame = t * 32 // HOP
        np.testing.assert_array_equal(cond[:, t], padded[:, frame : frame + 5].reshape(2, -1))


def test_repeat_upsampler_has_no_weights_and_separable_wn_its_own_layers():
    model = variant_model("repeat_g64_separable")
    names = model.named_layers()
    assert "upsample" not in names and model.upsample is None
    assert "WN.0.in_pointwise.2" in names
    assert names["WN.0.in_layers.1"].effective_kernel().shape == (3, 12)
    assert model.couplings[0].wn.cond_layer.in_channels == 3 * 80
    with pytest.raises(ValueError, match="transposed_conv"):
        model.compose_conditioning()


def test_separable_wn_equals_its_definition_in_numpy():
    """The WN's regrouped arithmetic against a direct NumPy transcription of the separable layer stack."""
    model = variant_model("transposed_g8_separable", seed=3)
    wn = model.couplings[1].wn
    rng = np.random.default_rng(3)
    audio = rng.standard_normal((1, 11, wn.in_channels)).astype(np.float32)
    spect = rng.standard_normal((1, 11, wn.cond_channels)).astype(np.float32)

    def kb(layer):
        return layer.effective_kernel().numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)

    k, b = kb(wn.start)
    x = audio @ k + b
    cond_k, cond_b = kb(wn.cond_layer)
    cond = spect @ cond_k + cond_b
    c = wn.n_channels
    skips = 0.0
    for i in range(wn.n_layers):
        dk, db = kb(wn.in_layers[i])
        pk, pb = kb(wn.in_pointwise[i])
        acts = (numpy_depthwise(x, dk, 2**i) + db) @ pk + pb + cond[..., 2 * c * i : 2 * c * (i + 1)]
        acts = np.tanh(acts[..., :c]) / (1 + np.exp(-acts[..., c:]))
        rk, rb = kb(wn.res_skip_layers[i])
        res_skip = acts @ rk + rb
        if i < wn.n_layers - 1:
            x = x + res_skip[..., :c]
            skips = skips + res_skip[..., c:]
        else:
            skips = skips + res_skip
    ek, eb = kb(wn.end)
    expected = skips @ ek + eb
    got = wn(tf.constant(audio), tf.constant(spect)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------- flow properties
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_model_inverts(name):
    model = variant_model(name, seed=4, weight_norm=True)
    rng = np.random.default_rng(4)
    frames = 7
    mel = tf.constant(random_mel(rng, frames))[None]
    audio = tf.constant(rng.uniform(-0.9, 0.9, (1, frames * HOP)), tf.float32)
    out = model.forward(mel, audio)
    assert out["z"].shape == (1, frames * HOP // model.n_group, model.n_group)
    assert abs(float(out["log_s_sum"])) > 1e-2
    restored = model.infer(mel, sigma=1.0, z=out["z"])
    np.testing.assert_allclose(restored.numpy(), audio.numpy(), atol=1e-4)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_log_det_matches_autodiff_jacobian(name):
    model = variant_model(name, seed=5, weight_norm=True, **{"model.n_flows": 3, "model.wn.n_channels": 4})
    rng = np.random.default_rng(5)
    frames = 2
    samples = frames * HOP
    mel = tf.constant(rng.standard_normal((1, frames, 80)) * 0.3, tf.float32)
    audio = tf.constant(rng.uniform(-0.5, 0.5, (1, samples)), tf.float32)

    @tf.function
    def forward_and_jacobian(audio):
        with tf.GradientTape() as tape:
            tape.watch(audio)
            out = model.forward(mel, audio)
            z = tf.reshape(out["z"], [-1])
        # One backward pass per output sample: the vectorised (pfor) Jacobian of this model
        # crashes TensorFlow 2.21's oneDNN CPU kernels on AVX-512 hosts (a segmentation fault).
        return out, tape.jacobian(z, audio, experimental_use_pfor=False)

    out, jac = forward_and_jacobian(audio)
    jac = jac.numpy().reshape(samples, samples)
    sign, logabsdet = np.linalg.slogdet(jac.astype(np.float64))
    assert sign != 0
    np.testing.assert_allclose(logabsdet, float(out["log_s_sum"] + out["log_det_w_sum"]), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_context_bounds_the_measured_receptive_field(name):
    """Perturbing one mel frame changes only output frames inside the derived context."""
    model = variant_model(name, seed=6)
    rng = np.random.default_rng(6)
    frames = 40
    mel = random_mel(rng, frames)
    z = rng.standard_normal((1, frames * HOP // model.n_group, model.n_group)).astype(np.float32)
    base = model.infer(mel[None], 1.0, z=z).numpy()[0]
    f0 = frames // 2
    mel2 = mel.copy()
    mel2[f0] += 1.0
    changed = np.flatnonzero(np.abs(model.infer(mel2[None], 1.0, z=z).numpy()[0] - base) > 1e-7) // HOP
    left, right = synthesis.context_frames(model)
    assert changed.size and changed.min() >= f0 - right and changed.max() <= f0 + left


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_windowed_synthesis_equals_one_shot(name):
    model = variant_model(name, seed=7)
    params = variant_params(name)
    engine = synthesis.ModelEngine(model, params, conditioning="plain")
    rng = np.random.default_rng(7)
    frames = 90
    mel = random_mel(rng, frames)
    z = rng.standard_normal((frames * HOP // model.n_group, model.n_group)).astype(np.float32)
    left, right = engine.context
    synth = synthesis.Synthesizer(engine, window_frames=left + right + 5, batch_size=2, margin_frames=0)
    assert len(synthesis.plan_windows(frames, synth.window_frames, *synth.context)) >= 4
    reference = model.infer(mel[None], 0.7, z=z[None]).numpy()[0]
    out = synth.synthesize([mel], sigma=0.7, latents=[z])[0]
    np.testing.assert_allclose(out, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_float16_storage_and_weight_norm_folding(name, tmp_path):
    model = variant_model(name, seed=8, weight_norm=True)
    params = variant_params(name)
    rng = np.random.default_rng(8)
    mel = random_mel(rng, 6)[None]
    z = rng.standard_normal((1, 6 * HOP // model.n_group, model.n_group)).astype(np.float32)
    folded = model.fold_weight_norm()
    expected = model.infer(mel, 0.6, z=z).numpy()
    np.testing.assert_allclose(folded.infer(mel, 0.6, z=z).numpy(), expected, atol=1e-5)
    save_model(folded, tmp_path / "m", params, weights_dtype="float16")
    loaded = load_model(tmp_path / "m")
    for name_, layer in folded.named_layers().items():
        ours = (
            [layer.effective_kernel().numpy(), layer.bias.numpy()]
            if hasattr(layer, "effective_kernel")
            else [v.numpy() for v in layer.weights]
        )
        theirs = loaded.named_layers()[name_]
        theirs = (
            [theirs.effective_kernel().numpy(), theirs.bias.numpy()]
            if hasattr(theirs, "effective_kernel")
            else [v.numpy() for v in theirs.weights]
        )
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(b, a.astype(np.float16).astype(np.float32), err_msg=name_)


# ---------------------------------------------------------------------- the whole model against PyTorch
def assert_synthesis_equals_reference(model, reference, mel, rng, sigma=0.7):
    """Synthesis of ``mel [1, frames, 80]`` under one random latent, ours against the PyTorch reference's.

    Returns the reference's audio ``[1, frames * hop]``.
    """
    import torch

    frames = mel.shape[1]
    latent = rng.standard_normal((1, frames * HOP // model.n_group, model.n_group)).astype(np.float32)
    with torch.no_grad():
        expected = reference.infer(
            torch.from_numpy(mel).transpose(1, 2), sigma=sigma, z=torch.from_numpy(latent).transpose(1, 2)
        ).numpy()
    np.testing.assert_allclose(model.infer(mel, sigma, z=latent).numpy(), expected, rtol=1e-4, atol=1e-5)
    return expected


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_forward_and_synthesis_equal_the_pytorch_reference(name):
    """The same weights in the PyTorch reference built from the options' definitions (tests/reference/glow.py)."""
    torch = pytest.importorskip("torch")
    if REFERENCE_DIR not in sys.path:
        sys.path.insert(0, REFERENCE_DIR)
    import tfwaveglow_weights

    model = variant_model(name, seed=10)
    params = variant_params(name)
    arrays = tfwaveglow.model_io.weights_to_arrays(model)
    reference = tfwaveglow_weights.build_reference(params.model, arrays)
    back = tfwaveglow_weights.reference_arrays(reference)  # and out again (weight norm folded on the way)
    assert back.keys() == arrays.keys()
    for key, value in arrays.items():
        np.testing.assert_allclose(back[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
    rng = np.random.default_rng(10)
    frames = 6
    mel = random_mel(rng, frames)[None]
    audio = rng.uniform(-0.5, 0.5, (1, frames * HOP)).astype(np.float32)
    ours = model.forward(mel, audio)
    with torch.no_grad():
        z, log_s_list, log_det_w_list = reference((torch.from_numpy(mel).transpose(1, 2), torch.from_numpy(audio)))
        log_s_sum = float(sum(torch.sum(log_s) for log_s in log_s_list))
        log_det_w_sum = float(sum(log_det_w_list))
    expected_z = z.transpose(1, 2).numpy()
    assert np.max(np.abs(expected_z)) > 1e-2 and abs(log_s_sum) > 1e-2
    np.testing.assert_allclose(ours["z"].numpy(), expected_z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(ours["log_s_sum"]), log_s_sum, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(ours["log_det_w_sum"]), log_det_w_sum, rtol=1e-4, atol=1e-4)

    assert_synthesis_equals_reference(model, reference, mel, rng)


def test_a_dead_channel_loads_into_the_weight_normed_reference_as_zeros():
    """A WN output channel whose kernel is all zeros (its gain trained to zero) stays zero in the reference.

    The reference builds NVIDIA's weight-normed convolutions from folded kernels (``g = ||w||``);
    a zero kernel must become ``g = 0`` there, not ``0 / 0``.
    """
    pytest.importorskip("torch")
    if REFERENCE_DIR not in sys.path:
        sys.path.insert(0, REFERENCE_DIR)
    import tfwaveglow_weights

    name = "repeat_g64_separable"
    model = variant_model(name, seed=11)
    params = variant_params(name)
    arrays = tfwaveglow.model_io.weights_to_arrays(model)
    depthwise = [k for k in arrays if k.startswith("WN.0.in_layers.") and arrays[k].ndim == 2][0]
    arrays[depthwise][:, 3] = 0.0  # [taps, channels]: channel 3 dead
    arrays["WN.1.cond_layer.kernel"][:, 5] = 0.0  # [in, out]: output 5 dead
    tfwaveglow.model_io.assign_arrays(model, arrays)
    reference = tfwaveglow_weights.build_reference(params.model, arrays)
    back = tfwaveglow_weights.reference_arrays(reference)
    for key, channel in ((depthwise, 3), ("WN.1.cond_layer.kernel", 5)):
        assert np.all(np.isfinite(back[key])), key
        assert np.all(back[key][..., channel] == 0), key
        np.testing.assert_allclose(back[key], arrays[key], rtol=1e-6, atol=1e-7, err_msg=key)
    rng = np.random.default_rng(11)
    frames = 6
    mel = random_mel(rng, frames)[None]
    expected = assert_synthesis_equals_reference(model, reference, mel, rng)
    assert np.all(np.isfinite(expected)) and np.max(np.abs(expected)) > 1e-2


@pytest.mark.parametrize("name", ["repeat_g64_separable"])
def test_bfloat16_forward_keeps_the_flow_in_float32_and_stays_close(name):
    model = variant_model(name, seed=9)
    rng = np.random.default_rng(9)
    mel = random_mel(rng, 8)[None]
    audio = rng.uniform(-0.5, 0.5, (1, 8 * HOP)).astype(np.float32)
    ref = model.forward(mel, audio)
    out = model.forward(tf.cast(mel, tf.bfloat16), audio)
    assert out["z"].dtype == tf.float32 and out["log_s_sum"].dtype == tf.float32
    scale = np.max(np.abs(ref["z"].numpy()))
    assert np.max(np.abs(out["z"].numpy() - ref["z"].numpy())) / scale < 3e-2


FRESH_SERVING = """
import sys
sys.modules["tfwaveglow"] = None
import numpy as np
import tensorflow as tf
inputs = dict(np.load(sys.argv[1]))
sig = tf.saved_model.load(sys.argv[2]).signatures
out = {}
out["from_latent"] = sig["synthesize_from_latent"](mel=inputs["mel"], z=inputs["z"], sigma=inputs["sigma"])["audio"]
out["seeded"] = sig["synthesize"](
    mel=inputs["mel"], mel_lengths=inputs["lengths"], sigma=inputs["sigma"],
    denoiser_strength=np.zeros(1, np.float32), seed=inputs["seeds"])["audio"]
np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
"""


@pytest.mark.slow  # about 30 s; CI runs it
def test_frame_rate_model_exports_and_serves_in_a_fresh_process(tmp_path):
    """The repeat-upsampler, separable model through the SavedModel, in a process that cannot import tfwaveglow."""
    from export_helpers import run

    from tfwaveglow.export import export_saved_model

    name = "repeat_g64_separable"
    model = variant_model(name, seed=10)
    params = variant_params(name)
    path = export_saved_model(model, params, tmp_path / "export" / "waveglow" / "1")
    rng = np.random.default_rng(10)
    frames = 9
    inputs = {
        "mel": random_mel(rng, frames)[None],
        "z": rng.standard_normal((1, frames, 64)).astype(np.float32),
        "sigma": np.array([0.6], np.float32),
        "lengths": np.array([frames], np.int32),
        "seeds": np.array([5], np.int64),
    }
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "serve.py").write_text(FRESH_SERVING)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    import sys

    run(
        [sys.executable, "-I", str(tmp_path / "serve.py"), str(tmp_path / "inputs.npz"), path,
         str(tmp_path / "out.npz")],
        cwd=str(tmp_path),
        env=env,
    )  # fmt: skip
    out = dict(np.load(tmp_path / "out.npz"))
    expected = model.infer(inputs["mel"], 0.6, z=inputs["z"]).numpy()
    np.testing.assert_allclose(out["from_latent"], expected, atol=1e-5)
    z = tf.random.stateless_normal([frames, 64], seed=[5, 0], alg="philox").numpy()
    seeded = np.clip(model.infer(inputs["mel"], 0.6, z=z[None]).numpy(), -1.0, 1.0)
    np.testing.assert_allclose(out["seeded"], seeded, atol=1e-5)
