"""SavedModel export: loaded in a fresh process that cannot import tfwaveglow, compared with the model."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from export_helpers import ROOT, run, run_in_fresh_process
from synth_helpers import HOP, N_GROUP, N_MEL, librosa_denoise, random_mel, reference_latent, tiny_model, tiny_params

import tfwaveglow
from tfwaveglow.denoiser import BIAS_MEL_FRAMES
from tfwaveglow.export import WaveGlowServingModule, export_saved_model

N_FFT, WIN = 256, 256  # the tiny params' STFT


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A training run (weight-norm checkpoint) exported by the CLI; serving_default fixed at sigma 0, strength 0.5."""
    tmp = tmp_path_factory.mktemp("export")
    params = tiny_params()
    model = tiny_model(seed=11, weight_norm=True)
    run_dir = tmp / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    tfwaveglow.save_params(params, str(run_dir / "params.yaml"))
    tf.train.Checkpoint(model=model).save(str(run_dir / "checkpoints" / "ckpt"))
    folded = model.fold_weight_norm()
    assert not folded.weight_norm

    base = tmp / "export" / "waveglow"
    proc = run(
        [sys.executable, "-m", "tfwaveglow.export", f"--model={run_dir}", f"--output={base / '1'}", "--sigma=0",
         "--denoiser_strength=0.5"],
        cwd=ROOT,
    )  # fmt: skip
    assert "synthesize_from_latent" in proc.stdout
    return {"tmp": tmp, "params": params, "model": folded, "base": base, "path": str(base / "1")}


