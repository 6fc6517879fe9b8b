"""Saving and loading inference model directories and training checkpoints."""

import numpy as np
import pytest
import tensorflow as tf

import tfwaveglow
from tfwaveglow.model_io import ModelLoadError


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
