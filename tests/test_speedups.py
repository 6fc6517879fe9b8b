"""The fast paths compute NVIDIA's WaveGlow: regrouped WN, composed conditioning, compiled and mixed precision.

References are independent of the code under test: the PyTorch reference of
NVIDIA's model (tests/reference/glow.py) for WN, the model and its gradients,
and NumPy loops for the composed upsampler.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfwaveglow
from tfwaveglow.layers import WN
from tfwaveglow.layers.upsampler import compose_with_projection, frame_windows

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import glow  # noqa: E402
import tfwaveglow_weights  # noqa: E402


def randomize(model_or_layer, seed, scale=0.1):
    rng = np.random.default_rng(seed)
    for var in model_or_layer.weights:
        if "convinv" in var.path:
            continue
        if var.path.endswith("kernel_g"):  # g apart from ||v||, so that the fold matters
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype(np.float32) * var.numpy())
        else:
            var.assign(rng.normal(0.0, scale, var.shape).astype(np.float32))


def torch_wn_like(wn: WN) -> glow.WN:
    """The reference WN holding ``wn``'s weights; weight norm's v and g as they are (gradients depend on them)."""
    reference = glow.WN(wn.in_channels, wn.cond_channels, wn.n_layers, wn.n_channels, wn.kernel_size)
    tfwaveglow_weights.load_wn(reference, wn)
    return reference


@pytest.mark.parametrize("weight_norm", [False, True])
@pytest.mark.parametrize("mode", ["shifted_matmul", "time_to_batch", "native"])
def test_wn_matches_pytorch_reference_at_any_length(weight_norm, mode):
    """start . in_layers[0] and skip . end regroupings, including the zero padding at both ends."""
    wn = WN(3, 10, n_layers=4, n_channels=6, kernel_size=3, dilated_conv=mode, weight_norm=weight_norm)
    wn.build(None)
    randomize(wn, seed=1, scale=0.3)
    reference = torch_wn_like(wn)
    rng = np.random.default_rng(2)
    for length in (1, 2, 7, 40):
        audio = rng.standard_normal((2, length, 3)).astype(np.float32)
        spect = rng.standard_normal((2, length, 10)).astype(np.float32)
        with torch.no_grad():
            expected = reference((torch.from_numpy(audio).transpose(1, 2), torch.from_numpy(spect).transpose(1, 2)))
        expected = expected.transpose(1, 2).numpy()
        assert np.max(np.abs(expected)) > 0.1
        for got in (
            wn(tf.constant(audio), tf.constant(spect)),
            wn.transform_spect(tf.constant(audio), tf.constant(spect)),
            wn.transform(tf.constant(audio), wn.project_condition(tf.constant(spect))),
        ):
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5, err_msg=f"length {length}")


def numpy_projected_grouped_mel(mel, up_kernel, up_bias, proj_kernel, proj_bias, stride, n_group):
    """Transposed conv, NVIDIA's crop to F * stride samples, mel-major grouping, 1x1 projection."""
    batch, frames, n_mel = mel.shape
    kernel_size = up_kernel.shape[0]
    up = np.zeros((batch, (frames - 1) * stride + kernel_size, n_mel)) + up_bias
    for f in range(frames):
        for tap in range(kernel_size):
            up[:, f * stride + tap] += mel[:, f] @ up_kernel[tap].T
    up = up[:, : frames * stride]
    grouped = up.reshape(batch, -1, n_group, n_mel).transpose(0, 1, 3, 2).reshape(batch, -1, n_mel * n_group)
    return grouped @ proj_kernel + proj_bias


