"""evaluate.py and tfwaveglow.evaluation end to end: real clips, a saved tiny model, bad files."""

import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest
import soundfile

import evaluate
import tfwaveglow
from tfwaveglow import audio, evaluation, metrics, naturalness

AP = tfwaveglow.load_params().audio
TINY = {"model.n_flows": 2, "model.n_early_every": 4, "model.wn.n_layers": 2, "model.wn.n_channels": 8}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    params = tfwaveglow.load_params(overrides=TINY)
    model = tfwaveglow.WaveGlow.from_params(params, weight_norm=False)
    return tfwaveglow.save_model(model, str(tmp_path_factory.mktemp("model")), params)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, speech_clips):
    """Two real clips (one per speaker), a 0.2 s snippet, and three files that cannot be evaluated."""
    root = str(tmp_path_factory.mktemp("references"))
    for clip in (speech_clips[0], speech_clips[3]):
        speaker = os.path.basename(os.path.dirname(clip))
        os.makedirs(os.path.join(root, speaker), exist_ok=True)
        shutil.copy(clip, os.path.join(root, speaker, os.path.basename(clip)))
    speech = audio.load_audio(speech_clips[1], 22050)
    # Long enough for the mel, too short for PESQ (1/4 s) and STOI (30 frames of speech).
    audio.save_wav(os.path.join(root, "female", "snippet.wav"), speech[4000:8410], 22050)
    bad = os.path.join(root, "bad")
    os.makedirs(bad)
    with open(speech_clips[0], "rb") as f:
        head = f.read(300)
    with open(os.path.join(bad, "corrupt.ogg"), "wb") as f:
        f.write(head)
    open(os.path.join(bad, "empty.wav"), "wb").close()
    soundfile.write(os.path.join(bad, "short.wav"), speech[:300], 22050, "PCM_16")
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("not audio: ignored\n")
    return root


GOOD = ["female/airplane-let-m-sedadlo.ogg", "male/airplane-let-v-budrada.ogg"]
SYNTHESISED = ("waveglow", "griffin_lim")
BAD = {"bad/corrupt.ogg": "cannot read audio", "bad/empty.wav": "cannot read audio", "bad/short.wav": "300 samples"}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, model_dir, reference_dir):
    out = str(tmp_path_factory.mktemp("evaluation"))
    stdout = io.StringIO()
    argv = ["evaluate.py", f"--reference_dir={reference_dir}", f"--model={model_dir}", f"--output_dir={out}"]
    with contextlib.redirect_stdout(stdout):
        evaluate.main(argv + ["--noprogress", "--seed=7"])
    with open(os.path.join(out, "evaluation.json")) as f:
        result = json.load(f)
    with open(os.path.join(out, "evaluation.md")) as f:
        markdown = f.read()
    return {"out": out, "result": result, "markdown": markdown, "stdout": stdout.getvalue()}


def by_file(result):
    return {entry["file"]: entry for entry in result["files"]}


