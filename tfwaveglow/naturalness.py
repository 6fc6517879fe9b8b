"""Non-intrusive naturalness: DNSMOS P.835 (SIG, BAK, OVRL) and DNSMOS P.808, no reference needed.

DNSMOS (Reddy, Gopal and Cutler, ICASSP 2021 and 2022) is a pair of convolutional networks
trained by Microsoft on crowd-sourced listening tests of noisy and enhanced speech to predict
the mean opinion score a listener gives a clip, on the 1 (bad) to 5 (excellent) scale:

* **P.835** (one network, three outputs): ``SIG`` the speech signal's own quality (distortion,
  buzz, muffling), ``BAK`` how intrusive the background is (noise, hiss; 5 = none), ``OVRL``
  the overall quality, as rated under ITU-T P.835;
* **P.808**: one overall score as rated under ITU-T P.808 (absolute category rating).

The networks are the ONNX files shipped inside the ``speechmos`` wheel (Microsoft, MIT licence:
``dnsmos_models/sig_bak_ovr.onnx``, ``dnsmos_models/model_v8.onnx`` and, for the personalized
variant, ``pdnsmos_models/sig_bak_ovr.onnx``); nothing is downloaded. They run with
``onnxruntime`` on one thread unless the caller asks for more. Both packages are in the ``eval``
extra; without them :func:`dnsmos` raises :class:`ImportError` naming the missing package.

The pipeline (what Microsoft's reference ``dnsmos_local.py`` does; the code here is our own):

1. The audio is resampled to 16 kHz (:func:`tfwaveglow.audio.resample`, soxr, very high quality)
   and taken as float32.
2. **Short clips are tiled** as the reference does: the clip is appended to itself (doubled)
   until it is at least one window, 9.01 s (144 160 samples), long. A 3 s clip becomes 12 s.
3. **Windows**: ``max(floor(samples / 16000) - 9, 1)`` windows of 144 160 samples, one every
   16 000 samples (1 s) from the start; what is left after the last whole window is not scored.
   (The reference computes the window bounds in floating point, which makes windows 7 to 23
   one sample short and skips them; here every whole window counts. The two agree whenever
   the tiled audio is under 17 s: seven windows or fewer.)
4. **P.835** on each window's raw samples ``[1, 144160]``; its three raw outputs are mapped
   through the published calibration polynomials (:data:`POLYNOMIALS`; a separate set for the
   personalized model) **per window**, then averaged over the windows.
5. **P.808** on each window's log-mel :func:`p808_features` of its first 144 000 samples
   (``[1, 900, 120]``), averaged over the windows; no polynomial.

Scores are floats on the 1..5 scale (the polynomials may stray slightly outside it).

Inputs are mono ``[samples]`` float arrays at ``int16 / 32768`` scale, at any rate. Empty,
non-finite, silent (all zeros) or too short (under :data:`MIN_SECONDS`) audio raises
:class:`tfwaveglow.metrics.MetricError` naming the problem: tiling a shorter clip into a
9 s window repeats it more than nine times, and the network then hears the repetition more
than the speech.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from tfwaveglow import audio as audio_lib
from tfwaveglow.metrics import MetricError

__all__ = [
    "KEYS",
    "MIN_SECONDS",
    "PACKAGE",
    "POLYNOMIALS",
    "RATE",
    "WINDOW_SAMPLES",
    "calibrate",
    "dnsmos",
    "model_files",
    "p808_features",
    "tile",
    "windows",
]

# The rate every DNSMOS network works at.
RATE = 16000
# One window: 9.01 s at 16 kHz (the P.835 network's input length).
WINDOW_SAMPLES = 144160
# Windows start one second apart.
HOP_SAMPLES = RATE
# The P.808 network sees the log-mel of a window without its last 160 samples: 900 frames.
P808_SAMPLES = WINDOW_SAMPLES - 160
P808_N_FFT = 321
P808_HOP = 160
P808_N_MELS = 120
P808_FRAMES = 900
# power_to_db's floor (amplitude 1e-5) and dynamic range below the window's loudest bin.
_POWER_FLOOR = 1e-10
_TOP_DB = 80.0
# Shortest audio scored; shorter clips would be repeated more than nine times into one window.
MIN_SECONDS = 1.0
# The result's keys, in table order.
KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
# The package whose wheel holds the ONNX networks.
PACKAGE = "speechmos"
_P835_FILES = {False: "dnsmos_models/sig_bak_ovr.onnx", True: "pdnsmos_models/sig_bak_ovr.onnx"}
_P808_FILE = "dnsmos_models/model_v8.onnx"
# Calibration of the P.835 network's raw outputs (coefficients, highest power first), from
# Microsoft's DNSMOS release: quadratics for the standard model, cubics for the personalized one.
POLYNOMIALS = {
    False: {
        "sig": (-0.08397278, 1.22083953, 0.0052439),
        "bak": (-0.13166888, 1.60915514, -0.39604546),
        "ovrl": (-0.06766283, 1.11546468, 0.04602535),
    },
    True: {
        "sig": (-0.01019296, 0.02751166, 1.19576786, -0.24348726),
        "bak": (-0.04976499, 0.44276479, -0.1644611, 0.96883132),
        "ovrl": (-0.00533021, 0.005101, 1.18058466, -0.11236046),
    },
}


def model_files(personalized: bool = False) -> tuple[str, str]:
    """Paths of the P.835 and P.808 ONNX networks inside the installed ``speechmos`` package.

    Args:
      personalized: the personalized P.835 network (trained to count interfering talkers as
        background) instead of the standard one.

    Returns:
      ``(p835_path, p808_path)``.

    Raises:
      ImportError: ``speechmos`` is not installed, or its wheel lacks the networks.
    """
    try:
        root = resources.files(PACKAGE)
    except ModuleNotFoundError as e:
        raise ImportError(f"no module named {PACKAGE!r} (pip install -e '.[eval]')", name=PACKAGE) from e
    paths = []
    for name in (_P835_FILES[bool(personalized)], _P808_FILE):
        path = root.joinpath(name)
        if not path.is_file():
            raise ImportError(f"{PACKAGE} is installed but holds no {name}; reinstall it", name=PACKAGE)
        paths.append(str(path))
    return paths[0], paths[1]


@functools.cache
def _session(path: str, threads: int):
    """An onnxruntime CPU session of one network, made once per file and thread count."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@functools.cache
