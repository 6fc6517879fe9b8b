"""scripts/get_extra_voices.py: each quality check against a closed form, and the selection end to end."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import get_extra_voices as voices  # noqa: E402

SPEECH = os.path.join(ROOT, "tests", "data", "speech")
RATE = 44100


def tone(freqs_amps, seconds=1.0, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in freqs_amps).astype(np.float32)


def speech(name="female/airplane-let-m-sedadlo.ogg"):
    samples, rate = sf.read(os.path.join(SPEECH, name), dtype="float32")
    return samples, rate


def test_high_band_share_of_two_tones_is_the_closed_form():
    # 1 kHz at amplitude 1 and 5 kHz at amplitude 0.1, whole periods in one second:
    # the 4-8 kHz band holds 0.01 / (1 + 0.01) of the energy.
    measured = voices.high_band_db(tone([(1000, 1.0), (5000, 0.1)]), RATE)
    assert measured == pytest.approx(10 * np.log10(0.01 / 1.01), abs=1e-3)
    assert voices.high_band_db(tone([(1000, 1.0)]), RATE) < -100


def test_channels_silent_agreeing_and_disagreeing():
    left = tone([(300, 0.5), (4500, 0.05)])
    silent = np.stack([left, 1e-4 * left[::-1]], axis=1)  # -74 dB: dropped
    np.testing.assert_array_equal(voices.to_mono(silent), left)
    agreeing = np.stack([left, 0.9 * left], axis=1)
    np.testing.assert_allclose(voices.to_mono(agreeing), 0.95 * left, rtol=1e-6, atol=1e-7)
    with pytest.raises(voices.Rejected) as error:
        voices.to_mono(np.stack([left, -left], axis=1))
    assert error.value.kind == "channels disagree"


@pytest.mark.parametrize(
    "samples, rate, kind",
    [
        (tone([(300, 0.5), (5000, 0.1)]), 8000, "sample rate"),
        (tone([(300, 0.5), (5000, 0.1)], seconds=0.3), RATE, "too short"),
        (tone([(300, 0.005), (5000, 0.001)]), RATE, "too quiet"),
        (np.clip(tone([(300, 2.0), (5000, 0.2)]), -1, 1), RATE, "clipped"),
        (tone([(300, 0.5), (1000, 0.2)]), RATE, "band-limited"),
    ],
)
def test_each_check_rejects_what_it_names(samples, rate, kind):
    with pytest.raises(voices.Rejected) as error:
        voices.check(samples, rate)
    assert error.value.kind == kind


def test_real_speech_passes_and_high_pass_removes_only_the_low_end():
    samples, rate = speech()
    mono = voices.check(samples, rate)
    np.testing.assert_array_equal(mono, samples)
    # DC and a 20 Hz hum go; a 1 kHz tone keeps its amplitude (Butterworth at 50 Hz: |H| = 1 - 4e-11).
    signal = tone([(1000, 0.3)], rate=rate) + 0.2 + tone([(20, 0.2)], rate=rate)
    out = voices.high_pass(signal, rate)[rate // 4 : -rate // 4]
    reference = tone([(1000, 0.3)], rate=rate)[rate // 4 : -rate // 4]
    np.testing.assert_allclose(out, reference, atol=0.2 * 0.03 + 1e-3)
    assert abs(out.mean()) < 1e-3


def make_package(tmp_path):
    stamps = tmp_path / "tree" / voices.STAMPS_SUBDIR
    for folder in ("animals", "food/fruit"):
        (stamps / folder).mkdir(parents=True)
    clip = os.path.join(SPEECH, "female", "airplane-let-m-sedadlo.ogg")
    other = os.path.join(SPEECH, "male", "society-mik-v-videt.ogg")
    shutil.copy(clip, stamps / "animals" / "cat_desc_fr.ogg")
    shutil.copy(clip, stamps / "food/fruit" / "cat_desc_fr.ogg")  # the same samples again: a duplicate
    shutil.copy(clip, stamps / "animals" / "cat_desc_ru.ogg")  # another language: kept
    shutil.copy(other, stamps / "animals" / "dog_desc_fr.ogg")
    shutil.copy(other, stamps / "animals" / "dog_fr.ogg")  # a stamp's name, not a description: ignored
    samples, rate = sf.read(other, dtype="float32")
    sf.write(stamps / "animals" / "cow_desc_fr.ogg", samples[::4], rate // 4)  # 5512 Hz
    (stamps / "animals" / "owl_desc_fr.ogg").write_bytes(b"not audio")
    corpus_wavs = tmp_path / "corpus" / "wavs"
    shutil.copytree(SPEECH, corpus_wavs)
    return tmp_path / "tree", corpus_wavs.parent


def test_selection_end_to_end(tmp_path, monkeypatch):
    tree, corpus = make_package(tmp_path)
    dest = tmp_path / "voices"
    # One clip (about 2 s) is enough for a language here; the real floor is two minutes.
    monkeypatch.setattr(voices, "MIN_LANGUAGE_SECONDS", 1.0)
    assert voices.main(["x", f"--dest={dest}", f"--corpus={corpus}", f"--package_dir={tree}"]) == 0
    report = json.loads((dest / voices.REPORT_NAME).read_text())
    dropped = {d["file"]: d["check"] for d in report["dropped"]}
    assert dropped == {
        "animals/cow_desc_fr.ogg": "sample rate",
        "animals/owl_desc_fr.ogg": "unreadable",
        "food/fruit/cat_desc_fr.ogg": "duplicate",
    }
    assert report["languages"]["fr"]["kept_files"] == 2 and report["languages"]["ru"]["kept_files"] == 1
    assert sorted(os.listdir(dest / "wavs" / "tuxpaint_fr")) == ["animals-cat.wav", "animals-dog.wav"]
    written, rate = sf.read(dest / "wavs" / "tuxpaint_ru" / "animals-cat.wav", dtype="float32")
    source, source_rate = speech()
    assert rate == source_rate and sf.info(dest / "wavs" / "tuxpaint_ru" / "animals-cat.wav").subtype == "PCM_16"
    assert len(written) == len(source) and abs(written.mean()) < 1e-4
    assert np.corrcoef(written, source)[0, 1] > 0.99
    seconds = report["languages"]["fr"]["kept_seconds"]
    expected = sum(
        sf.info(os.path.join(SPEECH, n)).duration
        for n in ("female/airplane-let-m-sedadlo.ogg", "male/society-mik-v-videt.ogg")
    )
    assert seconds == pytest.approx(expected, abs=0.01)
    # The corpus's speaker folders and the new voices, side by side, as links.
    all_wavs = dest / "all_wavs"
    assert sorted(os.listdir(all_wavs)) == ["female", "male", "tuxpaint_fr", "tuxpaint_ru"]
    assert os.path.realpath(all_wavs / "female") == os.path.realpath(corpus / "wavs" / "female")


def test_too_little_audio_leaves_a_language_out(tmp_path, monkeypatch):
    tree, _ = make_package(tmp_path)
    dest = tmp_path / "voices"
    monkeypatch.setattr(voices, "MIN_LANGUAGE_SECONDS", 1.0)
    assert voices.main(["x", f"--dest={dest}", f"--package_dir={tree}"]) == 0
    assert (dest / "wavs" / "tuxpaint_fr").is_dir()
    monkeypatch.undo()  # the real floor, two minutes: no language qualifies, and the earlier folders go
    assert voices.main(["x", f"--dest={dest}", f"--package_dir={tree}"]) == 1
    report = json.loads((dest / voices.REPORT_NAME).read_text())
    assert not report["languages"]["fr"]["written"] and report["languages"]["fr"]["kept_files"] == 2
    assert os.listdir(dest / "wavs") == []


def test_not_a_package_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "get_extra_voices.py"), f"--dest={tmp_path}/v",
         f"--package_dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and "not an unpacked tuxpaint-stamps-default" in result.stderr
