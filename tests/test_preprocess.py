"""preprocess_data.py and tfwaveglow.preprocess on real speech plus bad files."""

import contextlib
import io
import json
import os
import shutil

import librosa
import numpy as np
import pytest
import soundfile
from scipy import signal

import preprocess_data
import tfwaveglow
from tfwaveglow import audio, preprocess

PARAMS = tfwaveglow.load_params()
BAD_REASONS = {
    "bad/corrupt.ogg": "cannot read audio",
    "bad/empty.wav": "cannot read audio",
    "bad/header_only.wav": "no samples",
    "bad/short.wav": "too short",
    "bad/silent.wav": "silent",
    "bad/nan.wav": "non-finite",
    "bad/notes.flac": "cannot read audio",
}


def make_wave_dir(root, speech_dir):
    """Shipped clips, a 44.1 kHz stereo flac, a 48 kHz ogg, and one bad file of each kind."""
    wave_dir = os.path.join(root, "wavs")
    shutil.copytree(speech_dir, wave_dir)
    female = sorted(os.listdir(os.path.join(wave_dir, "female")))[0]
    clip, _ = soundfile.read(os.path.join(wave_dir, "female", female), dtype="float64")
    hi = signal.resample_poly(clip, 2, 1)
    soundfile.write(os.path.join(wave_dir, "female", "hq44.flac"), np.stack([hi, 0.5 * hi], 1), 44100, "PCM_24")
    male = sorted(os.listdir(os.path.join(wave_dir, "male")))[0]
    clip, _ = soundfile.read(os.path.join(wave_dir, "male", male), dtype="float64")
    soundfile.write(os.path.join(wave_dir, "male", "hq48.ogg"), signal.resample_poly(clip, 320, 147), 48000)
    bad = os.path.join(wave_dir, "bad")
    os.makedirs(bad)
    with open(os.path.join(wave_dir, "female", female), "rb") as f:
        head = f.read(300)
    with open(os.path.join(bad, "corrupt.ogg"), "wb") as f:
        f.write(head)
    open(os.path.join(bad, "empty.wav"), "wb").close()
    soundfile.write(os.path.join(bad, "header_only.wav"), np.zeros(0, np.int16), 22050, "PCM_16")
    tone = 0.5 * np.sin(np.arange(22050) * 0.1)
    soundfile.write(os.path.join(bad, "short.wav"), tone[:600], 22050, "PCM_16")
    soundfile.write(os.path.join(bad, "silent.wav"), np.zeros(22050), 22050, "PCM_16")
    with_nan = tone.copy()
    with_nan[1000] = np.nan
    soundfile.write(os.path.join(bad, "nan.wav"), with_nan, 22050, "FLOAT")
    with open(os.path.join(bad, "notes.flac"), "w") as f:
        f.write("not audio at all\n" * 100)
    with open(os.path.join(wave_dir, "README.txt"), "w") as f:
        f.write("ignored: not an audio extension\n")
    return wave_dir


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, speech_dir):
    root = str(tmp_path_factory.mktemp("corpus"))
    wave_dir = make_wave_dir(root, speech_dir)
    console = io.StringIO()
    with contextlib.redirect_stderr(console):
        report = preprocess.preprocess_corpus(
            wave_dir, os.path.join(root, "mels"), root, PARAMS, num_workers=2, progress=True
        )
    return {"root": root, "wave_dir": wave_dir, "report": report, "console": console.getvalue()}


def good_ids(speech_dir):
    ids = [os.path.splitext(clip)[0] for clip in _clips(speech_dir)]
    return sorted(ids + ["female/hq44", "male/hq48"])


def test_report_lists_every_bad_file_with_its_reason(prepared, speech_dir):
    report = prepared["report"]
    with open(os.path.join(prepared["root"], "preprocess_report.json")) as f:
        assert json.load(f) == report
    skipped = {item["file"]: item["reason"] for item in report["skipped"]}
    assert set(skipped) == set(BAD_REASONS)
    for name, reason in BAD_REASONS.items():
        assert reason in skipped[name], (name, skipped[name])
        # ... and each was named on the console as it was skipped.
        assert f"skipped {os.path.join(prepared['wave_dir'], name)}: " in prepared["console"]
    counts = report["counts"]
    assert counts == {
        "found": 15,
        "processed_now": 15,
        "up_to_date": 0,
        "usable": 8,
        "skipped": 7,
        "not_followed": 0,
        "train": counts["train"],
        "valid": counts["valid"],
    }
    assert report["params"]["audio"] == PARAMS.to_dict()["audio"]
    assert report["source_sampling_rates"] == {"22050": 6, "44100": 1, "48000": 1}
    assert report["files_per_s"] > 0 and report["num_workers"] == 2
    outputs = [os.path.join(prepared["root"], "audio", uid + ".wav") for uid in good_ids(speech_dir)]
    assert report["total_duration_s"] == pytest.approx(sum(soundfile.info(p).duration for p in outputs), abs=1e-3)