def _p808_mel_basis() -> np.ndarray:
    """librosa's Slaney mel filterbank for 16 kHz, n_fft 321, 120 bands, 0-8 kHz: ``[120, 161]`` float64."""
    import librosa

    return librosa.filters.mel(sr=RATE, n_fft=P808_N_FFT, n_mels=P808_N_MELS, dtype=np.float64)


def p808_features(audio) -> np.ndarray:
    """The P.808 network's input: a scaled log-mel of 16 kHz audio.

    Power spectrogram of the centred STFT (reflect padding by 160, periodic Hann of 321 samples,
    n_fft 321, hop 160), Slaney mel bands (120, 0-8 kHz, librosa's filterbank), then
    ``dB = 10 log10(max(mel, 1e-10)) - 10 log10(max(max(mel), 1e-10))`` floored at
    ``max(dB) - 80`` and mapped to ``(dB + 40) / 40`` (so 1 at the loudest bin, -1 at 80 dB below).
    Reflect padding is what librosa did by default when DNSMOS was published (librosa 0.10 and
    later pad with zeros); it changes the first and last frame only.

    Args:
      audio: ``[samples]`` at 16 kHz, more than 160 samples (a window's first 144 000 give 900 frames).

    Returns:
      float32 ``[1 + (samples - 1) // 160, 120]``.
    """
    audio = np.asarray(audio, np.float64)
    pad = P808_N_FFT // 2
    if audio.ndim != 1 or audio.shape[0] <= pad:
        raise MetricError(f"DNSMOS P.808 features need [samples > {pad}], got shape {audio.shape}")
    padded = np.pad(audio, pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, P808_N_FFT)[::P808_HOP]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(P808_N_FFT) / P808_N_FFT)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = power @ _p808_mel_basis().T
    decibels = 10.0 * np.log10(np.maximum(mel, _POWER_FLOOR))
    decibels -= 10.0 * np.log10(max(float(np.max(mel)), _POWER_FLOOR))
    decibels = np.maximum(decibels, np.max(decibels) - _TOP_DB)
    return ((decibels + 40.0) / 40.0).astype(np.float32)


def tile(audio: np.ndarray) -> np.ndarray:
    """Doubles ``[samples]`` (appends it to itself) until it holds at least one 9.01 s window."""
    while audio.shape[0] < WINDOW_SAMPLES:
        audio = np.concatenate([audio, audio])
    return audio


