"""Audio I/O and the mel front end, checked against librosa, soundfile and closed forms."""

import os

import librosa
import numpy as np
import pytest
import soundfile
import tensorflow as tf
from scipy import signal
from spectral_reference import librosa_stft

import tfwaveglow
from tfwaveglow import audio
from tfwaveglow.config import AudioParams

PARAMS = tfwaveglow.load_params()
AP = PARAMS.audio


def reference_log_mel(y, sr=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=0.0, fmax=8000.0):
    """librosa STFT magnitude, librosa's Slaney basis, natural log of the clamp (all float64)."""
    magnitude = np.abs(librosa_stft(y, n_fft, hop, win))
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float64)
    return np.log(np.maximum(basis @ magnitude, 1e-5)).T


def test_mel_basis_matches_librosa_slaney():
    expected = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0)
    basis = audio.mel_basis(AP)
    assert basis.shape == (80, 513) and basis.dtype == np.float32
    np.testing.assert_allclose(basis, expected, rtol=1e-5, atol=1e-9)
    # Not the HTK bank TensorFlow ships.
    htk = tf.signal.linear_to_mel_weight_matrix(80, 513, 22050, 0.0, 8000.0).numpy().T
    assert np.abs(htk - basis).max() > 1e-3


def test_mel_basis_other_settings():
    params = AudioParams(sampling_rate=16000, n_mel_channels=40, mel_fmin=55.0, mel_fmax=7600.0)
    expected = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=40, fmin=55.0, fmax=7600.0)
    np.testing.assert_allclose(audio.mel_basis(params), expected, rtol=1e-5, atol=1e-9)


