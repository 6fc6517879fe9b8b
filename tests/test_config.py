"""Strict, typed configuration loading."""

import dataclasses

import pytest
import yaml

import tfwaveglow
from tfwaveglow.config import ConfigError, Params, params_from_dict


def test_params_yaml_holds_nvidia_defaults():
    params = tfwaveglow.load_params("params.yaml")
    assert params == Params()  # the file and the dataclass defaults agree
    a, m, d, t = params.audio, params.model, params.data, params.train
    assert (a.sampling_rate, a.filter_length, a.hop_length, a.win_length) == (22050, 1024, 256, 1024)
    assert (a.n_mel_channels, a.mel_fmin, a.mel_fmax) == (80, 0.0, 8000.0)
    assert (m.n_flows, m.n_group, m.n_early_every, m.n_early_size) == (12, 8, 4, 2)
    assert (m.wn.n_layers, m.wn.n_channels, m.wn.kernel_size, m.wn.dilated_conv) == (8, 256, 3, "time_to_batch")
    assert (d.segment_length, t.batch_size, t.sigma) == (16000, 12, 1.0)
    assert isinstance(t.learning_rate, float) and t.learning_rate == 1e-4


def test_small_preset_loads():
    params = tfwaveglow.load_params("configs/small.yaml")
    assert params.model.wn.n_channels < 256
    assert params.model.n_flows == 12


def test_1e_minus_4_is_a_float(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  learning_rate: 1e-4\n")
    assert yaml.safe_load(path.read_text())["train"]["learning_rate"] == "1e-4"  # why coercion is needed
    params = tfwaveglow.load_params(path)
    assert params.train.learning_rate == 1e-4 and isinstance(params.train.learning_rate, float)


def test_unknown_and_misspelt_keys_are_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("model:\n  wn:\n    n_chanels: 64\n")
    with pytest.raises(ConfigError, match=r"'model\.wn\.n_chanels'"):
        tfwaveglow.load_params(path)
    with pytest.raises(ConfigError, match="'trian'"):
        params_from_dict({"trian": {}})
    with pytest.raises(ConfigError, match="'model.n_flow'"):
        tfwaveglow.load_params("params.yaml", overrides={"model.n_flow": 4})


def test_a_retired_key_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "old_run_params.yaml"
    path.write_text("data:\n  shuffle_buffer: 1000\n  segment_length: 4000\n")
    with pytest.warns(UserWarning, match=r"retired key 'data\.shuffle_buffer'"):
        params = tfwaveglow.load_params(path)
    assert params.data.segment_length == 4000
    # Retired only where it lived: the same name elsewhere is still unknown.
    with pytest.raises(ConfigError, match=r"'train\.shuffle_buffer'"):
        params_from_dict({"train": {"shuffle_buffer": 10}})


def test_wrong_types_are_errors():
    with pytest.raises(ConfigError, match="model.n_flows: expected an integer"):
        params_from_dict({"model": {"n_flows": "many"}})
    with pytest.raises(ConfigError, match="train.learning_rate: expected a number"):
        params_from_dict({"train": {"learning_rate": True}})
    with pytest.raises(ConfigError, match="expected a mapping"):
        params_from_dict({"model": {"wn": 3}})


def test_overrides_parse_strings_like_a_command_line():
    params = tfwaveglow.load_params(
        "params.yaml",
        overrides={"model.n_flows": "4", "train.learning_rate": "3e-4", "model.wn.dilated_conv": "native"},
    )
    assert params.model.n_flows == 4
    assert params.train.learning_rate == pytest.approx(3e-4)
    assert params.model.wn.dilated_conv == "native"


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("model", "n_group", 7, "n_group must be even"),
        ("model", "upsample_stride", 128, "upsample_stride .* must equal audio.hop_length"),
        ("model", "n_mel_channels", 64, "must equal audio.n_mel_channels"),
        ("data", "segment_length", 16001, "segment_length .* divisible by model.n_group"),
        ("model.wn", "kernel_size", 4, "kernel_size must be odd"),
        ("model.wn", "dilated_conv", "conv2d", "dilated_conv must be one of"),
        ("model", "n_early_size", 3, "channels left must stay even"),
        ("model", "n_early_size", 4, "leave 0 of n_group=8"),
        ("audio", "mel_fmax", 12000.0, "mel_fmax"),
        ("train", "learning_rate", -1.0, "learning_rate must be > 0"),
    ],
)
def test_cross_field_rules(section, key, value, message):
    with pytest.raises(ConfigError, match=message):
        tfwaveglow.load_params(None, overrides={f"{section}.{key}": value})


def test_save_and_reload_round_trip(tmp_path):
    params = tfwaveglow.load_params("configs/small.yaml", overrides={"model.n_flows": 8})
    tfwaveglow.save_params(params, tmp_path / "params.yaml")
    assert tfwaveglow.load_params(tmp_path / "params.yaml") == params


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        tfwaveglow.load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        tfwaveglow.load_params(bad)


def test_params_are_immutable():
    params = Params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.batch_size = 3
