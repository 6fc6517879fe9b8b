"""The NVIDIA checkpoint converter: forms it reads, what it infers and reports, and its errors.

Numerical parity with the PyTorch reference is in test_nvidia_parity.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
if REFERENCE_DIR not in sys.path:
    sys.path.insert(0, REFERENCE_DIR)

import glow_checkpoints  # noqa: E402

import tfwaveglow  # noqa: E402
from tfwaveglow import convert_nvidia  # noqa: E402
from tfwaveglow.convert import (  # noqa: E402
    ConversionError,
    MissingKeysError,
    NotACheckpointError,
    NotWaveGlowError,
    ShapeMismatchError,
    UnusedKeysError,
    convert_checkpoint,
    read_checkpoint,
)
from tfwaveglow.convert.mapping import fold_weight_norm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "n_mel_channels": 80,
    "n_flows": 4,
    "n_group": 8,
    "n_early_every": 2,
    "n_early_size": 2,
    "WN_config": {"n_layers": 2, "n_channels": 8, "kernel_size": 3},
}


@pytest.fixture(scope="module")
def reference():
    return glow_checkpoints.build(TINY, seed=5)


@pytest.fixture(scope="module")
def state_dict_file(reference, tmp_path_factory):
    return glow_checkpoints.save(reference, tmp_path_factory.mktemp("ckpt") / "sd.pt", "state_dict")


def run_cli(*args) -> None:
    convert_nvidia.main(["convert_nvidia", *args])


def save_state(state: dict, path) -> str:
    torch.save(state, str(path))
    return str(path)


# --------------------------------------------------------------------------- what it reads and infers
def test_pickled_model_report_params_and_metadata(reference, tmp_path):
    checkpoint = glow_checkpoints.save(reference, tmp_path / "waveglow.pt", "pickled")
    result = convert_checkpoint(checkpoint, output=tmp_path / "out")
    report = result.report
    assert report.form == "pickled model" and report.model_class == "glow.WaveGlow"
    assert report.metadata == {"iteration": 1234, "learning_rate": 1e-4}
    assert report.upsample_stride_from == "read from the pickled model"
    n_keys = len(reference.state_dict())
    assert report.source_keys == report.keys_mapped == n_keys
    # 4 flows x (start, cond, 2 in, 2 res_skip) weight-normed convs; end and the 1x1 convs are plain.
    assert report.weight_norm_folded == 4 * 6
    assert report.layer_parity.layers == 1 + 4 * 8 and report.layer_parity.max_relative_error < 1e-5
    # Folded parameter count: the reference's minus the weight_g vectors.
    n_g = sum(p.numel() for name, p in reference.named_parameters() if name.endswith("weight_g"))
    assert report.parameters == sum(p.numel() for p in reference.parameters()) - n_g
    text = report.format()
    for fragment in ("glow.WaveGlow", "iteration=1234", f"{n_keys} of {n_keys} source keys", "n_early_every=2"):
        assert fragment in text

    with open(tmp_path / "out" / "params.yaml") as f:
        model_section = yaml.safe_load(f)["model"]
    assert model_section == {
        "n_mel_channels": 80,
        "n_flows": 4,
        "n_group": 8,
        "n_early_every": 2,
        "n_early_size": 2,
        "upsample_kernel_size": 1024,
        "upsample_stride": 256,
        "upsampler": "transposed_conv",
        "frame_context": 1,
        "wn": {"n_layers": 2, "n_channels": 8, "kernel_size": 3, "dilated_conv": "time_to_batch", "separable": False},
        "postfilter": {"n_layers": 0, "n_channels": 64, "kernel_size": 3},
    }


def test_weights_written_equal_the_folded_reference_weights(reference, state_dict_file, tmp_path):
    """Values and layouts, against PyTorch's own weight-norm removal."""
    run_cli(f"--checkpoint={state_dict_file}", f"--output={tmp_path}")
    plain = glow_checkpoints.without_weight_norm(reference).state_dict()
    with np.load(tmp_path / "weights.npz") as data:
        ours = {k: data[k] for k in data.files}
    np.testing.assert_allclose(ours["upsample.kernel"], plain["upsample.weight"].numpy().transpose(2, 1, 0))
    np.testing.assert_allclose(ours["convinv.3.kernel"], plain["convinv.3.conv.weight"].numpy()[:, :, 0])
    in_layer = plain["WN.2.in_layers.1.weight"].numpy()
    np.testing.assert_allclose(ours["WN.2.in_layers.1.kernel"], in_layer.transpose(2, 1, 0), rtol=1e-6, atol=1e-7)
    cond = plain["WN.1.cond_layer.weight"].numpy()
    np.testing.assert_allclose(ours["WN.1.cond_layer.kernel"], cond[:, :, 0].T, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours["WN.0.end.kernel"], plain["WN.0.end.weight"].numpy()[:, :, 0].T)
    np.testing.assert_allclose(ours["WN.0.res_skip_layers.0.bias"], plain["WN.0.res_skip_layers.0.bias"].numpy())
    assert len(ours) == 2 + 4 * (1 + 7 * 2)  # upsample; per flow W and kernel + bias of 7 convs


