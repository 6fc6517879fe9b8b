"""python -m tfwaveglow.demo: copy synthesis of real recordings with the shipped model."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from export_helpers import ROOT
from synth_helpers import librosa_denoise

import tfwaveglow
from tfwaveglow import audio as audio_lib
from tfwaveglow import demo, metrics, naturalness
from tfwaveglow.config import ExportParams
from tfwaveglow.denoiser import BIAS_MEL_FRAMES

MODEL_DIR = os.path.join(ROOT, "models", "fishfillets_cs")
EXAMPLES = os.path.join(ROOT, "examples")
SHORT_EXAMPLE = os.path.join(EXAMPLES, "male", "grail-gr-v-vsechny1.flac")  # 2.0 s
OTHER_EXAMPLE = os.path.join(EXAMPLES, "female", "reef-uts-m-zelvy.flac")
RATE = 22050
WAVS = ("original.wav", "waveglow.wav", "waveglow_denoised.wav", "griffin_lim.wav")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo CLI on one held-out example plus three bad files, with the default settings."""
    tmp = tmp_path_factory.mktemp("demo")
    inputs = tmp / "in"
    (inputs / "speech").mkdir(parents=True)
    shutil.copy(SHORT_EXAMPLE, inputs / "speech" / "grail.flac")
    (inputs / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    soundfile.write(inputs / "empty.wav", np.zeros(0, np.int16), RATE, subtype="PCM_16")
    soundfile.write(inputs / "short.wav", np.full(300, 1000, np.int16), RATE, subtype="PCM_16")
    out = tmp / "out"
    demo.main(["demo", f"--input_dir={inputs}", f"--output_dir={out}", f"--model={MODEL_DIR}"])
    summary = json.loads((out / "summary.json").read_text())
    return {"inputs": inputs, "out": out, "summary": summary}


def read_wav(path):
    data, rate = soundfile.read(path, dtype="int16")
    assert rate == RATE and data.ndim == 1, path
    assert soundfile.info(path).subtype == "PCM_16"
    return data.astype(np.float32) / 32768.0


def test_every_output_is_written_finite_full_length_and_audible(demo_run):
    folder = demo_run["out"] / "speech" / "grail"
    assert sorted(os.listdir(folder)) == sorted([*WAVS, "mels.png"])
    assert (folder / "mels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    source, _ = soundfile.read(SHORT_EXAMPLE, dtype="int16")
    original = read_wav(folder / "original.wav")
    np.testing.assert_array_equal(original, source / 32768.0)  # the input itself, untouched
    for name in WAVS[1:]:
        wave = read_wav(folder / name)
        assert wave.shape == source.shape, name
        assert np.all(np.isfinite(wave)), name
        rms = float(np.sqrt(np.mean(wave**2)))
        assert rms > 0.1 * float(np.sqrt(np.mean(original**2))), f"{name} is nearly silent (rms {rms:.2g})"


def test_outputs_resemble_their_own_utterance_more_than_another(demo_run):
    """Log-mel distance to the original is smaller than to a different utterance of the same speaker set."""
    params = tfwaveglow.load_params(os.path.join(MODEL_DIR, "params.yaml"))
    folder = demo_run["out"] / "speech" / "grail"
    original = read_wav(folder / "original.wav")
    other = audio_lib.load_audio(OTHER_EXAMPLE, RATE)
    for name in ("waveglow.wav", "waveglow_denoised.wav", "griffin_lim.wav"):
        wave = read_wav(folder / name)
        own = metrics.log_mel_distance(original, wave, params.audio)
        foreign = metrics.log_mel_distance(other, wave, params.audio)
        assert own < foreign, f"{name}: {own:.3f} to its original, {foreign:.3f} to another utterance"
    # Griffin-Lim inverts the exact magnitude's mel: far closer than any other utterance.
    gl = read_wav(folder / "griffin_lim.wav")
    assert metrics.log_mel_distance(original, gl, params.audio) < 0.5


def test_denoised_output_is_nvidias_bias_subtraction_of_the_waveglow_output(demo_run):
    model = tfwaveglow.load_model(MODEL_DIR)
    folder = demo_run["out"] / "speech" / "grail"
    wave = read_wav(folder / "waveglow.wav")
    zeros = np.zeros([1, BIAS_MEL_FRAMES, 80], np.float32)
    bias_audio = model.infer(zeros, 0.0, z=tf.zeros(model.latent_shape(zeros))).numpy()[0]
    strength = demo_run["summary"]["denoiser_strength"]
    assert strength == demo.DEFAULT_DENOISER_STRENGTH > 0
    expected = librosa_denoise(wave, bias_audio, strength, 1024, 256, 1024)
    denoised = read_wav(folder / "waveglow_denoised.wav")
    # The demo denoises the unrounded samples; the reference their 16-bit rounding. The demo also
    # denoises all frames * hop samples before cutting to the input's length, so the last n_fft
    # samples see real signal where the reference sees reflect padding.
    np.testing.assert_allclose(denoised[:-1024], np.clip(expected, -1, 1)[:-1024], atol=5e-4)
    assert np.max(np.abs(denoised - wave)) > 1e-3  # the denoiser changed something


def test_summary_reports_scores_and_every_skipped_file(demo_run):
    summary = demo_run["summary"]
    assert summary["num_files"] == 1 and summary["num_skipped"] == 3
    entry = summary["files"][0]
    assert entry["file"] == "speech/grail.flac" and entry["output_dir"] == "speech/grail"
    assert entry["seconds"] == pytest.approx(44036 / RATE, abs=1e-3)
    for system in demo.SYSTEMS:
        assert entry["metrics"][system]["log_mel_distance"] > 0
    # Griffin-Lim from the exact mel scores far better than the distance between two utterances.
    assert entry["metrics"]["griffin_lim"]["log_mel_distance"] < 0.5
    assert list(entry["metrics"]) == list(demo.SCORED) and list(summary["average"]) == list(demo.SCORED)
    assert "errors" not in entry  # every metric, DNSMOS included, was computed
    export = tfwaveglow.load_params(os.path.join(MODEL_DIR, "params.yaml")).export
    assert summary["sigma"] == export.sigma and summary["model"] == MODEL_DIR
    skipped = {item["file"]: item["error"] for item in summary["skipped"]}
    inputs = demo_run["inputs"]
    assert skipped["corrupt.wav"].startswith(f"{inputs / 'corrupt.wav'}: cannot read audio")
    assert skipped["empty.wav"] == f"{inputs / 'empty.wav'}: the file holds no samples"
    assert "short.wav: 300 samples, too short" in skipped["short.wav"]
    assert not (demo_run["out"] / "corrupt").exists()


def test_the_original_and_every_output_get_naturalness_scores(demo_run):
    """DNSMOS of each written wav, scored here from the file, is what the summary holds."""
    summary = demo_run["summary"]
    scores = summary["files"][0]["metrics"]
    folder = demo_run["out"] / "speech" / "grail"
    original = read_wav(folder / "original.wav")
    assert {key: scores["original"][key] for key in naturalness.KEYS} == naturalness.dnsmos(original, RATE)
    denoised = read_wav(folder / "waveglow_denoised.wav")
    assert {key: scores["waveglow_denoised"][key] for key in naturalness.KEYS} == naturalness.dnsmos(denoised, RATE)
    # The original against itself: each intrusive metric's ceiling.
    assert scores["original"]["log_mel_distance"] == 0.0 and scores["original"]["mcd"] == 0.0
    assert scores["original"]["pesq_wb"] == pytest.approx(4.64, abs=0.01) and scores["original"]["stoi"] > 0.999
    # DNSMOS tells the recording from the recording buried in white noise (5 dB SNR).
    noise = np.random.default_rng(5).normal(0.0, 1.0, original.shape)
    noise *= np.sqrt(np.mean(original**2) / np.mean(noise**2) / 10 ** (5 / 10))
    noisy = naturalness.dnsmos((original + noise).astype(np.float32), RATE)
    assert scores["original"]["dnsmos_ovrl"] > noisy["dnsmos_ovrl"] + 0.3
    for system in demo.SCORED:
        assert all(1.0 < scores[system][key] < 5.0 for key in naturalness.KEYS), system
        assert summary["average"][system]["dnsmos_ovrl"] == {"mean": scores[system]["dnsmos_ovrl"], "files": 1}


def test_the_printed_table_has_every_column_filled(demo_run):
    lines = demo.format_summary(demo_run["summary"]).splitlines()
    columns = ["log-mel", "MCD", "PESQ", "STOI", "SIG", "BAK", "OVRL", "P.808"]
    assert lines[0].split() == ["file", "sec", "system", *columns]
    titles = [demo.SYSTEM_TITLES[s] for s in demo.SCORED]
    body = lines[1:9]
    assert body[0].startswith("speech/grail.flac") and body[4].startswith("mean")
    for line, title in zip(body, titles * 2):
        cells = line.split()
        assert title in line and "-" not in cells and len(cells[-8:]) == 8, line
        float(cells[-1])
    scores = demo_run["summary"]["files"][0]["metrics"]
    assert body[3].split()[-2] == f"{scores['griffin_lim']['dnsmos_ovrl']:.2f}"
    assert sorted(line.split(":")[0] for line in lines[9:]) == [
        f"skipped {demo_run['inputs'] / name}" for name in ("corrupt.wav", "empty.wav", "short.wav")
    ]


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(SystemExit, match=r"input directory .*absent does not exist"):
        demo.main(["demo", f"--input_dir={tmp_path / 'absent'}", f"--model={MODEL_DIR}"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(SystemExit, match=r"holds no .wav, .flac or .ogg files"):
        demo.main(["demo", f"--input_dir={tmp_path / 'empty'}", f"--model={MODEL_DIR}"])
    with pytest.raises(SystemExit, match=r"demo: error: no model at .*nowhere"):
        demo.main(["demo", f"--model={tmp_path / 'nowhere'}"])
    with pytest.raises(SystemExit, match=r"denoiser_strength must be > 0"):
        demo.main(["demo", f"--input_dir={EXAMPLES}", f"--model={MODEL_DIR}", "--denoiser_strength=0"])


def test_settings_default_to_the_models_recommendations():
    recommended = ExportParams(sigma=0.8, denoiser_strength=0.05)
    sigma, strength, said = demo.settings_from_model(recommended)
    assert (sigma, strength) == (0.8, 0.05)
    assert said == "sigma 0.8 (the model's export.sigma), denoiser strength 0.05 (the model's export.denoiser_strength)"
    sigma, strength, said = demo.settings_from_model(recommended, sigma=0.5, denoiser_strength=0.2)
    assert (sigma, strength) == (0.5, 0.2)
    assert said == "sigma 0.5 (--sigma), denoiser strength 0.2 (--denoiser_strength)"
    # A model that recommends no denoiser: waveglow_denoised.wav still needs one, at the demo's strength.
    sigma, strength, said = demo.settings_from_model(ExportParams(sigma=0.6, denoiser_strength=0.0))
    assert (sigma, strength) == (0.6, demo.DEFAULT_DENOISER_STRENGTH)
    assert "the demo's default: the model recommends no denoiser" in said


def test_scores_without_the_eval_extra_are_null_with_the_reason(monkeypatch):
    """Without the eval extra (a plain `pip install -e .`) PESQ, STOI and DNSMOS are null; the rest are computed."""
    monkeypatch.setitem(sys.modules, "pesq", None)  # import pesq now raises ImportError
    monkeypatch.setitem(sys.modules, "pystoi", None)
    monkeypatch.setitem(sys.modules, "speechmos", None)
    from tfwaveglow import evaluation

    params = tfwaveglow.load_params(os.path.join(MODEL_DIR, "params.yaml"))
    reference = audio_lib.load_audio(SHORT_EXAMPLE, RATE)
    noisy = reference + np.random.default_rng(0).normal(0, 0.01, reference.shape).astype(np.float32)
    values, errors = evaluation.score(reference, noisy, params.audio)
    assert values["pesq_wb"] is None and "PESQ-WB needs the package pesq" in errors["pesq_wb"]
    assert values["stoi"] is None and "STOI needs the package pystoi" in errors["stoi"]
    assert all(values[key] is None for key in naturalness.KEYS)
    assert errors["dnsmos"].startswith("DNSMOS needs the package speechmos")
    assert np.isfinite(values["log_mel_distance"]) and values["log_mel_distance"] > 0 and values["mcd"] > 0
    # The printed table shows "-" for what was not computed.
    summary = {
        "files": [{"file": "a.flac", "seconds": 2.0, "metrics": dict.fromkeys(demo.SCORED, values)}],
        "average": {s: {m: {"mean": v, "files": 1} for m, v in values.items()} for s in demo.SCORED},
        "total_seconds_of_audio": 2.0,
        "skipped": [],
    }
    first = demo.format_summary(summary).splitlines()[1].split()
    assert first[-6:] == ["-"] * 6 and first[-8] != "-"