@pytest.fixture(scope="module")
def fresh_results(exported):
    """Every signature called in a process that cannot import tfwaveglow."""
    tmp = exported["tmp"]
    rng = np.random.default_rng(12)
    frames = 12
    batch_mel = np.zeros([3, 14, N_MEL], np.float32)
    lengths = np.array([14, 9, 3], np.int32)
    for i, n in enumerate(lengths):
        batch_mel[i, :n] = random_mel(rng, n)
    batch_mel[1, 9:] = 50.0  # padding past an item's length must not matter
    inputs = {
        "mel": np.stack([random_mel(rng, frames), random_mel(rng, frames)]),
        "z": rng.standard_normal([2, frames * HOP // N_GROUP, N_GROUP]).astype(np.float32),
        "sigma": np.array([0.6, 0.9], np.float32),
        "batch_mel": batch_mel,
        "lengths": lengths,
        "batch_sigma": np.array([0.6, 0.8, 1.0], np.float32),
        "strength": np.array([0.0, 0.3, 0.0], np.float32),
        "seeds": np.array([7, 8, -9], np.int64),
        "hop": np.array(HOP),
    }
    results, errors = run_in_fresh_process(tmp, exported["path"], inputs)
    return inputs, results, errors


def bias_audio(model):
    zeros = np.zeros([1, BIAS_MEL_FRAMES, N_MEL], np.float32)
    return model.infer(zeros, 0.0, z=np.zeros([1, BIAS_MEL_FRAMES * HOP // N_GROUP, N_GROUP], np.float32)).numpy()[0]


def test_weight_norm_is_folded_into_plain_variables(exported, fresh_results):
    _, results, _ = fresh_results
    folded = exported["model"]
    assert int(results["variables"]) == len(folded.weights)
    assert not any("kernel_g" in n or "kernel_v" in n for n in results["variable_names"])
    for i, w in enumerate(folded.weights):
        np.testing.assert_allclose(results[f"variable_{i}"], w.numpy(), rtol=1e-6, atol=1e-7)


def test_synthesize_from_latent_equals_model_infer(exported, fresh_results):
    inputs, results, _ = fresh_results
    expected = exported["model"].infer(inputs["mel"], inputs["sigma"], z=inputs["z"]).numpy()
    assert np.max(np.abs(expected)) > 0.1
    np.testing.assert_allclose(results["from_latent"], expected, atol=1e-5, rtol=1e-5)


def test_synthesize_uses_each_items_seed_length_sigma_and_denoiser(exported, fresh_results):
    inputs, results, _ = fresh_results
    model = exported["model"]
    lengths = inputs["lengths"]
    np.testing.assert_array_equal(results["synth_lengths"], lengths * HOP)
    assert results["synth_audio"].shape == (3, 14 * HOP)
    bias = bias_audio(model)
    for i, n in enumerate(lengths):
        z = reference_latent(int(inputs["seeds"][i]), int(n))
        audio = model.infer(inputs["batch_mel"][i : i + 1, :n], inputs["batch_sigma"][i], z=z[None]).numpy()[0]
        if inputs["strength"][i] > 0:
            audio = librosa_denoise(audio, bias, float(inputs["strength"][i]), N_FFT, HOP, WIN)
        expected = np.clip(audio, -1.0, 1.0)
        np.testing.assert_allclose(results["synth_audio"][i, : n * HOP], expected, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(results["synth_audio"][i, n * HOP :], 0.0)
    np.testing.assert_array_equal(results["synth_again"], results["synth_audio"])  # same seed, same audio
    # Item 1 alone (its own length, no padding, batch of one) gives the same audio as in the batch.
    np.testing.assert_allclose(results["synth_alone"][0], results["synth_audio"][1, : lengths[1] * HOP], atol=1e-6)


def test_serving_default_uses_the_sigma_and_strength_fixed_at_export(exported, fresh_results):
    inputs, results, _ = fresh_results
    model = exported["model"]
    assert results["serving"].shape == (2, 12 * HOP)
    # Exported with --sigma=0 (the latent has no effect) and --denoiser_strength=0.5.
    expected = model.infer(inputs["mel"], 0.0, z=np.zeros_like(inputs["z"])).numpy()
    bias = bias_audio(model)
    expected = np.stack([librosa_denoise(a, bias, 0.5, N_FFT, HOP, WIN) for a in expected])
    assert np.max(np.abs(expected)) > 0.05
    np.testing.assert_allclose(results["serving"], np.clip(expected, -1, 1), atol=1e-5, rtol=0)


def test_serving_default_draws_fresh_noise_per_call(exported, tmp_path):
    params_path = tmp_path / "params.yaml"
    tfwaveglow.save_params(exported["params"], str(params_path))
    module = WaveGlowServingModule(exported["model"], exported["params"], str(params_path), sigma=0.6)
    mel = random_mel(np.random.default_rng(14), 10)[None]
    one, two = (module.serving_default(tf.constant(mel))["audio"].numpy() for _ in range(2))
    assert one.shape == (1, 10 * HOP) and np.all(np.abs(one) <= 1.0)
    assert np.max(np.abs(one - two)) > 1e-2


@pytest.mark.parametrize(
    "case, message",
    [
        ("serving_default/channels", "mel must have 80 channels"),
        ("synthesize/channels", "mel must have 80 channels"),
        ("synthesize_from_latent/channels", "mel must have 80 channels"),
        ("serving_default/nan", "mel contains NaN or Inf"),
        ("synthesize/nan", "mel contains NaN or Inf"),
        ("synthesize_from_latent/nan", "mel contains NaN or Inf"),
        ("serving_default/zero_frames", "mel has zero frames"),
        ("synthesize/zero_frames", "mel has zero frames"),
        ("synthesize_from_latent/zero_frames", "mel has zero frames"),
        ("serving_default/dtype", "expected to be a float tensor but is a double tensor"),
        ("synthesize/dtype", "expected to be a float tensor but is a double tensor"),
        ("synthesize_from_latent/dtype", "expected to be a float tensor but is a double tensor"),
        ("synthesize/seed_dtype", "expected to be a int64 tensor but is a int32 tensor"),
        ("synthesize/too_long", "mel_lengths must be <= frames"),
        ("synthesize/lengths_count", "mel_lengths must have one value per batch item"),
        ("synthesize/negative_sigma", "sigma must be >= 0"),
        ("synthesize/short_for_denoiser", "denoiser_strength > 0 needs at least 3 mel frames"),
        ("synthesize_from_latent/z_shape", "z must have shape"),
        ("synthesize_from_latent/z_nan", "z contains NaN or Inf"),
        ("serving_default/rank", "mel must be 3-D"),
    ],
)
def test_bad_input_is_an_invalid_argument_error_naming_the_problem(fresh_results, case, message):
    _, _, errors = fresh_results
    kind, text = errors[case]
    assert kind == "InvalidArgumentError", (case, kind, text)
    assert message in text, (case, text)


@pytest.mark.slow  # about 11 s; CI runs it
def test_saved_model_cli_lists_the_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = run([cli, "show", "--dir", exported["path"], "--all"]).stdout
    blocks = {
        m.group(1): m.group(2) for m in re.finditer(r"signature_def\['(\w+)'\]:(.*?)(?=signature_def|\Z)", out, re.S)
    }
    assert {"serving_default", "synthesize", "synthesize_from_latent"} <= set(blocks)

    def tensors(block, section):
        found = re.findall(rf"{section}\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: \(([-\d, ]*)\)", block)
        return {name: (dtype, shape.replace(" ", "")) for name, dtype, shape in found}

    assert tensors(blocks["serving_default"], "inputs") == {"mel": ("DT_FLOAT", "-1,-1,-1")}
    assert tensors(blocks["serving_default"], "outputs") == {"audio": ("DT_FLOAT", "-1,-1")}
    assert tensors(blocks["synthesize"], "inputs") == {
        "mel": ("DT_FLOAT", "-1,-1,-1"),
        "mel_lengths": ("DT_INT32", "-1"),
        "sigma": ("DT_FLOAT", "-1"),
        "denoiser_strength": ("DT_FLOAT", "-1"),
        "seed": ("DT_INT64", "-1"),
    }
    assert tensors(blocks["synthesize"], "outputs") == {
        "audio": ("DT_FLOAT", "-1,-1"),
        "audio_lengths": ("DT_INT32", "-1"),
    }
    assert tensors(blocks["synthesize_from_latent"], "inputs") == {
        "mel": ("DT_FLOAT", "-1,-1,-1"),
        "z": ("DT_FLOAT", "-1,-1,-1"),
        "sigma": ("DT_FLOAT", "-1"),
    }
    assert tensors(blocks["synthesize_from_latent"], "outputs") == {"audio": ("DT_FLOAT", "-1,-1")}
    assert "PyFunc" not in out and "EagerPyFunc" not in out


def test_only_standard_ops_in_the_graph(exported):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(exported["path"], "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node} | {n.op for fn in graph.library.function for n in fn.node_def}
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    assert {"StatelessRandomNormalV2", "RandomStandardNormal", "RFFT", "IRFFT"} <= ops
    assert os.path.isfile(os.path.join(exported["path"], "assets", "params.yaml"))


def test_export_refuses_a_non_version_directory_and_an_existing_version(exported, tmp_path):
    with pytest.raises(ValueError, match="must be a version number"):
        export_saved_model(exported["model"], exported["params"], tmp_path / "waveglow")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        export_saved_model(exported["model"], exported["params"], exported["path"])


def test_synthesize_cli_drives_the_saved_model(exported, tmp_path):
    """The CLI on the export's base path (latest version), windowed and denoised, matches the model."""
    rng = np.random.default_rng(13)
    mels = {"short": random_mel(rng, 9), "long": random_mel(rng, 70)}
    for name, mel in mels.items():
        np.save(tmp_path / f"{name}.npy", mel.T)  # Tacotron 2's layout
    out_dir = tmp_path / "out"
    run(
        [
            sys.executable,
            "synthesize.py",
            f"--model={exported['base']}",
            f"--output_dir={out_dir}",
            f"--mel={tmp_path / 'short.npy'}",
            f"--mel={tmp_path / 'long.npy'}",
            "--seed=20",
            "--sigma=0.7",
            "--denoiser_strength=0.2",
            "--window_frames=24",
            "--batch_size=2",
        ],
        cwd=ROOT,
    )
    model = exported["model"]
    bias = bias_audio(model)
    for index, (name, mel) in enumerate(mels.items()):
        wave, rate = soundfile.read(out_dir / f"{name}.wav", dtype="int16")
        assert rate == exported["params"].audio.sampling_rate
        z = reference_latent(20 + index, mel.shape[0])
        expected = model.infer(mel[None], 0.7, z=z[None]).numpy()[0]
        expected = np.clip(librosa_denoise(expected, bias, 0.2, N_FFT, HOP, WIN), -1, 1)
        assert wave.shape == expected.shape
        np.testing.assert_allclose(wave / 32768.0, expected, atol=1e-4 + 1 / 32768, rtol=0)


def test_long_mels_are_synthesised_in_windows_equal_to_one_shot(tmp_path):
    """A window of a few frames: every signature runs many windows, equal to one ``model.infer`` call."""
    model = tiny_model(seed=13)
    params = tiny_params()
    left, right = tfwaveglow.synthesis.context_frames(model)
    window = left + right + 2 + 5  # the margin of one frame each side, and five kept frames
    path = export_saved_model(model, params, tmp_path / "waveglow" / "1", window_frames=window)
    loaded = tf.saved_model.load(path)
    assert int(loaded.window_frames.numpy()) == window
    rng = np.random.default_rng(13)
    frames = 6 * window + 3
    mel = random_mel(rng, frames)[None]
    z = rng.standard_normal((1, frames * HOP // N_GROUP, N_GROUP)).astype(np.float32)
    expected = model.infer(mel, 0.7, z=z).numpy()
    got = loaded.signatures["synthesize_from_latent"](mel=mel, z=z, sigma=np.array([0.7], np.float32))["audio"]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, rtol=0)

    seeded = loaded.signatures["synthesize"](
        mel=mel,
        mel_lengths=np.array([frames], np.int32),
        sigma=np.array([0.7], np.float32),
        denoiser_strength=np.array([0.2], np.float32),
        seed=np.array([4], np.int64),
    )["audio"].numpy()
    one_shot = model.infer(mel, 0.7, z=reference_latent(4, frames)[None]).numpy()[0]
    denoised = librosa_denoise(one_shot, bias_audio(model), 0.2, N_FFT, HOP, WIN)
    np.testing.assert_allclose(seeded[0], np.clip(denoised, -1.0, 1.0), atol=1e-4, rtol=0)


def test_window_frames_must_exceed_the_context(tmp_path):
    model = tiny_model(seed=13)
    left, right = tfwaveglow.synthesis.context_frames(model)
    with pytest.raises(ValueError, match="must exceed the model's context"):
        export_saved_model(model, tiny_params(), tmp_path / "waveglow" / "1", window_frames=left + right + 2)


LITERT_FRESH = """
import sys
sys.modules["tensorflow"] = None  # LiteRT alone: any import of TensorFlow now fails
sys.modules["tfwaveglow"] = None
import numpy as np
from ai_edge_litert.interpreter import Interpreter
try:
    import tensorflow
    sys.exit("tensorflow must not be importable here")
except ImportError:
    pass
inputs = dict(np.load(sys.argv[2]))
runner = Interpreter(model_path=sys.argv[1]).get_signature_runner("synthesize_from_latent")
out = {}
for key in ("short", "long"):
    out[key] = runner(mel=inputs[key + "_mel"], z=inputs[key + "_z"], sigma=inputs["sigma"])["audio"]
np.savez(sys.argv[3], **out)
assert "tensorflow" not in [m for m in sys.modules if sys.modules[m] is not None]
"""


@pytest.mark.slow  # about 20 s each; CI runs them
@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_litert_model_runs_without_tensorflow_equal_to_model_infer(tmp_path, precision):
    """The .tflite from the CLI, in a process that cannot import TensorFlow, against ``model.infer``."""
    params = tiny_params()
    model = tiny_model(seed=14)
    model_dir = tmp_path / "model"
    tfwaveglow.save_model(model, model_dir, params)
    left, right = tfwaveglow.synthesis.context_frames(model)
    window = left + right + 2 + 6
    out_file = tmp_path / "device" / "waveglow.tflite"
    run(
        [sys.executable, "-m", "tfwaveglow.export", f"--model={model_dir}", f"--output={out_file}", "--format=tflite",
         f"--precision={precision}", f"--window_frames={window}"],
        cwd=ROOT,
    )  # fmt: skip
    rng = np.random.default_rng(14)
    inputs = {"sigma": np.array([0.7], np.float32)}
    for key, frames in (("short", 7), ("long", 5 * window + 2)):
        inputs[key + "_mel"] = random_mel(rng, frames)[None]
        inputs[key + "_z"] = rng.standard_normal((1, frames * HOP // N_GROUP, N_GROUP)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "litert.py").write_text(LITERT_FRESH)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    run([sys.executable, "-I", str(tmp_path / "litert.py"), str(out_file), str(tmp_path / "inputs.npz"),
         str(tmp_path / "out.npz")], cwd=str(tmp_path), env=env)  # fmt: skip
    out = dict(np.load(tmp_path / "out.npz"))
    # float16 storage: the reference is the model with its weights rounded to float16; the converter
    # folds some products of weights (and the 1x1 inverses) before rounding them, hence the looser bound.
    reference, tolerance = model, 1e-4
    if precision == "float16":
        tolerance = 5e-3
        reference = tiny_model(seed=14)
        for var in reference.weights:
            var.assign(var.numpy().astype(np.float16).astype(np.float32))
    for key in ("short", "long"):
        expected = reference.infer(inputs[key + "_mel"], 0.7, z=inputs[key + "_z"]).numpy()
        assert out[key].shape == expected.shape
        relative = np.max(np.abs(out[key] - expected)) / np.max(np.abs(expected))
        assert relative < tolerance, (key, relative)


@pytest.mark.slow  # about 30 s; CI runs it
def test_bfloat16_saved_model_runs_the_wns_in_bfloat16_close_to_float32(tmp_path):
    model = tiny_model(seed=15)
    params = tiny_params()
    f32 = tf.saved_model.load(export_saved_model(model, params, tmp_path / "f32" / "1"))
    bf16 = tf.saved_model.load(export_saved_model(model, params, tmp_path / "bf16" / "1", precision="bfloat16"))
    rng = np.random.default_rng(15)
    mel = random_mel(rng, 20)[None]
    z = rng.standard_normal((1, 20 * HOP // N_GROUP, N_GROUP)).astype(np.float32)
    sigma = np.array([0.6], np.float32)
    a = f32.signatures["synthesize_from_latent"](mel=mel, z=z, sigma=sigma)["audio"].numpy()
    b = bf16.signatures["synthesize_from_latent"](mel=mel, z=z, sigma=sigma)["audio"].numpy()
    assert b.dtype == np.float32
    np.testing.assert_allclose(a, model.infer(mel, 0.6, z=z).numpy(), atol=1e-5)
    snr = 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2))
    assert 15 < snr < 80  # bfloat16 rounding is there, and small (the NVIDIA model's figure: docs/benchmarks.md)
    graph = bf16.signatures["synthesize_from_latent"].graph.as_graph_def()
    nodes = [n for f in graph.library.function for n in f.node_def]
    wn_products = {n.attr["T"].type for n in nodes if n.op == "MatMul"}
    flow_products = {n.attr["T"].type for n in nodes if n.op == "BatchMatMulV2"}  # the 1x1 convs' inverses
    assert tf.bfloat16.as_datatype_enum in wn_products
    assert flow_products == {tf.float32.as_datatype_enum}