def test_numpy_mel_of_real_speech_matches_librosa(speech_clips):
    for path in speech_clips:
        y = audio.load_audio(path, 22050)
        mel = audio.mel_spectrogram(y, AP)
        assert mel.dtype == np.float32
        assert mel.shape == (1 + y.shape[0] // 256, 80)
        ref = reference_log_mel(y)
        assert ref.shape == mel.shape
        np.testing.assert_allclose(mel, ref, rtol=0, atol=1e-4, err_msg=path)
        # Real speech: loud frames well above the clamp, silence at the clamp.
        assert mel.max() > -2.0 and mel.min() >= np.log(1e-5) - 1e-6


def test_tf_mel_of_real_speech_matches_librosa_batched(speech_clips):
    clips = [audio.load_audio(p, 22050) for p in speech_clips]
    n = min(c.shape[0] for c in clips) - 37  # not a multiple of the hop
    batch = np.stack([c[:n] for c in clips])
    mel = audio.mel_spectrogram_tf(batch, AP)
    assert mel.dtype == tf.float32
    assert tuple(mel.shape) == (len(clips), 1 + n // 256, 80)
    for i, clip in enumerate(batch):
        np.testing.assert_allclose(mel[i].numpy(), reference_log_mel(clip), rtol=0, atol=1e-4)
        np.testing.assert_allclose(mel[i].numpy(), audio.mel_spectrogram(clip, AP), rtol=0, atol=1e-5)


def test_tf_mel_in_tf_function_with_dynamic_length(speech_clips):
    y = audio.load_audio(speech_clips[0], 22050)
    fn = tf.function(
        lambda x: audio.mel_spectrogram_tf(x, AP), input_signature=[tf.TensorSpec([None, None], tf.float32)]
    )
    for n in (5000, 12345):
        out = fn(tf.constant(y[None, :n])).numpy()[0]
        np.testing.assert_allclose(out, reference_log_mel(y[:n]), rtol=0, atol=1e-4)
    # A 1-D input returns [frames, n_mel].
    assert tuple(audio.mel_spectrogram_tf(y[:3000], AP).shape) == (1 + 3000 // 256, 80)


def test_window_shorter_than_fft_is_centred_like_librosa(speech_clips):
    params = tfwaveglow.load_params(overrides={"audio.win_length": 800}).audio
    y = audio.load_audio(speech_clips[3], 22050)[:20000]
    ref = reference_log_mel(y, win=800)
    np.testing.assert_allclose(audio.mel_spectrogram(y, params), ref, rtol=0, atol=1e-4)
    np.testing.assert_allclose(audio.mel_spectrogram_tf(y[None], params).numpy()[0], ref, rtol=0, atol=1e-4)


def test_mel_of_silence_is_log_clamp():
    mel = audio.mel_spectrogram(np.zeros(4000, np.float32), AP)
    np.testing.assert_array_equal(mel, np.full((1 + 4000 // 256, 80), np.log(1e-5), np.float32))
    assert audio.log_clamp_value() == pytest.approx(np.log(1e-5))


def test_mel_rejects_too_short_and_non_finite():
    with pytest.raises(ValueError, match="reflect padding"):
        audio.mel_spectrogram(np.zeros(512, np.float32), AP)
    with pytest.raises(ValueError, match="reflect padding"):
        audio.mel_spectrogram_tf(np.zeros((1, 100), np.float32), AP)
    y = np.zeros(3000, np.float32)
    y[7] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        audio.mel_spectrogram(y, AP)


def test_load_audio_reads_ogg_like_soundfile(speech_clips):
    y = audio.load_audio(speech_clips[0], 22050)
    ref, sr = soundfile.read(speech_clips[0], dtype="float32")
    assert sr == 22050 and y.dtype == np.float32 and y.ndim == 1
    np.testing.assert_array_equal(y, np.clip(ref, -1, 1))


def test_load_audio_keeps_int16_scale_and_mixes_stereo(tmp_path):
    rng = np.random.default_rng(0)
    left = rng.integers(-32768, 32768, 5000).astype(np.int16)
    right = rng.integers(-32768, 32768, 5000).astype(np.int16)
    mono_path = str(tmp_path / "mono.wav")
    soundfile.write(mono_path, left, 22050, subtype="PCM_16")
    np.testing.assert_array_equal(audio.load_audio(mono_path, 22050), left.astype(np.float32) / 32768.0)
    stereo_path = str(tmp_path / "stereo.flac")
    soundfile.write(stereo_path, np.stack([left, right], axis=1), 22050, subtype="PCM_16")
    expected = (left.astype(np.float64) + right.astype(np.float64)) / 2 / 32768.0
    np.testing.assert_allclose(audio.load_audio(stereo_path, 22050), expected, atol=1e-7)


def test_read_audio_keeps_channels_rate_and_int16_scale(tmp_path):
    rng = np.random.default_rng(1)
    stereo = rng.integers(-32768, 32768, (3000, 2)).astype(np.int16)
    path = str(tmp_path / "stereo.wav")
    soundfile.write(path, stereo, 44100, subtype="PCM_16")
    data, rate = audio.read_audio(path)
    assert rate == 44100 and data.dtype == np.float64 and data.shape == (3000, 2)
    np.testing.assert_array_equal(data, stereo.astype(np.float64) / 32768.0)
    nan = tmp_path / "nan.wav"
    soundfile.write(str(nan), np.array([0.0, np.nan, 0.0], np.float32), 22050, subtype="FLOAT")
    for bad, reason in [(nan, "1 non-finite"), (tmp_path / "missing.wav", "not found")]:
        with pytest.raises(audio.AudioError, match=reason) as err:
            audio.read_audio(bad)
        assert str(bad) in str(err.value)


@pytest.mark.parametrize("source_rate", [44100, 48000, 16000])
def test_resampling_is_band_limited(tmp_path, source_rate):
    # A 1 kHz tone, plus (for the higher rates) a 15 kHz tone above the target's 11.025 kHz Nyquist.
    seconds = 1.0
    t = np.arange(int(source_rate * seconds)) / source_rate
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    high = 0.3 * np.sin(2 * np.pi * 15000.0 * t) if source_rate > 30000 else 0.0
    path = str(tmp_path / f"tone_{source_rate}.wav")
    soundfile.write(path, tone + high, source_rate, subtype="FLOAT")
    y = audio.load_audio(path, 22050)
    assert y.shape[0] == round(len(t) * 22050 / source_rate)
    t_out = np.arange(y.shape[0]) / 22050
    expected = 0.5 * np.sin(2 * np.pi * 1000.0 * t_out)
    # Away from the edges the 1 kHz tone survives and the 15 kHz tone (above the new Nyquist) is gone.
    inner = slice(500, -500)
    np.testing.assert_allclose(y[inner], expected[inner], atol=2e-3)


@pytest.mark.parametrize("source_rate", [44100, 48000])
def test_resampled_speech_follows_frame_rule_and_matches(tmp_path, speech_clips, source_rate):
    y = audio.load_audio(speech_clips[1], 22050)
    # An independent polyphase resampler (scipy) makes the high-rate file.
    up, down = (2, 1) if source_rate == 44100 else (320, 147)
    high = signal.resample_poly(y.astype(np.float64), up, down)
    path = str(tmp_path / f"speech_{source_rate}.wav")
    soundfile.write(path, np.stack([high, high], axis=1), source_rate, subtype="PCM_24")
    back = audio.load_audio(path, 22050)
    assert abs(back.shape[0] - y.shape[0]) <= 1
    mel = audio.mel_spectrogram(back, AP)
    assert mel.shape == (1 + back.shape[0] // 256, 80)
    ref = audio.mel_spectrogram(y, AP)
    frames = min(mel.shape[0], ref.shape[0]) - 2
    loud = ref[1:frames] > -6.0  # bins well above the clamp, where a log comparison is meaningful
    assert np.median(np.abs(mel[1:frames] - ref[1:frames])[loud]) < 0.02


def test_save_wav_writes_16bit_pcm_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.integers(-32768, 32768, 3000).astype(np.float32) / 32768.0
    values[:3] = [1.5, -1.5, 0.99999]
    path = str(tmp_path / "out.wav")
    audio.save_wav(path, values, 22050)
    info = soundfile.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.format) == (22050, 1, "PCM_16", "WAV")
    raw, _ = soundfile.read(path, dtype="int16")
    expected = np.clip(np.round(np.clip(values, -1, 1) * 32768), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(raw, expected)
    back = audio.load_audio(path, 22050)
    np.testing.assert_array_equal(back[3:], values[3:])
    assert back[0] == pytest.approx(32767 / 32768) and back[1] == -1.0
    assert os.listdir(tmp_path) == ["out.wav"]  # no temporary file left behind
    with pytest.raises(audio.AudioError, match="non-finite"):
        audio.save_wav(str(tmp_path / "nan.wav"), np.array([0.0, np.nan]), 22050)
    with pytest.raises(audio.AudioError, match="mono"):
        audio.save_wav(str(tmp_path / "stereo.wav"), np.zeros((10, 2)), 22050)


def test_load_audio_errors_name_the_file(tmp_path, speech_clips):
    cases = {}
    corrupt = tmp_path / "corrupt.ogg"
    corrupt.write_bytes(open(speech_clips[0], "rb").read()[:300])
    cases[corrupt] = "cannot read audio|no samples"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases[empty] = "cannot read audio"
    text = tmp_path / "notes.flac"
    text.write_text("this is not audio\n" * 50)
    cases[text] = "cannot read audio"
    header_only = tmp_path / "header_only.wav"
    soundfile.write(str(header_only), np.zeros(0, np.int16), 22050, subtype="PCM_16")
    cases[header_only] = "no samples"
    nan = tmp_path / "nan.wav"
    data = np.zeros(4000, np.float32)
    data[100] = np.nan
    soundfile.write(str(nan), data, 22050, subtype="FLOAT")
    cases[nan] = "non-finite"
    loud = tmp_path / "int_scale.wav"
    soundfile.write(str(loud), np.full(4000, 1000.0, np.float32), 22050, subtype="FLOAT")
    cases[loud] = "full scale"
    cases[tmp_path / "missing.wav"] = "not found"
    for path, reason in cases.items():
        with pytest.raises(audio.AudioError, match=reason) as err:
            audio.load_audio(path, 22050)
        assert str(path) in str(err.value)
