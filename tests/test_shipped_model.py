"""The bundled model models/fishfillets_cs: small, loadable, equal to the PyTorch reference, exportable."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import ROOT, run, run_in_fresh_process

import tfwaveglow
from tfwaveglow import audio as audio_lib
from tfwaveglow.model_io import (
    PARAMS_FILE,
    TRAINING_STATE_FILE,
    WEIGHTS_FILE,
    load_training_state,
    stored_weights_dtype,
)

MODEL_DIR = os.path.join(ROOT, "models", "fishfillets_cs")
EXAMPLE = os.path.join(ROOT, "examples", "male", "grail-gr-v-vsechny1.flac")
MAX_BYTES = 25_000_000
FRAMES = 24  # a short held-out mel: 24 frames = 6144 samples


@pytest.fixture(scope="module")
def shipped():
    model, params = tfwaveglow.model_io.load_model_and_params(MODEL_DIR)
    return model, params


@pytest.fixture(scope="module")
def held_out_mel(shipped):
    """The first FRAMES frames of a held-out utterance's mel, ``[1, FRAMES, 80]``."""
    _, params = shipped
    mel = audio_lib.mel_spectrogram(audio_lib.load_audio(EXAMPLE, params.audio.sampling_rate), params.audio)
    return mel[None, 100 : 100 + FRAMES]


def test_the_model_directory_is_small_float16_and_documented():
    names = sorted(os.listdir(MODEL_DIR))
    assert names == ["MODEL_CARD.md", PARAMS_FILE, TRAINING_STATE_FILE, WEIGHTS_FILE]
    total = sum(os.path.getsize(os.path.join(MODEL_DIR, n)) for n in names)
    assert total <= MAX_BYTES, f"{MODEL_DIR} is {total / 1e6:.1f} MB"
    assert stored_weights_dtype(MODEL_DIR) == "float16"
    card = open(os.path.join(MODEL_DIR, "MODEL_CARD.md"), encoding="utf-8").read()
    for needed in ("fillets-ng-data-cs", "GPL-2", "1176 training and 62 held-out", "training steps", "validation NLL"):
        assert needed in card, needed
    # The training state (for train.py --continue_run) is the card's step and hours.
    state = load_training_state(MODEL_DIR)
    assert f"| training steps | {state['step']} " in card
    hours = float(re.search(r"\| training time \| ([0-9.]+) h", card).group(1))
    assert state["train_seconds"] / 3600 == pytest.approx(hours, abs=0.005)


def test_the_model_loads_as_float32_with_the_float16_values(shipped):
    model, params = shipped
    assert (model.n_flows, model.wn_n_layers, model.wn_n_channels) == (
        params.model.n_flows,
        params.model.wn.n_layers,
        params.model.wn.n_channels,
    )
    assert all(v.dtype == "float32" for v in model.weights)
    with np.load(os.path.join(MODEL_DIR, WEIGHTS_FILE)) as data:
        stored = {k: data[k] for k in data.files}
    loaded = tfwaveglow.model_io.weights_to_arrays(model)
    assert set(loaded) == set(stored)
    for name, value in stored.items():
        np.testing.assert_array_equal(loaded[name], value.astype(np.float32), err_msg=name)
    assert tfwaveglow.count_parameters(model) == sum(v.size for v in stored.values())


# --------------------------------------------------------------------------- PyTorch reference
def test_synthesis_equals_the_pytorch_reference_with_the_same_weights(shipped, held_out_mel):
    torch = pytest.importorskip("torch")
    reference_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
    if reference_dir not in sys.path:
        sys.path.insert(0, reference_dir)
    import tfwaveglow_weights

    model, params = shipped
    m = params.model
    # The float16 file decoded by NumPy alone and mapped onto the reference, not by tfwaveglow's loader.
    with np.load(os.path.join(MODEL_DIR, WEIGHTS_FILE)) as data:
        reference = tfwaveglow_weights.build_reference(m, {k: data[k].astype(np.float32) for k in data.files})

    z = np.random.default_rng(3).standard_normal([1, FRAMES * m.upsample_stride // m.n_group, m.n_group])
    z = z.astype(np.float32)

    def reference_infer(dtype):
        net = reference.to(dtype)
        mel = torch.from_numpy(held_out_mel).to(dtype).transpose(1, 2)
        with torch.no_grad():
            return net.infer(mel, sigma=0.6, z=torch.from_numpy(z).to(dtype).transpose(1, 2)).numpy()

    exact, expected = reference_infer(torch.float64), reference_infer(torch.float32)
    ours = model.infer(tf.constant(held_out_mel), 0.6, z=tf.constant(z)).numpy()
    assert ours.shape == expected.shape == (1, FRAMES * m.upsample_stride)
    scale = float(np.max(np.abs(exact)))
    assert scale > 1e-3  # not a silent output
    # The inverse flow amplifies float32 rounding by how far its 1x1 convs and scales are from the
    # identity: the reference in float64 is the exact answer, and ours in float32 must be as close to
    # it as a few times the reference's own float32 rounding (measured for the step-8000 weights:
    # 2.5e-4 against 7.1e-5; 7e-7 for the step-21000 weights, whose flow was nearer the identity).
    error = float(np.max(np.abs(ours - exact))) / scale
    rounding = float(np.max(np.abs(expected - exact))) / scale
    assert error < max(1e-4, 5 * rounding), f"relative error {error:.3g}, the reference's float32 {rounding:.3g}"


@pytest.mark.slow
def test_the_exported_saved_model_serves_the_shipped_model(shipped, held_out_mel, tmp_path):
    """Export CLI -> SavedModel -> a fresh process that cannot import tfwaveglow; equals model.infer."""
    model, params = shipped
    path = tmp_path / "export" / "1"
    run([sys.executable, "-m", "tfwaveglow.export", f"--model={MODEL_DIR}", f"--output={path}"], cwd=ROOT)
    hop, group = params.model.upsample_stride, params.model.n_group
    rng = np.random.default_rng(4)
    mel = np.concatenate([held_out_mel, held_out_mel[:, ::-1]]).astype(np.float32)
    frames = mel.shape[1]
    inputs = {
        "mel": mel,
        "z": rng.standard_normal([2, frames * hop // group, group]).astype(np.float32),
        "sigma": np.array([0.6, 0.3], np.float32),
        "batch_mel": mel[[0, 1, 0]][:, :14],
        "lengths": np.array([14, 9, 3], np.int32),
        "batch_sigma": np.array([0.6, 0.6, 0.6], np.float32),
        "strength": np.array([0.0, 0.1, 0.0], np.float32),
        "seeds": np.array([1, 2, 3], np.int64),
        "hop": np.array(hop),
    }
    results, errors = run_in_fresh_process(tmp_path, str(path), inputs)
    expected = model.infer(inputs["mel"], inputs["sigma"], z=inputs["z"]).numpy()
    assert np.max(np.abs(expected)) > 1e-3
    np.testing.assert_allclose(results["from_latent"], expected, atol=1e-5, rtol=1e-5)
    assert results["synth_audio"].shape == (3, 14 * hop) and np.all(np.isfinite(results["synth_audio"]))
    assert errors["serving_default/nan"][0] == "InvalidArgumentError"