def test_other_containers_half_precision_and_data_parallel_module(reference, tmp_path):
    state = reference.state_dict()
    path = save_state({"model": state, "iteration": 5}, tmp_path / "model_sd.pt")
    ckpt = read_checkpoint(path)
    assert ckpt.form == "{'model': state_dict}" and ckpt.metadata == {"iteration": 5}
    assert set(ckpt.tensors) == set(state)

    path = save_state({k: v.half() for k, v in state.items()}, tmp_path / "half.pt")
    ckpt = read_checkpoint(path)
    weight = ckpt.tensors["WN.0.start.weight_v"]
    assert weight.dtype == np.float32
    np.testing.assert_array_equal(weight, state["WN.0.start.weight_v"].half().float().numpy())

    path = save_state({"model": torch.nn.DataParallel(reference), "iteration": 9}, tmp_path / "dp.pt")
    result = convert_checkpoint(path, check_layers=False)
    assert (
        result.report.data_parallel_prefix
        and result.report.model_class == "torch.nn.parallel.data_parallel.DataParallel"
    )
    assert result.report.upsample_stride_from == "read from the pickled model"
    assert result.report.keys_mapped == len(state)


def test_fold_weight_norm_matches_pytorch():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((6, 4, 3)).astype(np.float32)
    g = rng.uniform(0.5, 2.0, (6, 1, 1)).astype(np.float32)
    expected = torch._weight_norm(torch.from_numpy(v), torch.from_numpy(g), 0).numpy()
    np.testing.assert_allclose(fold_weight_norm(g, v, "test"), expected, rtol=1e-6)
    np.testing.assert_allclose(fold_weight_norm(g.reshape(-1), v, "test"), expected, rtol=1e-6)


def test_state_dict_stride_comes_from_base_params_or_flag(state_dict_file, tmp_path):
    report = convert_checkpoint(state_dict_file, check_layers=False).report
    assert report.architecture.upsample_stride == 256 and "not stored" in report.upsample_stride_from
    params_file = tmp_path / "base.yaml"
    params_file.write_text("train:\n  batch_size: 3\nexport:\n  sigma: 0.7\n")
    run_cli(
        f"--checkpoint={state_dict_file}",
        f"--output={tmp_path / 'out'}",
        f"--params={params_file}",
        "--upsample_stride=128",
        "--nocheck_layers",
        f"--report_json={tmp_path / 'report.json'}",
    )
    params = tfwaveglow.load_params(tmp_path / "out" / "params.yaml")
    assert params.model.upsample_stride == params.audio.hop_length == 128
    assert params.train.batch_size == 3 and params.export.sigma == 0.7  # other sections kept
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["layer_parity"] is None and report["upsample_stride_from"] == "given"


