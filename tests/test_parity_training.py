"""One training step of the PyTorch reference (scripts/torch_reference_train.py) against tfwaveglow's Trainer.

Both start from the same tfwaveglow inference directory and take one step on the
same batch of real speech: the loss terms must agree to float32 round-off and
every trainable weight (weight norm's ``g`` and ``v``, biases, the 1x1 convs, the
upsampler) must move the same way. This guards the machinery behind the
convergence comparison in docs/convergence.md.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfwaveglow
from tfwaveglow import training
from tfwaveglow.audio import load_audio, mel_spectrogram

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import tfwaveglow_weights  # noqa: E402

SPEECH = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "speech", "*", "*.ogg")))
LR = 1e-3
SEGMENT = 2048

# 3 flows (2 channels leave before flow 2: 8 -> 6), WN 2 layers x 8 channels, NVIDIA's upsampler.
TINY = {
    "model.n_flows": 3,
    "model.n_early_every": 2,
    "model.wn.n_layers": 2,
    "model.wn.n_channels": 8,
    "data.segment_length": SEGMENT,
    "train.batch_size": 2,
    "train.learning_rate": LR,
    "train.lr_schedule": "constant",
}


def load_script():
    spec = importlib.util.spec_from_file_location(
        "torch_reference_train", os.path.join(ROOT, "scripts", "torch_reference_train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def speech_batch(params):
    """Two real speech segments and their mels: ``mel [2, 8, 80]``, ``audio [2, 2048]``."""
    frames = SEGMENT // params.audio.hop_length
    mels, audios = [], []
    for path in SPEECH[:2]:
        audio = load_audio(path, params.audio.sampling_rate)
        start = (len(audio) // 2 // params.audio.hop_length) * params.audio.hop_length
        segment = audio[start : start + SEGMENT]
        audios.append(segment)
        mels.append(mel_spectrogram(segment, params.audio)[:frames])
    return np.stack(mels).astype(np.float32), np.stack(audios).astype(np.float32)


def tf_variables(model) -> dict:
    """tfwaveglow's trainable variables by the reference's names, in its layouts (``[out, in, k]``, ``g`` ``[out]``)."""
    return tfwaveglow_weights.model_parameters(model)


def torch_variables(reference, grads: bool = False) -> dict:
    """The reference's parameters (or their gradients) by the same names, ``g`` flattened to ``[out]``."""
    return tfwaveglow_weights.reference_parameters(reference, grads=grads)


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    """(params, initial weights, loss/weights after one step of each, the reference's gradients)."""
    script = load_script()
    tmp = tmp_path_factory.mktemp("parity")
    params = tfwaveglow.config.params_from_dict({}, TINY)
    keras.utils.set_random_seed(7)
    init = tfwaveglow.WaveGlow.from_params(params)
    # NVIDIA zero-initialises each WN's end conv, which leaves every WN and upsampler
    # gradient zero at step 0; small random end weights make all of them matter.
    rng = np.random.default_rng(7)
    for k in range(params.model.n_flows):
        end = init.named_layers()[f"WN.{k}.end"]
        end.assign_kernel(rng.normal(0.0, 0.1, end.kernel.shape), rng.normal(0.0, 0.1, end.bias.shape))
    init_dir = tfwaveglow.save_model(init, tmp / "init", params)
    mel, audio = speech_batch(params)

    trainer = training.Trainer(params, str(tmp / "run"))
    trainer.warm_start(init_dir)
    before = tf_variables(trainer.model)
    tf_result = trainer.train_step((tf.constant(mel), tf.constant(audio)))
    tf_after = tf_variables(trainer.model)

    with np.load(os.path.join(init_dir, "weights.npz")) as f:
        reference = script.build_reference(params.model, {k: f[k] for k in f.files}, weight_norm=True).train()
    torch_before = torch_variables(reference)
    optimizer = script.make_optimizer(reference)
    torch_result = script.train_step(reference, optimizer, mel, audio, 0, params.train)
    return {
        "before": before,
        "torch_before": torch_before,
        "tf": tf_result,
        "torch": torch_result,
        "tf_after": tf_after,
        "torch_after": torch_variables(reference),
        "grads": torch_variables(reference, grads=True),
    }


def test_same_start(one_step):
    """The reference loaded from the inference directory holds what the Trainer's model holds."""
    before, torch_before = one_step["before"], one_step["torch_before"]
    assert sorted(before) == sorted(torch_before)
    for key in before:
        np.testing.assert_allclose(torch_before[key], before[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_same_loss_and_gradient_norm(one_step):
    tf_result, torch_result = one_step["tf"], one_step["torch"]
    assert bool(tf_result["applied"])
    assert abs(float(tf_result["loss/total"])) > 1e-2  # a loss that is not trivially 0
    for key in training.LOSS_TERMS:
        np.testing.assert_allclose(float(tf_result[key]), torch_result[key], rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(float(tf_result["grad_norm"]), torch_result["grad_norm"], rtol=1e-4)
    np.testing.assert_allclose(float(tf_result["learning_rate"]), torch_result["learning_rate"], rtol=1e-6)


def test_same_updated_weights(one_step):
    """Adam's first step moves each weight by ``lr * g / (|g| + eps')``: +-lr wherever |g| >> eps'.

    Gradients agreeing to float32 round-off (~1e-6 relative) make the updates agree
    to far better than 0.1% of ``lr``, except where the two Adams' epsilons matter:
    PyTorch adds eps = 1e-8 to sqrt(v_hat), Keras adds it to sqrt(v), i.e.
    eps' = 1e-8 / sqrt(1 - beta_2) = 3.2e-7 at step 1, which changes the update by up
    to ``lr * 3.2e-7 / |g|``. Measured: the largest gap is that term (3e-3 lr at
    |g| = 1e-4, 0.7 lr on upsampler and cond_layer weights whose |g| is ~1e-9); the
    allowance is 0.1% of lr plus twice that term (so a sign flipped by round-off can
    pass only where |g| is below eps').
    """
    before, tf_after, torch_after, grads = (one_step[k] for k in ("before", "tf_after", "torch_after", "grads"))
    eps_keras = 1e-8 / np.sqrt(1.0 - 0.999)
    moved = 0
    for key in before:
        tf_delta = tf_after[key] - before[key]
        torch_delta = torch_after[key] - one_step["torch_before"][key]
        g = np.abs(grads[key])
        # float32 round-off of the weight itself (|w| * 2^-23 per update) adds to the allowance.
        tolerance = LR * (1e-3 + 2.0 * eps_keras / np.maximum(g, 1e-30)) + 4e-7 * np.abs(before[key])
        bad = np.abs(tf_delta - torch_delta) > tolerance
        assert not bad.any(), (
            f"{key}: {bad.sum()} of {bad.size} weights moved differently, e.g. TensorFlow "
            f"{tf_delta[bad][:3]} vs PyTorch {torch_delta[bad][:3]} (|g| {g[bad][:3]})"
        )
        moved += int(np.count_nonzero(np.abs(torch_delta) > 0.5 * LR))
    # Most weights take a full step of about lr (a test that would pass with no update fails here).
    assert moved > 0.9 * sum(v.size for v in before.values())