@pytest.mark.parametrize(("kernel_size", "stride", "n_group"), [(12, 4, 2), (10, 4, 2), (16, 8, 8), (8, 8, 4)])
def test_composed_projection_matches_numpy(kernel_size, stride, n_group):
    rng = np.random.default_rng(kernel_size + stride)
    n_mel, out = 3, 5
    mel = rng.standard_normal((2, 6, n_mel))
    up_kernel, up_bias = rng.standard_normal((kernel_size, n_mel, n_mel)), rng.standard_normal(n_mel)
    proj_kernel, proj_bias = rng.standard_normal((n_mel * n_group, out)), rng.standard_normal(out)
    expected = numpy_projected_grouped_mel(mel, up_kernel, up_bias, proj_kernel, proj_bias, stride, n_group)
    kernel, bias = compose_with_projection(up_kernel, up_bias, proj_kernel, proj_bias, stride, n_group)
    windows = frame_windows(tf.constant(mel, tf.float32), -(-kernel_size // stride))
    got = tf.reshape(tf.linalg.matmul(windows, kernel), [2, 6 * stride // n_group, out]) + bias
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def tiny_model(**overrides):
    config = dict(n_flows=4, n_early_every=2, wn_n_layers=3, wn_n_channels=8)
    config.update(overrides)
    model = tfwaveglow.WaveGlow(**config)
    randomize(model, seed=3, scale=0.05)
    return model


def torch_model_like(model, weight_norm=False):
    return tfwaveglow_weights.reference_like(model, weight_norm=weight_norm)


def test_composed_conditioning_synthesises_the_same_audio():
    model = tiny_model()
    rng = np.random.default_rng(4)
    mel = rng.normal(-4.0, 1.5, (2, 5, 80)).astype(np.float32)
    z = rng.standard_normal((2, 5 * 32, 8)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model_like(model).infer(
            torch.from_numpy(mel).transpose(1, 2), sigma=0.7, z=torch.from_numpy(z).transpose(1, 2)
        )
    expected = expected.numpy()
    composed = model.compose_conditioning()
    scale = np.max(np.abs(expected))
    for got in (
        model.infer(mel, 0.7, z),
        model.infer(mel, 0.7, z, conditioning=composed),
        model.infer_function(conditioning=composed)(mel, 0.7, z),
    ):
        assert np.max(np.abs(got.numpy() - expected)) / scale < 1e-5


def test_composed_conditioning_refuses_changed_weights():
    model = tiny_model()
    composed = model.compose_conditioning()
    mel = np.zeros((1, 3, 80), np.float32)
    model.infer(mel, 0.6, seed=1, conditioning=composed)  # unchanged: fine
    layer = model.couplings[1].wn.cond_layer
    layer.kernel.assign(layer.kernel + 1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="compose again"):
        model.infer(mel, 0.6, seed=1, conditioning=composed)
    with pytest.raises(tf.errors.InvalidArgumentError, match="compose again"):
        model.infer_function(conditioning=composed)(mel, 0.6, np.zeros((1, 96, 8), np.float32))
    with pytest.raises(ValueError, match="another architecture"):
        tiny_model(n_flows=3).infer(mel, 0.6, seed=1, conditioning=composed)


def test_infer_fn_does_not_retrace_for_new_lengths_or_batches():
    model = tiny_model()
    fn = model.infer_fn
    rng = np.random.default_rng(5)
    for batch, frames in [(1, 3), (1, 7), (2, 4), (3, 11)]:
        mel = rng.normal(-4.0, 1.0, (batch, frames, 80)).astype(np.float32)
        z = rng.standard_normal((batch, frames * 32, 8)).astype(np.float32)
        sigma = 0.6 if batch != 2 else np.array([0.5, 0.9], np.float32)
        np.testing.assert_allclose(fn(mel, sigma, z).numpy(), model.infer(mel, sigma, z).numpy(), atol=1e-5)
    assert fn.experimental_get_tracing_count() == 1
    assert model.infer_fn is fn


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_mixed_precision_keeps_the_flow_in_float32(dtype):
    model = tiny_model()
    rng = np.random.default_rng(6)
    mel = rng.normal(-4.0, 1.0, (1, 6, 80)).astype(np.float32)
    z = rng.standard_normal((1, 6 * 32, 8)).astype(np.float32)
    expected = model.infer(mel, 0.6, z).numpy()
    got = model.infer_function(mel_dtype=dtype)(tf.cast(mel, dtype), 0.6, z)
    assert got.dtype == tf.float32
    tolerance = 2e-2 if dtype == tf.bfloat16 else 2e-3
    assert np.max(np.abs(got.numpy() - expected)) / np.max(np.abs(expected)) < tolerance
    audio = rng.uniform(-0.5, 0.5, (1, 6 * 256)).astype(np.float32)
    # Training's forward runs the WNs in the mel's dtype (its mixed precision policy); the flow
    # (audio, 1x1 convs, affine steps) and the sums stay float32, close to the float32 forward.
    out = model.forward(tf.cast(mel, dtype), tf.cast(audio, dtype))
    assert out["z"].dtype == tf.float32 and out["log_s_sum"].dtype == tf.float32
    reference = model.forward(mel, audio)["z"].numpy()
    assert np.max(np.abs(out["z"].numpy() - reference)) / np.max(np.abs(reference)) < tolerance


def test_training_gradients_match_pytorch_reference():
    """Loss and gradients (weight norm on) through every regrouping, against PyTorch autograd."""
    model = tiny_model(weight_norm=True)
    reference = torch_model_like(model, weight_norm=True)
    rng = np.random.default_rng(7)
    mel = rng.normal(-4.0, 1.5, (2, 5, 80)).astype(np.float32)
    audio = rng.uniform(-0.5, 0.5, (2, 4 * 256 + 64)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tfwaveglow.nll_loss(model.forward(mel, audio))
    variables = model.trainable_variables
    grads = {v.path: g.numpy() for v, g in zip(variables, tape.gradient(loss, variables))}
    torch_loss = glow.WaveGlowLoss(1.0)(reference((torch.from_numpy(mel).transpose(1, 2), torch.from_numpy(audio))))
    torch_loss.backward()
    assert float(loss) == pytest.approx(torch_loss.item(), rel=1e-5)

    # Both sides' gradients in PyTorch's layouts, by its parameter names.
    ours = tfwaveglow_weights.model_parameters(model, values=grads)
    theirs = tfwaveglow_weights.reference_parameters(reference, grads=True)
    checked = ["upsample.weight", "convinv.2.conv.weight"]
    checked += [f"WN.1.{name}" for name in ("start.weight_v", "cond_layer.weight_v", "cond_layer.weight_g")]
    checked += ["WN.1.in_layers.0.weight_v", "WN.1.in_layers.2.weight_v", "WN.1.in_layers.2.bias"]
    checked += [f"WN.1.res_skip_layers.{i}.{name}" for i in (0, 2) for name in ("weight_v", "bias")]
    checked += ["WN.1.end.weight", "WN.1.end.bias"]
    for name in checked:
        scale = np.max(np.abs(theirs[name]))
        assert scale > 1e-6, name
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-3, atol=1e-4 * scale, err_msg=name)