@pytest.mark.slow  # about 15 s; CI runs it
def test_cli_module_in_subprocess_without_glow_importable(reference, tmp_path):
    """`python -m` on NVIDIA's pickled layout where a `glow` import would fail: the reference is not what reads it."""
    checkpoint = glow_checkpoints.save(reference, tmp_path / "waveglow.pt", "pickled_legacy")
    poison = tmp_path / "poison"
    poison.mkdir()
    (poison / "glow.py").write_text("raise ImportError('the converter must not import glow')\n")
    env = dict(os.environ, PYTHONPATH=f"{poison}{os.pathsep}{ROOT}", TF_CPP_MIN_LOG_LEVEL="2")
    out = tmp_path / "converted"
    proc = subprocess.run(
        [sys.executable, "-m", "tfwaveglow.convert_nvidia", f"--checkpoint={checkpoint}", f"--output={out}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pickled model (glow.WaveGlow)" in proc.stdout and "layer parity:" in proc.stdout
    model = tfwaveglow.load_model(out)
    assert model.n_flows == 4 and model.wn_n_channels == 8


def test_package_imports_without_torch():
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import tfwaveglow.convert, tfwaveglow.convert_nvidia\n"
        "from tfwaveglow.convert import convert_checkpoint\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


# --------------------------------------------------------------------------- errors
def test_garbage_and_empty_files_are_not_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path in (garbage, empty):
        with pytest.raises(NotACheckpointError, match=f"{path}: not a PyTorch checkpoint"):
            read_checkpoint(path)
    with pytest.raises(NotACheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pt")


def test_cli_reports_error_in_one_line_with_status_1(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    status = convert_nvidia._run(["convert_nvidia", f"--checkpoint={garbage}", f"--output={tmp_path / 'out'}"])
    assert status == 1
    assert f"error: {garbage}: not a PyTorch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_other_pytorch_model_is_not_waveglow(tmp_path):
    path = save_state(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(NotWaveGlowError, match=f"{path}: not a WaveGlow checkpoint"):
        convert_checkpoint(path)
    path = save_state({"epoch": 3, "notes": "no weights"}, tmp_path / "meta.pt")
    with pytest.raises(NotWaveGlowError, match="no model weights in it"):
        convert_checkpoint(path)


def test_missing_key(reference, tmp_path):
    state = dict(reference.state_dict())
    del state["WN.1.in_layers.1.weight_v"]
    path = save_state(state, tmp_path / "missing.pt")
    with pytest.raises(MissingKeysError, match=r"missing 1 key.*WN\.1\.in_layers\.1\.weight_v") as info:
        convert_checkpoint(path)
    assert str(path) in str(info.value) and "unused keys: ['WN.1.in_layers.1.weight_g']" in str(info.value)

    state = dict(reference.state_dict())
    del state["convinv.2.conv.weight"]
    path = save_state(state, tmp_path / "missing_convinv.pt")
    with pytest.raises(MissingKeysError, match=r"convinv\.2\.conv\.weight"):
        convert_checkpoint(path)


def test_unused_key(reference, tmp_path):
    state = dict(reference.state_dict())
    state["WN.0.extra_layer.weight"] = torch.ones(3)
    path = save_state(state, tmp_path / "unused.pt")
    with pytest.raises(UnusedKeysError, match=f"{path}: 1 key.*'WN.0.extra_layer.weight'"):
        convert_checkpoint(path)
    # Both a shared cond_layer and per-layer cond_layers for one flow: the latter is left over.
    state = dict(reference.state_dict())
    state["WN.2.cond_layers.0.weight"] = torch.ones(16, 640, 1)
    path = save_state(state, tmp_path / "both.pt")
    with pytest.raises(UnusedKeysError, match=r"WN\.2\.cond_layers\.0\.weight"):
        convert_checkpoint(path)


def test_shape_mismatch(reference, tmp_path):
    state = dict(reference.state_dict())
    for name, shape in (("weight_v", (12, 3, 1)), ("weight_g", (12, 1, 1)), ("bias", (12,))):
        state[f"WN.3.start.{name}"] = torch.ones(shape)  # flow 3 wider than the others
    path = save_state(state, tmp_path / "shape.pt")
    with pytest.raises(ShapeMismatchError, match=r"'WN\.3\.start' weight has shape \(12, 3, 1\), .* needs \(8, 3, 1\)"):
        convert_checkpoint(path)
    state = dict(reference.state_dict())
    state["convinv.1.conv.weight"] = torch.ones(6, 6, 1)  # breaks the early-output rule (8 6 6 4)
    path = save_state(state, tmp_path / "sizes.pt")
    with pytest.raises(ShapeMismatchError, match="do not follow WaveGlow's rule"):
        convert_checkpoint(path)


def test_existing_output_needs_overwrite(state_dict_file, tmp_path):
    run_cli(f"--checkpoint={state_dict_file}", f"--output={tmp_path}", "--nocheck_layers")
    with pytest.raises(ConversionError, match="--overwrite"):
        run_cli(f"--checkpoint={state_dict_file}", f"--output={tmp_path}")
    run_cli(f"--checkpoint={state_dict_file}", f"--output={tmp_path}", "--overwrite", "--nocheck_layers")


class _Payload:
    """Pickles as a call to os.system: what a malicious checkpoint would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_cannot_run_code_while_read(tmp_path):
    marker = tmp_path / "pwned"
    path = save_state({"model": _Payload(marker), "iteration": 1}, tmp_path / "evil.pt")
    with pytest.raises(NotWaveGlowError):
        convert_checkpoint(path)
    assert not marker.exists()