def test_report_settings_and_file_entries(cli_run, reference_dir, model_dir):
    result = cli_run["result"]
    assert result["reference_dir"] == reference_dir and result["model"] == model_dir
    assert (result["sigma"], result["denoiser_strength"], result["seed"]) == (0.6, 0.0, 7)
    assert result["griffin_lim_iterations"] == 60 and result["sampling_rate"] == 22050
    assert result["packages"] == {"pesq": "0.0.4", "pystoi": "0.4.1", "speechmos": "0.0.1.1", "onnxruntime": "1.32.0"}
    assert result["systems"] == ["reference", "waveglow", "griffin_lim"]
    assert set(result["metrics"]) == set(evaluation.METRICS)
    files = by_file(result)
    assert sorted(files) == sorted(GOOD + ["female/snippet.wav", *BAD])
    assert (result["num_files"], result["num_failed"]) == (6, 3)
    for name, reason in BAD.items():
        assert name in files[name]["error"] and reason in files[name]["error"]
        assert "waveglow" not in files[name]
    for name in GOOD:
        entry = files[name]
        assert "errors" not in entry
        for system in evaluation.SYSTEMS:
            assert set(entry[system]) == set(evaluation.METRICS)
            assert all(np.isfinite(v) for v in entry[system].values())
    snippet = files["female/snippet.wav"]
    assert snippet["seconds"] == pytest.approx(0.2)
    assert set(snippet["errors"]) == {f"{s}.{m}" for s in evaluation.SYSTEMS for m in ("pesq_wb", "stoi", "dnsmos")}
    assert "1/4 of a second" in snippet["errors"]["griffin_lim.pesq_wb"]
    assert snippet["errors"]["waveglow.dnsmos"] == "DNSMOS: 0.20 s of audio, too short (at least 1 s)"
    assert snippet["griffin_lim"]["pesq_wb"] is None and snippet["griffin_lim"]["log_mel_distance"] > 0
    assert all(snippet[s][m] is None for s in evaluation.SYSTEMS for m in evaluation.NATURALNESS_METRICS)
    assert snippet["reference"]["log_mel_distance"] == 0.0 and snippet["reference"]["mcd"] == 0.0