def _clips(speech_dir):
    return [f"{spk}/{name}" for spk in ("female", "male") for name in sorted(os.listdir(f"{speech_dir}/{spk}"))]


def test_outputs_are_16bit_audio_and_matching_mels(prepared, speech_dir):
    root = prepared["root"]
    for uid in good_ids(speech_dir):
        wav = os.path.join(root, "audio", uid + ".wav")
        info = soundfile.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16"), uid
        mel = np.load(os.path.join(root, "mels", uid + ".npy"))
        assert mel.dtype == np.float32 and mel.shape == (1 + info.frames // 256, 80), uid
        y = audio.load_audio(wav, 22050)
        np.testing.assert_allclose(mel, audio.mel_spectrogram(y, PARAMS.audio), atol=1e-5, rtol=0, err_msg=uid)
    # Independent check of one stored mel: librosa STFT magnitude, Slaney basis, log of the clamp.
    y, _ = soundfile.read(os.path.join(root, "audio", "male/hq48.wav"), dtype="float64")
    magnitude = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, window="hann", center=True, pad_mode="reflect"))
    basis = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000, dtype=np.float64)
    ref = np.log(np.maximum(basis @ magnitude, 1e-5)).T
    np.testing.assert_allclose(np.load(os.path.join(root, "mels", "male/hq48.npy")), ref, atol=1e-4, rtol=0)


def test_resampled_sources_keep_length_and_content(prepared, speech_dir):
    root = prepared["root"]
    female = _clips(speech_dir)[0]
    original = audio.load_audio(os.path.join(speech_dir, female), 22050)
    converted = audio.load_audio(os.path.join(root, "audio", "female/hq44.wav"), 22050)
    assert abs(converted.shape[0] - original.shape[0]) <= 1
    n = min(converted.shape[0], original.shape[0])
    # Stereo (1, 0.5) mixed to mono is 0.75 of the clip, resampled up (scipy) and down (soxr); the
    # upsampled copy clips where the clip touches full scale, so allow a little there.
    diff = converted[200 : n - 200] - 0.75 * original[200 : n - 200]
    assert np.sqrt(np.mean(diff**2)) < 0.005 * np.sqrt(np.mean(original**2))
    assert np.abs(diff).max() < 0.01


def test_split_is_reproducible_and_keeps_both_speakers(prepared, speech_dir):
    root = prepared["root"]
    train = open(os.path.join(root, "train.txt")).read().split()
    valid = open(os.path.join(root, "valid.txt")).read().split()
    assert sorted(train + valid) == good_ids(speech_dir)
    assert not set(train) & set(valid)
    for speaker in ("female", "male"):
        assert any(u.startswith(speaker + "/") for u in train) and any(u.startswith(speaker + "/") for u in valid)
    # Independent of input order; a different seed gives a different split.
    shuffled = list(reversed(good_ids(speech_dir)))
    assert preprocess.split_ids(shuffled, 0.05, PARAMS.data.split_seed) == (sorted(train), sorted(valid))
    splits = {tuple(preprocess.split_ids(good_ids(speech_dir), 0.3, seed)[1]) for seed in range(6)}
    assert len(splits) > 1
    train_ids, valid_ids = preprocess.split_ids([f"s{i % 3}/u{i}" for i in range(300)], 0.1, 1)
    assert len(valid_ids) == 30 and {u.split("/")[0] for u in valid_ids} == {"s0", "s1", "s2"}


