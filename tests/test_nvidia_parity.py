"""Converted NVIDIA checkpoints compute what NVIDIA's model computes.

A PyTorch reference WaveGlow (tests/reference/glow.py, parameter-compatible with
NVIDIA's checkpoints) gets random non-zero weights, is saved in every checkpoint
form, converted with the CLI, loaded with ``tfwaveglow.load_model`` and compared
on forward (z, log_s, log_det_W, loss) and on inference under the same latent.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
if REFERENCE_DIR not in sys.path:
    sys.path.insert(0, REFERENCE_DIR)

import glow_checkpoints  # noqa: E402

import tfwaveglow  # noqa: E402
from tfwaveglow import convert_nvidia  # noqa: E402
from tfwaveglow.convert import convert_checkpoint  # noqa: E402

RTOL = 1e-4
SMALL = {
    "n_mel_channels": 80,
    "n_flows": 4,
    "n_group": 8,
    "n_early_every": 2,
    "n_early_size": 2,
    "WN_config": {"n_layers": 3, "n_channels": 16, "kernel_size": 3},
}
# Non-default everything the converter must infer: mel bins, group, kernel, upsampler.
ODD = {
    "n_mel_channels": 20,
    "n_flows": 5,
    "n_group": 4,
    "n_early_every": 3,
    "n_early_size": 2,
    "WN_config": {"n_layers": 2, "n_channels": 8, "kernel_size": 5},
}
ODD_UPSAMPLER = {"upsample_kernel_size": 48, "upsample_stride": 12}


def make_inputs(n_mel: int, hop: int, n_group: int, frames: int = 5, batch: int = 2, seed: int = 0):
    """mel ``[B, F, n_mel]``, audio shorter than ``F * hop`` (so forward crops), latent ``[B, F*hop/g, g]``."""
    rng = np.random.default_rng(seed)
    mel = rng.normal(-4.0, 1.5, (batch, frames, n_mel)).astype(np.float32)
    samples = (frames - 1) * hop + n_group * max(1, hop // (2 * n_group))
    audio = rng.uniform(-0.5, 0.5, (batch, samples)).astype(np.float32)
    z = rng.standard_normal((batch, frames * hop // n_group, n_group)).astype(np.float32)
    return mel, audio, z


def convert_with_cli(checkpoint, output, *extra) -> tfwaveglow.WaveGlow:
    convert_nvidia.main(["convert_nvidia", f"--checkpoint={checkpoint}", f"--output={output}", *extra])
    return tfwaveglow.load_model(output)


def assert_rel_close(ours, theirs, what: str, rtol: float = RTOL):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs reference {theirs.shape}"
    scale = max(float(np.max(np.abs(theirs))), 1e-6)
    error = float(np.max(np.abs(ours - theirs))) / scale
    assert error <= rtol, f"{what}: relative error {error:.3g} > {rtol:g} (reference scale {scale:.3g})"


def assert_matches_reference(model: tfwaveglow.WaveGlow, expected: dict, mel, audio, z, sigma: float):
    out = model.forward(mel, audio)
    assert_rel_close(out["z"].numpy(), expected["z"], "z")
    assert_rel_close(float(out["log_s_sum"]), expected["log_s_sum"], "log_s_sum")
    assert_rel_close(float(out["log_det_w_sum"]), expected["log_det_w_sum"], "log_det_w_sum")
    assert_rel_close(float(tfwaveglow.nll_loss(out, sigma=1.0)), expected["loss"], "loss")
    assert_rel_close(model.infer(mel, sigma=sigma, z=z).numpy(), expected["audio"], "infer audio")


@pytest.fixture(scope="module")
def small():
    reference = glow_checkpoints.build(SMALL, seed=1)
    mel, audio, z = make_inputs(80, 256, 8)
    expected = glow_checkpoints.outputs(reference, mel, audio, z, sigma=0.6)
    # The test must be able to fail: the random weights make every term non-trivial.
    assert abs(expected["log_det_w_sum"]) > 1e-2 and abs(expected["log_s_sum"]) > 1e-2
    return reference, (mel, audio, z), expected


@pytest.mark.parametrize("form", glow_checkpoints.FORMS)
def test_every_checkpoint_form_matches_reference(small, form, tmp_path):
    reference, (mel, audio, z), expected = small
    checkpoint = glow_checkpoints.save(reference, tmp_path / "waveglow.pt", form)
    model = convert_with_cli(checkpoint, tmp_path / "converted")
    assert_matches_reference(model, expected, mel, audio, z, sigma=0.6)


def test_per_layer_cond_layers_checkpoint_matches_reference(tmp_path):
    """The older layout: one cond_layers[i] per WN layer, concatenated in layer order."""
    reference = glow_checkpoints.build(SMALL, seed=2, per_layer_cond=True)
    assert "WN.0.cond_layers.2.weight_v" in reference.state_dict()
    mel, audio, z = make_inputs(80, 256, 8, seed=2)
    expected = glow_checkpoints.outputs(reference, mel, audio, z, sigma=0.8)
    checkpoint = glow_checkpoints.save(reference, tmp_path / "old.pt", "pickled_legacy")
    model = convert_with_cli(checkpoint, tmp_path / "converted")
    assert_matches_reference(model, expected, mel, audio, z, sigma=0.8)


@pytest.mark.parametrize("form", ["pickled", "state_dict"])
def test_non_default_architecture_matches_reference(form, tmp_path):
    """Everything inferred from shapes; the stride from the pickled model or, for a state_dict, the flag."""
    reference = glow_checkpoints.build(ODD, seed=3, **ODD_UPSAMPLER)
    mel, audio, z = make_inputs(20, 12, 4, frames=7, seed=3)
    expected = glow_checkpoints.outputs(reference, mel, audio, z, sigma=1.0)
    checkpoint = glow_checkpoints.save(reference, tmp_path / "odd.pt", form)
    extra = ["--upsample_stride=12"] if form == "state_dict" else []
    model = convert_with_cli(checkpoint, tmp_path / "converted", *extra)
    assert (model.n_group, model.n_early_every, model.wn_kernel_size, model.upsample_kernel_size) == (4, 3, 5, 48)
    assert_matches_reference(model, expected, mel, audio, z, sigma=1.0)


def test_grouped_mel_channel_order_matches_reference(small, tmp_path):
    """The conditioning our model feeds cond_layer is NVIDIA's, channel m * g + j, element for element."""
    reference, (mel, audio, _), _ = small
    checkpoint = glow_checkpoints.save(reference, tmp_path / "waveglow.pt", "state_dict")
    model = convert_checkpoint(checkpoint, check_layers=False).model
    samples = audio.shape[1]
    with torch.no_grad():
        upsampled = reference.upsample(torch.from_numpy(mel).transpose(1, 2))[:, :, :samples]
        theirs = reference._group_mel(upsampled).transpose(1, 2).numpy()
        cond_theirs = reference.WN[1].cond_layer(torch.from_numpy(theirs).transpose(1, 2)).transpose(1, 2).numpy()
    ours = model.condition(mel, samples)
    assert_rel_close(ours.numpy(), theirs, "grouped mel", rtol=1e-5)
    assert_rel_close(model.couplings[1].wn.project_condition(ours).numpy(), cond_theirs, "cond_layer output")


@pytest.mark.slow
def test_full_size_default_model_matches_reference(tmp_path):
    """NVIDIA's published size: 12 flows, WN 8 x 256, 87,731,816 parameters once weight norm is folded."""
    config = {
        "n_mel_channels": 80,
        "n_flows": 12,
        "n_group": 8,
        "n_early_every": 4,
        "n_early_size": 2,
        "WN_config": {"n_layers": 8, "n_channels": 256, "kernel_size": 3},
    }
    reference = glow_checkpoints.build(config, seed=4)
    mel, audio, z = make_inputs(80, 256, 8, frames=4, batch=1, seed=4)
    expected = glow_checkpoints.outputs(reference, mel, audio, z, sigma=0.6)
    checkpoint = glow_checkpoints.save(reference, tmp_path / "waveglow_256channels.pt", "pickled")
    del reference
    model = convert_with_cli(checkpoint, tmp_path / "converted")
    assert tfwaveglow.count_parameters(model) == 87_731_816
    assert_matches_reference(model, expected, mel, audio, z, sigma=0.6)