def test_averages_are_means_of_the_per_file_values(cli_run):
    result = cli_run["result"]
    evaluated = [e for e in result["files"] if "error" not in e]
    for system in evaluation.SYSTEMS:
        for name in evaluation.METRICS:
            values = [e[system][name] for e in evaluated if e[system][name] is not None]
            # PESQ, STOI and DNSMOS fail on the 0.2 s snippet; the spectral distances do not.
            spectral = name in ("log_mel_distance", "mcd")
            assert result["average"][system][name]["files"] == len(values) == (3 if spectral else 2)
            assert result["average"][system][name]["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)


def test_griffin_lim_figures_are_sane_and_the_random_model_is_not(cli_run):
    files = by_file(cli_run["result"])
    for name in GOOD:
        gl, wg = files[name]["griffin_lim"], files[name]["waveglow"]
        assert gl["stoi"] > 0.8 and gl["pesq_wb"] > 2.0 and gl["log_mel_distance"] < 0.35 and gl["mcd"] < 10.0
        assert wg["log_mel_distance"] > 5 * gl["log_mel_distance"] and wg["stoi"] < gl["stoi"]
        # The untrained model's output is noise: far less natural than the recording.
        recording = files[name]["reference"]
        assert wg["dnsmos_ovrl"] < recording["dnsmos_ovrl"] - 0.5 and wg["dnsmos_p808"] < recording["dnsmos_p808"]


def test_the_recording_row_is_each_metrics_ceiling_and_its_own_naturalness(cli_run, reference_dir):
    files = by_file(cli_run["result"])
    for name in GOOD:
        recording = files[name]["reference"]
        assert recording["log_mel_distance"] == 0.0 and recording["mcd"] == 0.0
        assert recording["pesq_wb"] == pytest.approx(4.64, abs=0.01) and recording["stoi"] == pytest.approx(1.0)
        reference = audio.load_audio(os.path.join(reference_dir, name), 22050)
        expected = naturalness.dnsmos(reference, 22050)
        assert {key: recording[key] for key in naturalness.KEYS} == expected
        assert "outputs" not in files[name] or "reference" not in files[name]["outputs"]


def test_written_audio_is_what_was_scored(cli_run, reference_dir):
    out, files = cli_run["out"], by_file(cli_run["result"])
    for name in GOOD:
        reference = audio.load_audio(os.path.join(reference_dir, name), 22050)
        for system in SYNTHESISED:
            path = os.path.join(out, files[name]["outputs"][system])
            assert path.endswith(os.path.splitext(name)[0] + ".wav") and f"/{system}/" in path
            info = soundfile.info(path)
            assert (info.samplerate, info.subtype, info.frames) == (22050, "PCM_16", reference.shape[0])
            written = audio.load_audio(path, 22050)
            scored = files[name][system]
            assert metrics.stoi(reference, written, 22050) == pytest.approx(scored["stoi"], abs=1e-9)
            assert metrics.log_mel_distance(reference, written, AP) == pytest.approx(
                scored["log_mel_distance"], abs=1e-9
            )
            if system == "griffin_lim":  # DNSMOS scores what was written (one system, to keep the test short)
                assert naturalness.dnsmos(written, 22050) == {key: scored[key] for key in naturalness.KEYS}
    assert not os.path.exists(os.path.join(out, "waveglow", "bad"))


def test_markdown_table_and_errors(cli_run):
    markdown, result = cli_run["markdown"], cli_run["result"]
    assert cli_run["stdout"].strip() == markdown.strip()
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| file |"))
    cells = [c.strip() for c in header.split("|")[1:-1]]
    assert cells == ["file", "seconds", "system"] + [evaluation.METRIC_LABELS[m] for m in evaluation.METRICS]
    assert cells[-4:] == ["DNSMOS SIG", "DNSMOS BAK", "DNSMOS OVRL", "DNSMOS P.808"]
    table = lines[lines.index(header) + 2 :]
    table = table[: table.index("")]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table]
    # Per file: the recording, WaveGlow, Griffin-Lim; the file and its seconds on the first row only.
    files = [f"`{name}`" for name in sorted(GOOD + ["female/snippet.wav"])] + ["**mean**"]
    assert [row[0] for row in rows] == [c for name in files for c in (name, "", "")]
    assert [row[2] for row in rows] == ["Recording", "WaveGlow", "Griffin-Lim"] * 4
    first = by_file(result)[GOOD[0]]
    row = rows[[r[0] for r in rows].index(f"`{GOOD[0]}`") + 2]
    assert row[6] == f"{first['griffin_lim']['stoi']:.3f}" and row[9] == f"{first['griffin_lim']['dnsmos_ovrl']:.2f}"
    recording = rows[[r[0] for r in rows].index(f"`{GOOD[0]}`")]
    assert recording[3:6] == ["0.000", "0.00", f"{first['reference']['pesq_wb']:.2f}"]
    snippet = rows[[r[0] for r in rows].index("`female/snippet.wav`")]
    assert snippet[5:] == ["–"] * 6  # PESQ, STOI and DNSMOS fail on 0.2 s
    mean_gl = rows[-1]
    average = result["average"]["griffin_lim"]
    assert mean_gl[3] == f"**{average['log_mel_distance']['mean']:.3f}**"
    assert mean_gl[6] == f"**{average['stoi']['mean']:.3f}** (n=2)"
    assert mean_gl[9] == f"**{average['dnsmos_ovrl']['mean']:.2f}** (n=2)"
    for name, reason in BAD.items():
        assert any(line.startswith(f"- `{name}`: not evaluated:") and reason in line for line in lines)
    assert any(line.startswith("- `female/snippet.wav` Griffin-Lim PESQ-WB: PESQ:") for line in lines)
    assert "- `female/snippet.wav` Recording DNSMOS: DNSMOS: 0.20 s of audio, too short (at least 1 s)" in lines


def test_library_run_reproduces_the_scores(cli_run, model_dir, reference_dir):
    model, params = evaluation.load_model_and_params(model_dir)
    again = evaluation.evaluate_directory(model, params, reference_dir, seed=7, model_path=model_dir)
    first, second = by_file(cli_run["result"]), by_file(again)
    for name in GOOD:
        for system in evaluation.SYSTEMS:
            assert first[name][system] == second[name][system]
    other_seed, _ = evaluation.evaluate_file(model, params, os.path.join(reference_dir, GOOD[0]), sigma=0.6, seed=8)
    assert other_seed["waveglow"] != first[GOOD[0]]["waveglow"]
    assert other_seed["griffin_lim"] != first[GOOD[0]]["griffin_lim"]


