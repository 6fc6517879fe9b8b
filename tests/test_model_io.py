"""Saving and loading inference model directories and training checkpoints."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tfwaveglow
from tfwaveglow.model_io import ModelLoadError, stored_weights_dtype, weights_to_arrays


def small_params(**overrides):
    base = {"model.n_flows": 4, "model.wn.n_layers": 2, "model.wn.n_channels": 8}
    base.update(overrides)
    return tfwaveglow.load_params(None, overrides=base)


def randomized(model, seed):
    rng = np.random.default_rng(seed)
    for var in model.weights:
        if "convinv" not in var.path and not var.path.endswith("kernel_g"):
            var.assign(rng.normal(0, 0.05, var.shape).astype(np.float32))
    return model


def test_save_and_load_inference_directory(tmp_path):
    params = small_params()
    model = randomized(tfwaveglow.WaveGlow.from_params(params, weight_norm=True), 0)
    tfwaveglow.save_model(model, tmp_path / "m", params)
    loaded = tfwaveglow.load_model(tmp_path / "m")
    assert not loaded.weight_norm
    mel = tf.random.normal([1, 5, 80], seed=1)
    z = tf.random.normal([1, 160, 8], seed=2)
    np.testing.assert_allclose(loaded.infer(mel, 0.6, z).numpy(), model.infer(mel, 0.6, z).numpy(), atol=1e-5)
    # Switching the dilated-conv implementation keeps the weights and the output.
    native = tfwaveglow.load_model(tmp_path / "m", dilated_conv="native")
    np.testing.assert_allclose(native.infer(mel, 0.6, z).numpy(), model.infer(mel, 0.6, z).numpy(), atol=1e-5)


def test_load_training_run_directory_and_checkpoint_prefix(tmp_path):
    params = small_params()
    model = randomized(tfwaveglow.WaveGlow.from_params(params, weight_norm=True), 3)
    tfwaveglow.save_params(params, tmp_path / "params.yaml")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), tmp_path / "checkpoints", max_to_keep=2)
    prefix = manager.save()
    mel = tf.random.normal([2, 3, 80], seed=4)
    z = tf.random.normal([2, 96, 8], seed=5)
    expected = model.infer(mel, 0.6, z).numpy()
    for path in (tmp_path, prefix):
        loaded = tfwaveglow.load_model(path)
        np.testing.assert_allclose(loaded.infer(mel, 0.6, z).numpy(), expected, atol=1e-5)


def test_weights_that_do_not_fit_are_clear_errors(tmp_path):
    params = small_params()
    tfwaveglow.save_model(tfwaveglow.WaveGlow.from_params(params), tmp_path / "m", params)
    tfwaveglow.save_params(small_params(**{"model.wn.n_channels": 16}), tmp_path / "m" / "params.yaml")
    with pytest.raises(ModelLoadError, match=r"weights.npz.*'WN.0.start.kernel' has shape"):
        tfwaveglow.load_model(tmp_path / "m")
    tfwaveglow.save_params(small_params(**{"model.n_flows": 5}), tmp_path / "m" / "params.yaml")
    with pytest.raises(ModelLoadError, match=r"missing \['WN.4"):
        tfwaveglow.load_model(tmp_path / "m")
    tfwaveglow.save_params(small_params(**{"model.n_flows": 3}), tmp_path / "m" / "params.yaml")
    with pytest.raises(ModelLoadError, match=r"unused \['WN.3"):
        tfwaveglow.load_model(tmp_path / "m")


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        tfwaveglow.load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    tfwaveglow.save_params(small_params(), tmp_path / "empty" / "params.yaml")
    with pytest.raises(FileNotFoundError, match="neither weights.npz nor a TensorFlow checkpoint"):
        tfwaveglow.load_model(tmp_path / "empty")


def test_float16_storage_rounds_each_weight_and_halves_the_file(tmp_path):
    params = small_params()
    model = randomized(tfwaveglow.WaveGlow.from_params(params, weight_norm=True), 6)
    tfwaveglow.save_model(model, tmp_path / "f32", params)
    tfwaveglow.save_model(model, tmp_path / "f16", params, weights_dtype="float16")
    assert stored_weights_dtype(tmp_path / "f32") == "float32"
    assert stored_weights_dtype(tmp_path / "f16") == "float16"
    size32 = (tmp_path / "f32" / "weights.npz").stat().st_size
    size16 = (tmp_path / "f16" / "weights.npz").stat().st_size
    assert 0.45 < size16 / size32 < 0.55

    loaded = tfwaveglow.load_model(tmp_path / "f16")
    assert all(v.dtype == "float32" for v in loaded.weights)
    expected = weights_to_arrays(model.fold_weight_norm())
    got = weights_to_arrays(loaded)
    assert set(got) == set(expected)
    for name, value in expected.items():
        rounded = value.astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(got[name], rounded, err_msg=name)
    # Rounding is real (not a float32 copy) and small.
    kernel = expected["WN.0.in_layers.0.kernel"]
    assert not np.array_equal(got["WN.0.in_layers.0.kernel"], kernel)
    np.testing.assert_allclose(got["WN.0.in_layers.0.kernel"], kernel, rtol=1e-3, atol=1e-7)

    mel = tf.random.normal([1, 4, 80], seed=7)
    z = tf.random.normal([1, 128, 8], seed=8)
    wave = loaded.infer(mel, 0.6, z)
    assert wave.dtype == tf.float32
    np.testing.assert_allclose(wave.numpy(), model.infer(mel, 0.6, z).numpy(), atol=2e-2)


def test_float16_storage_refuses_what_it_cannot_hold(tmp_path):
    params = small_params()
    model = tfwaveglow.WaveGlow.from_params(params)
    with pytest.raises(ValueError, match="weights_dtype must be one of"):
        tfwaveglow.save_model(model, tmp_path / "m", params, weights_dtype="bfloat16")
    model.upsample.bias.assign(np.full(model.upsample.bias.shape, 1e5, np.float32))
    with pytest.raises(ValueError, match=r"float16 cannot hold the weights of \['upsample.bias'\]"):
        tfwaveglow.save_model(model, tmp_path / "m", params, weights_dtype="float16")


def test_training_state_round_trips_and_bad_files_are_named(tmp_path):
    from tfwaveglow.model_io import TRAINING_STATE_FILE, load_training_state, save_training_state

    save_training_state(tmp_path, step=12000, train_seconds=1234.5, cpu_seconds=2469.0)
    assert json.loads((tmp_path / TRAINING_STATE_FILE).read_text()) == {
        "step": 12000,
        "train_seconds": 1234.5,
        "cpu_seconds": 2469.0,
    }
    assert load_training_state(tmp_path) == {"step": 12000, "train_seconds": 1234.5, "cpu_seconds": 2469.0}
    path = tmp_path / TRAINING_STATE_FILE
    for text, problem in (
        ("{not json", "unreadable"),
        ('{"step": 5, "train_seconds": 1.0}', "unreadable"),
        ('{"step": -1, "train_seconds": 1.0, "cpu_seconds": 1.0}', "negative"),
    ):
        path.write_text(text)
        with pytest.raises(ModelLoadError, match=problem) as info:
            load_training_state(tmp_path)
        assert str(path) in str(info.value)
    path.unlink()
    with pytest.raises(ModelLoadError, match="no training state"):
        load_training_state(tmp_path)