def test_second_run_redoes_only_what_changed(tmp_path, speech_dir):
    wave_dir = str(tmp_path / "wavs")
    shutil.copytree(speech_dir, wave_dir)
    mel_dir = str(tmp_path / "mels")
    first = preprocess.preprocess_corpus(wave_dir, mel_dir, str(tmp_path), PARAMS, num_workers=1, progress=False)
    assert first["counts"]["processed_now"] == 6
    lists = [open(tmp_path / name).read() for name in ("train.txt", "valid.txt")]
    mtimes = {p: os.stat(p).st_mtime_ns for p in _outputs(tmp_path)}

    second = preprocess.preprocess_corpus(wave_dir, mel_dir, str(tmp_path), PARAMS, num_workers=1, progress=False)
    assert (second["counts"]["processed_now"], second["counts"]["up_to_date"]) == (0, 6)
    assert {p: os.stat(p).st_mtime_ns for p in _outputs(tmp_path)} == mtimes
    assert [open(tmp_path / name).read() for name in ("train.txt", "valid.txt")] == lists

    # Shorten one source: only it is redone, and its mel follows.
    changed = os.path.join(wave_dir, _clips(speech_dir)[4])
    y, sr = soundfile.read(changed)
    soundfile.write(changed, y[:10000], sr, format="OGG")
    third = preprocess.preprocess_corpus(wave_dir, mel_dir, str(tmp_path), PARAMS, num_workers=1, progress=False)
    assert (third["counts"]["processed_now"], third["counts"]["up_to_date"]) == (1, 5)
    uid = os.path.splitext(_clips(speech_dir)[4])[0]
    assert np.load(os.path.join(mel_dir, uid + ".npy")).shape == (1 + 10000 // 256, 80)

    # Different front-end params redo everything.
    other = tfwaveglow.load_params(overrides={"audio.mel_fmax": 7600.0})
    fourth = preprocess.preprocess_corpus(wave_dir, mel_dir, str(tmp_path), other, num_workers=1, progress=False)
    assert fourth["counts"]["processed_now"] == 6


def _outputs(root):
    found = []
    for dirpath, _, files in os.walk(root):
        if os.sep + "wavs" in dirpath:
            continue
        found += [os.path.join(dirpath, f) for f in files if f.endswith((".npy", ".wav"))]
    return sorted(found)


def test_interrupted_run_leaves_no_partial_file_and_resumes(tmp_path, speech_dir, monkeypatch):
    wave_dir = str(tmp_path / "wavs")
    shutil.copytree(speech_dir, wave_dir)
    mel_dir = str(tmp_path / "mels")
    real_save_mel = preprocess.save_mel
    calls = []

    def interrupted_save_mel(path, mel):
        calls.append(path)
        if len(calls) == 3:
            # The interruption lands in the middle of writing the third mel.
            def write_half(f):
                f.write(b"\x93NUMPY partial")
                raise KeyboardInterrupt

            preprocess._atomic_write_bytes(path, write_half)
        real_save_mel(path, mel)

    monkeypatch.setattr(preprocess, "save_mel", interrupted_save_mel)
    with pytest.raises(KeyboardInterrupt):
        preprocess.preprocess_corpus(wave_dir, mel_dir, str(tmp_path), PARAMS, num_workers=1, progress=False)
    monkeypatch.setattr(preprocess, "save_mel", real_save_mel)

    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if ".tmp" in f]
    assert leftovers == []
    mels = [p for p in _outputs(tmp_path) if p.endswith(".npy")]
    assert len(mels) == 2
    for path in mels:
        assert np.load(path).shape[1] == 80  # every mel on disk is complete
    with open(tmp_path / "manifest.json") as f:
        assert len(json.load(f)["files"]) == 2

    # A run killed outright (no chance to clean up) leaves a temporary; the next run removes it.
    stale = os.path.join(os.path.dirname(mels[0]), "x.npy.tmp-99999999")
    with open(stale, "wb") as f:
        f.write(b"partial")

    resumed = preprocess.preprocess_corpus(wave_dir, mel_dir, str(tmp_path), PARAMS, num_workers=1, progress=False)
    assert (resumed["counts"]["up_to_date"], resumed["counts"]["processed_now"]) == (2, 4)
    assert len([p for p in _outputs(tmp_path) if p.endswith(".npy")]) == 6
    assert not os.path.exists(stale)