def test_clear_errors_for_missing_or_empty_directories_and_models(tmp_path, model_dir, reference_dir):
    base = ["evaluate.py", f"--model={model_dir}", "--noprogress"]
    with pytest.raises(SystemExit, match=r"reference directory .*missing does not exist"):
        evaluate.main(base + [f"--reference_dir={tmp_path / 'missing'}"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio here")
    with pytest.raises(SystemExit, match=r"holds no \.wav, \.flac or \.ogg files"):
        evaluate.main(base + [f"--reference_dir={tmp_path / 'empty'}"])
    with pytest.raises(SystemExit, match=r"no model at .*nomodel"):
        evaluate.main(["evaluate.py", f"--reference_dir={reference_dir}", f"--model={tmp_path / 'nomodel'}"])
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "empty.wav").write_bytes(b"")
    with pytest.raises(SystemExit, match="none of the 1 reference files could be evaluated"):
        with contextlib.redirect_stdout(io.StringIO()):
            evaluate.main(base + [f"--reference_dir={only_bad}"])


def test_bad_settings_are_clear_errors(model_dir, reference_dir):
    model, params = evaluation.load_model_and_params(model_dir)
    with pytest.raises(evaluation.EvaluationError, match="denoiser strength must be >= 0"):
        evaluation.evaluate_directory(model, params, reference_dir, denoiser_strength=-0.1)
    with pytest.raises(evaluation.EvaluationError, match="sigma must be >= 0"):
        evaluation.evaluate_directory(model, params, reference_dir, sigma=-1.0)


def test_denoiser_strength(model_dir, reference_dir):
    model, params = evaluation.load_model_and_params(model_dir)
    path = os.path.join(reference_dir, GOOD[1])
    try:
        import tfwaveglow.denoiser  # noqa: F401
    except ImportError:
        with pytest.raises(evaluation.EvaluationError, match="needs tfwaveglow.denoiser"):
            evaluation.evaluate_directory(model, params, reference_dir, denoiser_strength=0.1)
        return
    denoiser = evaluation.make_denoiser(model, params.audio, 0.1)
    plain, _ = evaluation.evaluate_file(model, params, path, sigma=0.6, seed=7)
    denoised, _ = evaluation.evaluate_file(
        model, params, path, sigma=0.6, seed=7, denoiser=denoiser, denoiser_strength=0.1
    )
    assert denoised["griffin_lim"] == plain["griffin_lim"]
    assert denoised["waveglow"]["log_mel_distance"] != plain["waveglow"]["log_mel_distance"]


def test_without_griffin_lim_the_model_scores_are_unchanged(cli_run, model_dir, reference_dir, tmp_path):
    out = str(tmp_path / "alone")
    stdout = io.StringIO()
    argv = ["evaluate.py", f"--reference_dir={reference_dir}", f"--model={model_dir}", f"--output_dir={out}"]
    with contextlib.redirect_stdout(stdout):
        evaluate.main(argv + ["--noprogress", "--seed=7", "--nogriffin_lim"])
    with open(os.path.join(out, "evaluation.json")) as f:
        alone = json.load(f)
    full = cli_run["result"]
    assert full["systems"] == ["reference", "waveglow", "griffin_lim"]
    assert alone["systems"] == ["waveglow"] and alone["griffin_lim_iterations"] is None
    assert list(alone["average"]) == ["waveglow"] and alone["average"]["waveglow"] == full["average"]["waveglow"]
    files, full_files = by_file(alone), by_file(full)
    for name in GOOD + ["female/snippet.wav"]:
        assert "griffin_lim" not in files[name] and files[name]["waveglow"] == full_files[name]["waveglow"]
        assert "reference" not in files[name]
        assert all(key.startswith("waveglow.") for key in files[name].get("errors", {}))
        assert list(files[name]["outputs"]) == ["waveglow"]
    assert not os.path.exists(os.path.join(out, "griffin_lim"))
    markdown = stdout.getvalue()
    assert "Griffin-Lim not run" in markdown and "Recording" not in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| file |"))
    assert header.count("|") == 1 + 3 + len(evaluation.METRICS)
    assert not any("| Griffin-Lim |" in line for line in markdown.splitlines())
