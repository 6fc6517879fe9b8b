"""tfwaveglow.naturalness: DNSMOS on the shipped recordings, degraded copies of them, and reference computations."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import signal as scipy_signal

from tfwaveglow import audio, naturalness
from tfwaveglow.metrics import MetricError

pytest.importorskip("onnxruntime", reason="DNSMOS needs the eval extra")
pytest.importorskip("speechmos", reason="DNSMOS needs the eval extra")

RATE = 22050


@pytest.fixture(scope="module")
def clips(speech_clips) -> dict:
    """One clip per speaker at 22.05 kHz (3.7 s and 3.8 s: tiled to 5 and 6 windows)."""
    return {name: audio.load_audio(speech_clips[i], RATE).astype(np.float64) for name, i in (("f", 0), ("m", 3))}


@pytest.fixture(scope="module")
def clean_scores(clips) -> dict:
    return {name: naturalness.dnsmos(x, RATE) for name, x in clips.items()}


def test_recordings_score_higher_than_with_white_noise_at_0_db(clips, clean_scores):
    rng = np.random.default_rng(0)
    for name, x in clips.items():
        rms = np.sqrt(np.mean(x**2))
        noisy = naturalness.dnsmos(x + rng.normal(0.0, rms, x.shape), RATE)
        clean = clean_scores[name]
        # Measured: OVRL 2.12 -> 1.48 (f) and 2.60 -> 1.55 (m); BAK falls further (2.54 -> 1.45, 3.08 -> 1.42).
        assert noisy["dnsmos_ovrl"] < clean["dnsmos_ovrl"] - 0.3, (name, clean, noisy)
        assert noisy["dnsmos_bak"] < clean["dnsmos_bak"] - 0.5, (name, clean, noisy)
        assert noisy["dnsmos_sig"] < clean["dnsmos_sig"], (name, clean, noisy)


def test_low_pass_at_1_khz_lowers_the_signal_and_p808_scores(clips, clean_scores):
    """A muffled voice: P.808 and SIG fall. (OVRL need not: the filter also removes the recordings'
    background noise above 1 kHz, so BAK rises; docs/evaluation.md.)"""
    sos = scipy_signal.butter(8, 1000.0, fs=RATE, output="sos")
    for name, x in clips.items():
        low = naturalness.dnsmos(scipy_signal.sosfiltfilt(sos, x), RATE)
        clean = clean_scores[name]
        # Measured: P.808 2.36 -> 2.13 (f) and 2.98 -> 2.41 (m); SIG 3.03 -> 2.61 and 3.36 -> 3.28.
        assert low["dnsmos_p808"] < clean["dnsmos_p808"] - 0.1, (name, clean, low)
        assert low["dnsmos_sig"] < clean["dnsmos_sig"], (name, clean, low)


def test_scores_are_on_the_mos_scale_and_match_the_recordings(clean_scores):
    for scores in clean_scores.values():
        assert list(scores) == list(naturalness.KEYS)
        assert all(1.0 < v < 5.0 for v in scores.values()), scores
    # The reference values of docs/evaluation.md.
    assert clean_scores["f"]["dnsmos_ovrl"] == pytest.approx(2.124, abs=0.01)
    assert clean_scores["m"]["dnsmos_ovrl"] == pytest.approx(2.597, abs=0.01)


def test_the_rate_path_does_not_matter(speech_clips):
    short = audio.load_audio(speech_clips[5], RATE)  # 2.3 s: tiled to one window
    at_16k = audio.resample(short, RATE, naturalness.RATE)
    assert naturalness.dnsmos(short, RATE) == naturalness.dnsmos(at_16k, naturalness.RATE)
    # The same recording read at 48 kHz (soxr up from its 22.05 kHz) then brought down to 16 kHz.
    at_48k = naturalness.dnsmos(audio.load_audio(speech_clips[5], 48000), 48000)
    for key, value in naturalness.dnsmos(short, RATE).items():
        assert at_48k[key] == pytest.approx(value, abs=0.02), key


def test_equals_the_speechmos_reference_code(speech_clips):
    """speechmos's own DNSMOS class (its tiling, windows, features and polynomials) on the same networks.

    P.835 is fed raw samples: equal. P.808's features differ in the first and last frame only:
    speechmos calls today's librosa, which pads the STFT with zeros; DNSMOS was published when
    librosa padded by reflection, as :func:`naturalness.p808_features` does.
    """
    from speechmos.dnsmos import DNSMOS

    reference = DNSMOS.__new__(DNSMOS)  # its __init__ would make sessions on every core
    p835_path, p808_path = naturalness.model_files()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    reference.onnx_sess = onnxruntime.InferenceSession(p835_path, options, providers=["CPUExecutionProvider"])
    reference.p808_onnx_sess = onnxruntime.InferenceSession(p808_path, options, providers=["CPUExecutionProvider"])
    # 2.8 s: tiled to 11.1 s, two windows. Clipped: speechmos refuses samples outside [-1, 1].
    x = audio.resample(audio.load_audio(speech_clips[2], RATE), RATE, naturalness.RATE)
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    expected = reference(x, naturalness.RATE, False)
    ours = naturalness.dnsmos(x, naturalness.RATE)
    assert ours["dnsmos_sig"] == pytest.approx(expected["sig_mos"], abs=1e-5)
    assert ours["dnsmos_bak"] == pytest.approx(expected["bak_mos"], abs=1e-5)
    assert ours["dnsmos_ovrl"] == pytest.approx(expected["ovrl_mos"], abs=1e-5)
    assert ours["dnsmos_p808"] == pytest.approx(expected["p808_mos"], abs=0.01)
    # Their polynomials are ours, for both models.
    raw = np.array([[1.5, 2.5, 3.5], [3.0, 4.0, 2.0]])
    for personalized in (False, True):
        sig, bak, ovrl = reference.get_polyfit_val(raw[:, 0], raw[:, 1], raw[:, 2], personalized)
        calibrated = naturalness.calibrate(raw, personalized)
        np.testing.assert_allclose(calibrated["sig"], sig, rtol=1e-12)
        np.testing.assert_allclose(calibrated["bak"], bak, rtol=1e-12)
        np.testing.assert_allclose(calibrated["ovrl"], ovrl, rtol=1e-12)


def _p808_features_by_hand(x: np.ndarray) -> np.ndarray:
    """The P.808 input written out: explicit DFT sums and the Slaney filterbank of librosa."""
    import librosa

    n_fft, hop = 321, 160
    padded = np.concatenate([x[1 : n_fft // 2 + 1][::-1], x, x[-n_fft // 2 : -1][::-1]])
    n = np.arange(n_fft)
    window = 0.5 * (1.0 - np.cos(2.0 * np.pi * n / n_fft))
    bins = np.arange(n_fft // 2 + 1)
    angle = 2.0 * np.pi * np.outer(bins, n) / n_fft
    count = 1 + (len(padded) - n_fft) // hop
    power = np.empty((count, len(bins)))
    for t in range(count):
        frame = padded[t * hop : t * hop + n_fft] * window
        power[t] = (np.cos(angle) @ frame) ** 2 + (np.sin(angle) @ frame) ** 2
    mel = power @ librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=120, dtype=np.float64).T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10)) - 10.0 * np.log10(mel.max())
    db = np.maximum(db, db.max() - 80.0)
    return (db + 40.0) / 40.0


def test_p808_features_equal_the_formula_and_librosa(speech_clips):
    import librosa

    x = audio.resample(audio.load_audio(speech_clips[0], RATE), RATE, naturalness.RATE)[8000:9200]
    features = naturalness.p808_features(x)
    assert features.shape == (1 + (1200 - 1) // 160, 120) and features.dtype == np.float32
    np.testing.assert_allclose(features, _p808_features_by_hand(x), atol=2e-6)
    mel = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=321, hop_length=160, n_mels=120, pad_mode="reflect")
    expected = (librosa.power_to_db(mel, ref=np.max) + 40.0) / 40.0
    np.testing.assert_allclose(features, expected.T, atol=2e-6)
    # A window's first 144 000 samples make the network's 900 frames.
    assert naturalness.p808_features(np.resize(x, naturalness.P808_SAMPLES)).shape == (900, 120)


@pytest.mark.parametrize("seconds", [1.0, 2.3, 4.6, 9.01, 9.5, 10.0, 12.7, 20.0, 31.0])
def test_tiling_and_windows(seconds):
    n = int(round(seconds * naturalness.RATE))
    x = np.arange(n, dtype=np.float32)
    tiled = naturalness.tile(x)
    doublings = 0
    while n * 2**doublings < naturalness.WINDOW_SAMPLES:
        doublings += 1
    assert tiled.shape[0] == n * 2**doublings
    np.testing.assert_array_equal(tiled, np.tile(x, 2**doublings))
    windows = naturalness.windows(tiled)
    # The reference's count: int(floor(samples / 16000) - 9.01) + 1 windows, one a second.
    expected = int(np.floor(tiled.shape[0] / 16000) - 9.01) + 1
    assert windows.shape == (expected, naturalness.WINDOW_SAMPLES)
    for i in range(expected):
        np.testing.assert_array_equal(windows[i], tiled[16000 * i : 16000 * i + naturalness.WINDOW_SAMPLES])


@pytest.mark.parametrize(
    ("signal", "rate", "message"),
    [
        (np.zeros(0), RATE, "the audio is empty"),
        (np.full(RATE * 2, np.nan), RATE, r"holds 44100 non-finite samples"),
        (np.concatenate([np.ones(RATE), [np.inf]]), RATE, r"holds 1 non-finite samples"),
        (np.ones(RATE // 2), RATE, r"0\.50 s of audio, too short \(at least 1 s\)"),
        (np.zeros(RATE * 2), RATE, r"silent \(all zeros\)"),
        (np.ones((2, RATE)), RATE, r"must be \[samples\], got shape \(2, 22050\)"),
        (np.ones(RATE * 2), 0, "sampling rate must be a positive whole number"),
        (np.array(["a"] * RATE), RATE, "must be real numbers"),
    ],
)
def test_bad_audio_is_a_clear_error(signal, rate, message):
    with pytest.raises(MetricError, match=f"DNSMOS: .*{message}"):
        naturalness.dnsmos(signal, rate)


def test_threads_and_cached_sessions():
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        naturalness.dnsmos(np.ones(RATE * 2), RATE, threads=0)
    p835_path, _ = naturalness.model_files()
    session = naturalness._session(p835_path, 1)
    assert naturalness._session(p835_path, 1) is session
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_session_options().inter_op_num_threads == 1


def test_missing_packages_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "speechmos", None)
    with pytest.raises(ImportError, match="no module named 'speechmos'") as caught:
        naturalness.dnsmos(np.ones(RATE * 2), RATE)
    assert caught.value.name == "speechmos"


def test_personalized_model(clips):
    x = clips["m"][: int(2.3 * RATE)]  # tiled to one window
    standard = naturalness.dnsmos(x, RATE)
    personalized = naturalness.dnsmos(x, RATE, personalized=True)
    assert personalized["dnsmos_p808"] == standard["dnsmos_p808"]  # one P.808 network for both
    assert personalized["dnsmos_ovrl"] != standard["dnsmos_ovrl"]
    assert all(1.0 < v < 5.0 for v in personalized.values())