def test_directory_errors_are_clear(tmp_path):
    mel_dir, data_dir = str(tmp_path / "mels"), str(tmp_path / "data")
    with pytest.raises(preprocess.PreprocessError, match="does not exist"):
        preprocess.preprocess_corpus(str(tmp_path / "nowhere"), mel_dir, data_dir, PARAMS, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    with pytest.raises(preprocess.PreprocessError, match="holds no audio files"):
        preprocess.preprocess_corpus(str(empty), mel_dir, data_dir, PARAMS, progress=False)
    waves = tmp_path / "waves"
    waves.mkdir()
    soundfile.write(str(waves / "a.wav"), 0.3 * np.sin(np.arange(5000) * 0.05), 22050, "PCM_16")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(preprocess.PreprocessError, match="mel_dir .* is not a writable directory"):
        preprocess.preprocess_corpus(str(waves), str(blocker / "mels"), data_dir, PARAMS, progress=False)
    assert not os.path.exists(data_dir) or not os.listdir(data_dir)


def test_all_files_bad_fails_with_report(tmp_path):
    waves = tmp_path / "waves"
    waves.mkdir()
    (waves / "a.wav").write_bytes(b"RIFF....WAVEjunk")
    soundfile.write(str(waves / "b.wav"), np.zeros(30000), 22050, "PCM_16")
    with pytest.raises(preprocess.PreprocessError, match="no usable audio.*all 2 files were skipped"):
        preprocess.preprocess_corpus(str(waves), str(tmp_path / "mels"), str(tmp_path), PARAMS, progress=False)
    with open(tmp_path / "preprocess_report.json") as f:
        report = json.load(f)
    assert [item["file"] for item in report["skipped"]] == ["a.wav", "b.wav"]
    assert not (tmp_path / "train.txt").exists()


def test_cli_end_to_end(tmp_path, speech_dir, capsys):
    wave_dir = str(tmp_path / "wavs")
    shutil.copytree(speech_dir, wave_dir)
    (tmp_path / "wavs" / "broken.ogg").write_bytes(b"OggS" + b"\0" * 100)
    params_path = tmp_path / "params.yaml"
    params_path.write_text("data:\n  valid_fraction: 0.4\n")
    argv = [
        "preprocess_data.py",
        f"--wave_dir={wave_dir}",
        f"--mel_dir={tmp_path / 'mels'}",
        f"--data_dir={tmp_path / 'data'}",
        f"--params={params_path}",
        "--num_workers=1",
        "--noprogress",
    ]
    preprocess_data.main(argv)
    out = capsys.readouterr()
    assert "skipped broken.ogg" in out.out and "6 usable" in out.out
    assert "broken.ogg" in out.err
    with open(tmp_path / "data" / "preprocess_report.json") as f:
        report = json.load(f)
    assert report["split"]["valid_fraction"] == 0.4
    assert report["counts"]["valid"] == 2  # round(0.4 * 3) per speaker

    preprocess_data.main(argv + ["--valid_fraction=0.0"])
    assert open(tmp_path / "data" / "valid.txt").read() == ""

    with pytest.raises(SystemExit, match="wave_dir .* does not exist"):
        preprocess_data.main(argv[:1] + [f"--wave_dir={tmp_path / 'missing'}"] + argv[2:])


def _stems(folder):
    return sorted(os.path.splitext(name)[0] for name in os.listdir(folder))


def test_symlinked_speaker_folder_and_files_are_followed_once(tmp_path, speech_dir, capsys):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(os.path.join(speech_dir, "male"), elsewhere / "speaker_b")
    shutil.copy(os.path.join(speech_dir, "female", _stems(f"{speech_dir}/female")[1] + ".ogg"), elsewhere / "lone.ogg")
    wave_dir = tmp_path / "wavs"
    shutil.copytree(os.path.join(speech_dir, "female"), wave_dir / "female")
    female, male = _stems(wave_dir / "female"), _stems(elsewhere / "speaker_b")
    os.symlink(elsewhere / "speaker_b", wave_dir / "male")  # the speaker folder lives elsewhere
    os.symlink(elsewhere / "speaker_b", wave_dir / "male_again")  # ... and is reachable twice
    os.symlink(f"{female[0]}.ogg", wave_dir / "female" / "aaa_again.ogg")  # a second name, sorted first
    os.symlink(elsewhere / "lone.ogg", wave_dir / "female" / "extra.ogg")  # a file from elsewhere
    os.symlink(tmp_path / "deleted.wav", wave_dir / "female" / "gone.wav")
    argv = ["preprocess_data.py", f"--wave_dir={wave_dir}", f"--mel_dir={tmp_path / 'mels'}",
            f"--data_dir={tmp_path / 'data'}", "--num_workers=1", "--noprogress"]  # fmt: skip
    preprocess_data.main(argv)
    out = capsys.readouterr()

    # Seven real clips: the three female ones, the one linked in, and the linked speaker's three.
    expected_ids = sorted([f"female/{s}" for s in female] + ["female/extra"] + [f"male/{s}" for s in male])
    data = tmp_path / "data"
    listed = (data / "train.txt").read_text().split() + (data / "valid.txt").read_text().split()
    assert sorted(listed) == expected_ids
    with open(data / "preprocess_report.json") as f:
        report = json.load(f)
    assert (report["counts"]["found"], report["counts"]["usable"], report["counts"]["skipped"]) == (7, 7, 0)
    assert report["counts"]["not_followed"] == 3
    reasons = {item["path"]: item["reason"] for item in report["not_followed"]}
    assert reasons == {
        "female/aaa_again.ogg": f"duplicate of female/{female[0]}.ogg",
        "female/gone.wav": f"broken link to {tmp_path / 'deleted.wav'}: No such file or directory",
        "male_again/": "duplicate of male/",
    }
    for path, reason in reasons.items():
        assert f"skipped {path}: {reason}" in out.out  # the printed summary
        assert f"skipped {os.path.join(wave_dir, path)}: {reason}" in out.err  # and on the console
    # Every real file was read exactly once, through the path named by its id.
    with open(data / "manifest.json") as f:
        manifest = json.load(f)["files"]
    real_files = sorted(
        [str(wave_dir / "female" / f"{s}.ogg") for s in female]
        + [str(elsewhere / "lone.ogg")]
        + [str(elsewhere / "speaker_b" / f"{s}.ogg") for s in male]
    )
    assert sorted(os.path.realpath(wave_dir / entry["source"]) for entry in manifest.values()) == real_files
    assert sorted(manifest) == expected_ids
    for uid in expected_ids:
        assert os.path.isfile(tmp_path / "mels" / f"{uid}.npy")
    for stem in male:  # the linked speaker's outputs are its own clips
        source = soundfile.info(str(elsewhere / "speaker_b" / f"{stem}.ogg"))
        assert soundfile.info(str(data / "audio" / "male" / f"{stem}.wav")).frames == source.frames


def test_folder_links_back_to_an_ancestor_are_reported_not_walked(tmp_path, speech_dir):
    wave_dir = tmp_path / "wavs"
    shutil.copytree(os.path.join(speech_dir, "female"), wave_dir / "spk")
    female = _stems(wave_dir / "spk")
    (wave_dir / "spk" / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(os.path.join(speech_dir, "male", _stems(f"{speech_dir}/male")[0] + ".ogg"), wave_dir / "spk" / "nested")
    os.symlink(".", wave_dir / "spk" / "itself")
    os.symlink("../..", wave_dir / "spk" / "nested" / "deeper" / "back")  # to spk
    os.symlink(".", wave_dir / "top")  # to wave_dir
    os.symlink("../..", wave_dir / "spk" / "up")  # to tmp_path, which holds wave_dir
    report = preprocess.preprocess_corpus(
        str(wave_dir), str(tmp_path / "mels"), str(tmp_path / "data"), PARAMS, num_workers=1, progress=False
    )
    expected_ids = sorted([f"spk/{s}" for s in female] + [f"spk/nested/{_stems(f'{speech_dir}/male')[0]}"])
    assert sorted(report["speakers"]) == ["spk"]
    assert report["counts"]["found"] == report["counts"]["usable"] == 4
    listed = [uid for name in ("train.txt", "valid.txt") for uid in (tmp_path / "data" / name).read_text().split()]
    assert sorted(listed) == expected_ids
    reasons = {item["path"]: item["reason"] for item in report["not_followed"]}
    assert sorted(reasons) == ["spk/itself/", "spk/nested/deeper/back/", "spk/up/", "top/"]
    assert reasons["spk/itself/"] == "link cycle: leads back to spk/"
    assert reasons["spk/nested/deeper/back/"] == "link cycle: leads back to spk/"
    assert reasons["top/"] == "link cycle: leads back to wave_dir"
    assert reasons["spk/up/"] == f"link cycle: leads to {os.path.realpath(tmp_path)}, which holds wave_dir"
    summary = preprocess.summarize(report)
    assert "4 paths not followed" in summary
    for path, reason in reasons.items():
        assert f"skipped {path}: {reason}" in summary
