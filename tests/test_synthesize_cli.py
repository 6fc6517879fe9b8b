"""synthesize.py end to end, as a program: mel files, copy synthesis of real speech, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf
import torch
from synth_helpers import N_GROUP, N_MEL, librosa_denoise, tiny_model

import tfwaveglow
from tfwaveglow import audio
from tfwaveglow.denoiser import BIAS_MEL_FRAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The real mel front end (n_fft 1024, hop 256) with a tiny flow: copy synthesis uses NVIDIA's features.
CLI_OVERRIDES = {
    "model.n_flows": 4,
    "model.n_early_every": 2,
    "model.wn.n_layers": 3,
    "model.wn.n_channels": 16,
}
HOP = 256


def cli_params():
    return tfwaveglow.load_params(overrides=CLI_OVERRIDES)


def latent(seed: int, frames: int) -> np.ndarray:
    """The documented per-utterance latent: stateless_normal([frames*hop/g, g], seed=[seed, 0], philox)."""
    shape = [frames * HOP // N_GROUP, N_GROUP]
    return tf.random.stateless_normal(shape, seed=[seed, 0], alg="philox").numpy()


def reference(model, mel, sigma, seed, strength=0.0):
    out = model.infer(mel[None], sigma, z=latent(seed, mel.shape[0])[None]).numpy()[0]
    if strength > 0:
        zeros = np.zeros([1, BIAS_MEL_FRAMES, N_MEL], np.float32)
        bias = model.infer(zeros, 0.0, z=np.zeros([1, BIAS_MEL_FRAMES * HOP // N_GROUP, N_GROUP], np.float32))
        out = librosa_denoise(out, bias.numpy()[0], strength, 1024, 256, 1024)
    return np.clip(out, -1.0, 1.0)


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "synthesize.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def read_wav(path, rate):
    wave, file_rate = soundfile.read(path, dtype="int16")
    info = soundfile.info(path)
    assert file_rate == rate and info.subtype == "PCM_16" and info.channels == 1
    return wave / 32768.0


def assert_close_to(path, expected, rate):
    wave = read_wav(path, rate)
    assert wave.shape == expected.shape
    assert np.max(np.abs(expected)) > 0.05  # not trivially silent
    np.testing.assert_allclose(wave, expected, atol=1e-4 + 1.0 / 32768, rtol=0)


def test_mels_and_copy_synthesis_with_bad_inputs_skipped(tmp_path, speech_clips):
    params = cli_params()
    model = tiny_model(seed=21, params=params)
    model_dir = tfwaveglow.save_model(model, tmp_path / "model", params)
    rng = np.random.default_rng(22)

    def mel(frames):
        return rng.normal(-6.0, 2.0, (frames, N_MEL)).astype(np.float32)

    good = {"frames_first": mel(30), "tacotron": mel(50), "torch": mel(25)}
    np.save(tmp_path / "frames_first.npy", good["frames_first"])
    np.save(tmp_path / "tacotron.npy", good["tacotron"].T)
    torch.save(torch.from_numpy(good["torch"].T[None].copy()), tmp_path / "torch.pt")
    bad = {
        "bad_channels.npy": ("must have 80 channels", rng.normal(size=(20, 79)).astype(np.float32)),
        "bad_nan.npy": ("NaN or Inf", np.where(rng.random((20, N_MEL)) < 0.01, np.nan, mel(20)).astype(np.float32)),
        "bad_zero.npy": ("zero frames", np.zeros((0, N_MEL), np.float32)),
        "bad_dtype.npy": ("floating-point", np.zeros((20, N_MEL), np.int16)),
    }
    for name, (_, array) in bad.items():
        np.save(tmp_path / name, array)
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    mel_dir = tmp_path / "mels"
    mel_dir.mkdir()
    good["long"] = mel(95)  # windowed: 16-frame windows
    np.save(mel_dir / "long.npy", good["long"])
    clip = speech_clips[0]

    inputs = ["frames_first.npy", "tacotron.npy", "torch.pt", *bad, "corrupt.npy", "missing.npy"]
    args = [f"--mel={tmp_path / name}" for name in inputs]
    args += [f"--mel_dir={mel_dir}", f"--wav={clip}", f"--wav={tmp_path / 'corrupt.wav'}"]
    out_dir = tmp_path / "out"
    proc = run_cli(f"--model={model_dir}", f"--output_dir={out_dir}", "--seed=10", "--sigma=0.6",
                   "--batch_size=3", "--window_frames=16", *args)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    rate = params.audio.sampling_rate

    # Seeds follow the input order: --mel files, then --mel_dir, then --wav.
    index = {name: i for i, name in enumerate(inputs)}
    for name in ("frames_first", "tacotron", "torch"):
        file = next(n for n in inputs if n.startswith(name))
        assert_close_to(out_dir / f"{name}.wav", reference(model, good[name], 0.6, 10 + index[file]), rate)
    assert_close_to(out_dir / "long.wav", reference(model, good["long"], 0.6, 10 + len(inputs)), rate)

    # Copy synthesis of a real speech clip: wav -> NVIDIA's log-mel -> wav.
    speech = audio.load_audio(clip, rate)
    speech_mel = audio.mel_spectrogram(speech, params.audio)
    stem = os.path.splitext(os.path.basename(clip))[0]
    expected = reference(model, speech_mel, 0.6, 10 + len(inputs) + 1)
    assert_close_to(out_dir / f"{stem}.wav", expected, rate)
    assert abs(expected.shape[0] - speech.shape[0]) <= HOP  # frames * hop covers the clip

    for name, (problem, _) in bad.items():
        assert f"FAILED {tmp_path / name}: " in proc.stderr and problem in proc.stderr
        assert not (out_dir / name.replace(".npy", ".wav")).exists()
    for name, problem in [("corrupt.npy", "not a readable .npy"), ("missing.npy", "file not found"),
                          ("corrupt.wav", "cannot read audio")]:  # fmt: skip
        assert f"FAILED {tmp_path / name}: " in proc.stderr and problem in proc.stderr
    assert sorted(os.listdir(out_dir)) == sorted(["frames_first.wav", "tacotron.wav", "torch.wav", "long.wav",
                                                  f"{stem}.wav"])  # fmt: skip
    assert "synthesised 5 of 12 inputs" in proc.stdout


@pytest.mark.slow  # about 15 s; CI runs it
def test_training_run_directory_with_denoiser(tmp_path):
    params = cli_params()
    model = tiny_model(seed=23, weight_norm=True, params=params)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    tfwaveglow.save_params(params, str(run_dir / "params.yaml"))
    tf.train.Checkpoint(model=model).save(str(run_dir / "checkpoints" / "ckpt"))
    rng = np.random.default_rng(24)
    mels = {"one": rng.normal(-6, 2, (12, N_MEL)).astype(np.float32), "two": rng.normal(-6, 2, (40, N_MEL))}
    for name, m in mels.items():
        np.save(tmp_path / f"{name}.npy", m)
    out_dir = tmp_path / "out"
    proc = run_cli(f"--model={run_dir}", f"--output_dir={out_dir}", f"--mel={tmp_path / 'one.npy'}",
                   f"--mel={tmp_path / 'two.npy'}", "--seed=5", "--sigma=0.8", "--denoiser_strength=0.3",
                   "--batch_size=2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    folded = model.fold_weight_norm()
    for i, (name, m) in enumerate(mels.items()):
        expected = reference(folded, m.astype(np.float32), 0.8, 5 + i, strength=0.3)
        assert_close_to(out_dir / f"{name}.wav", expected, params.audio.sampling_rate)


@pytest.mark.slow  # about 30 s; CI runs it
def test_positional_inputs_and_the_models_recommended_settings(tmp_path, speech_clips):
    params = tfwaveglow.load_params(overrides={**CLI_OVERRIDES, "export.sigma": 0.7, "export.denoiser_strength": 0.05})
    model = tiny_model(seed=25, params=params)
    model_dir = tfwaveglow.save_model(model, tmp_path / "model", params)
    rate = params.audio.sampling_rate
    mel = np.random.default_rng(26).normal(-6.0, 2.0, (30, N_MEL)).astype(np.float32)
    np.save(tmp_path / "a.npy", mel)
    audio.save_wav(str(tmp_path / "b.wav"), audio.load_audio(speech_clips[1], rate)[:12000], rate)

    given = run_cli(f"--model={model_dir}", f"--output_dir={tmp_path / 'given'}", "--seed=3",
                    str(tmp_path / "a.npy"), str(tmp_path / "b.wav"))  # fmt: skip
    assert given.returncode == 0, given.stderr[-3000:]
    assert (
        "synthesising with sigma 0.7 (the model's export.sigma), "
        "denoiser strength 0.05 (the model's export.denoiser_strength)" in given.stdout
    )
    assert "synthesised 2 of 2 inputs" in given.stdout
    assert sorted(os.listdir(tmp_path / "given")) == ["a.wav", "b.wav"]

    flagged = run_cli(f"--model={model_dir}", f"--output_dir={tmp_path / 'flagged'}", "--seed=3", "--sigma=0.7",
                      "--denoiser_strength=0.05", f"--mel={tmp_path / 'a.npy'}",
                      f"--wav={tmp_path / 'b.wav'}")  # fmt: skip
    assert flagged.returncode == 0, flagged.stderr[-3000:]
    assert "synthesising with sigma 0.7 (--sigma), denoiser strength 0.05 (--denoiser_strength)" in flagged.stdout
    for name in ("a.wav", "b.wav"):
        given_wave, flagged_wave = (read_wav(tmp_path / run / name, rate) for run in ("given", "flagged"))
        np.testing.assert_array_equal(given_wave, flagged_wave)
    # Input i, in the order given, uses seed 3 + i: a.npy seed 3, b.wav (copy synthesis) seed 4.
    assert_close_to(tmp_path / "given" / "a.wav", reference(model, mel, 0.7, 3, strength=0.05), rate)
    speech_mel = audio.mel_spectrogram(audio.load_audio(str(tmp_path / "b.wav"), rate), params.audio)
    assert_close_to(tmp_path / "given" / "b.wav", reference(model, speech_mel, 0.7, 4, strength=0.05), rate)


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to synthesise"),
        # Each case is a fresh process of about 8 s: the rest run in CI (-m slow).
        pytest.param(
            ["notes.txt"],
            "notes.txt: unknown input file type '.txt': expected a mel (.npy, .pt)",
            marks=pytest.mark.slow,
        ),
        pytest.param(["a.npy", "mel"], "mel: unknown input file type '(no suffix)'", marks=pytest.mark.slow),
        pytest.param(["--mel=x.npy", "--batch_size=0"], "--batch_size must be >= 1", marks=pytest.mark.slow),
        pytest.param(["--mel=x.npy", "--sigma=-1"], "must be >= 0", marks=pytest.mark.slow),
        pytest.param(
            ["--mel=x.npy", "--model=/no/such/model"],
            "cannot load the model: no model at /no/such/model",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_usage_errors(tmp_path, args, message):
    proc = run_cli(f"--model={tmp_path}", f"--output_dir={tmp_path / 'out'}", *args)
    assert proc.returncode != 0 and message in proc.stderr