def windows(audio: np.ndarray) -> np.ndarray:
    """The scored windows of 16 kHz audio after :func:`tile`.

    Args:
      audio: ``[samples]``, at least :data:`WINDOW_SAMPLES`.

    Returns:
      ``[max(samples // 16000 - 9, 1), 144160]``: window ``i`` starts at sample ``16000 i``.
    """
    count = max(audio.shape[0] // RATE - 9, 1)
    starts = np.arange(count) * HOP_SAMPLES
    return np.stack([audio[start : start + WINDOW_SAMPLES] for start in starts])


def calibrate(raw, personalized: bool = False) -> dict:
    """Maps the P.835 network's raw ``[..., 3]`` outputs (sig, bak, ovrl) to MOS with :data:`POLYNOMIALS`.

    Returns:
      ``{"sig", "bak", "ovrl"}``: arrays of shape ``raw.shape[:-1]``.
    """
    raw = np.asarray(raw, np.float64)
    coefficients = POLYNOMIALS[bool(personalized)]
    return {name: np.polyval(coefficients[name], raw[..., i]) for i, name in enumerate(("sig", "bak", "ovrl"))}


def _checked(audio, sampling_rate) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise MetricError(f"DNSMOS: the audio must be [samples], got shape {audio.shape}")
    if audio.shape[0] == 0:
        raise MetricError("DNSMOS: the audio is empty")
    if not np.issubdtype(audio.dtype, np.number) or np.iscomplexobj(audio):
        raise MetricError(f"DNSMOS: the audio must be real numbers, got {audio.dtype}")
    audio = audio.astype(np.float64)
    if not np.all(np.isfinite(audio)):
        raise MetricError(f"DNSMOS: the audio holds {int(np.count_nonzero(~np.isfinite(audio)))} non-finite samples")
    if not sampling_rate or int(sampling_rate) != sampling_rate or sampling_rate <= 0:
        raise MetricError(f"DNSMOS: the sampling rate must be a positive whole number of Hz, got {sampling_rate}")
    seconds = audio.shape[0] / float(sampling_rate)
    if seconds < MIN_SECONDS:
        raise MetricError(f"DNSMOS: {seconds:.2f} s of audio, too short (at least {MIN_SECONDS:g} s)")
    if not np.any(audio):
        raise MetricError("DNSMOS: the audio is silent (all zeros)")
    return audio


def dnsmos(audio, sampling_rate: int, *, personalized: bool = False, threads: int = 1) -> dict:
    """DNSMOS P.835 and P.808 of one clip (see the module docstring for the pipeline).

    Args:
      audio: ``[samples]`` mono float audio at ``sampling_rate`` (``int16 / 32768`` scale).
      sampling_rate: its rate in Hz; other rates than 16 kHz are resampled with soxr.
      personalized: use the personalized P.835 network and its polynomials.
      threads: onnxruntime's intra-op threads (the sessions are made once per thread count).

    Returns:
      ``{"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}``: floats, about 1 to 5,
      higher is better; means over the clip's 9.01 s windows.

    Raises:
      MetricError: empty, not one-dimensional, non-finite, silent or too short audio, or a bad rate.
      ImportError: ``speechmos`` (the networks) or ``onnxruntime`` is not installed.
      ValueError: ``threads`` is not a positive integer.
    """
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    audio = _checked(audio, sampling_rate)
    p835_path, p808_path = model_files(personalized)
    p835, p808 = _session(p835_path, int(threads)), _session(p808_path, int(threads))
    audio = audio_lib.resample(audio, int(sampling_rate), RATE).astype(np.float32)
    raw, p808_scores = [], []
    for window in windows(tile(audio)):
        raw.append(p835.run(None, {"input_1": window[None]})[0][0])
        features = p808_features(window[:P808_SAMPLES])
        p808_scores.append(p808.run(None, {"input_1": features[None]})[0][0][0])
    calibrated = calibrate(np.stack(raw), personalized)
    return {
        "dnsmos_sig": float(np.mean(calibrated["sig"])),
        "dnsmos_bak": float(np.mean(calibrated["bak"])),
        "dnsmos_ovrl": float(np.mean(calibrated["ovrl"])),
        "dnsmos_p808": float(np.mean(p808_scores)),
    }
