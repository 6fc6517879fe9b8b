"""The tf.data pipeline on preprocessed real speech."""

import math
import os
import shutil

import numpy as np
import pytest
import soundfile
import tensorflow as tf

import tfwaveglow
from tfwaveglow import audio, data, preprocess

PARAMS = tfwaveglow.load_params()
HOP = 256
SEGMENT = PARAMS.data.segment_length  # 16000, not a multiple of the hop
FRAMES = math.ceil(SEGMENT / HOP)  # 63
SHORT_SAMPLES = 3000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech_dir):
    root = str(tmp_path_factory.mktemp("data"))
    wave_dir = os.path.join(root, "wavs")
    shutil.copytree(speech_dir, wave_dir)
    t = np.arange(SHORT_SAMPLES) / 22050
    soundfile.write(os.path.join(wave_dir, "male", "short.wav"), 0.4 * np.sin(2 * np.pi * 300 * t), 22050)
    preprocess.preprocess_corpus(wave_dir, os.path.join(root, "mels"), root, PARAMS, num_workers=1, progress=False)
    ids = sorted(data.read_filelist(os.path.join(root, "train.txt")) + data.read_filelist(f"{root}/valid.txt"))
    long_ids = [u for u in ids if u != "male/short"]
    wavs = {u: soundfile.read(os.path.join(root, "audio", u + ".wav"), dtype="float32")[0] for u in ids}
    mels = {u: np.load(os.path.join(root, "mels", u + ".npy")) for u in ids}
    return {"root": root, "audio": os.path.join(root, "audio"), "mels": os.path.join(root, "mels"), "ids": ids,
            "long_ids": long_ids, "wavs": wavs, "mels_by_id": mels}  # fmt: skip


def locate(segment, wavs):
    """(id, sample offset) of the utterance stretch equal to ``segment``, found by search."""
    head = segment[:64]
    for uid, wav in wavs.items():
        if wav.shape[0] < segment.shape[0]:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(wav[: wav.shape[0] - segment.shape[0] + 64], 64)
        for offset in np.flatnonzero((windows == head).all(axis=1)):
            if np.array_equal(wav[offset : offset + segment.shape[0]], segment):
                return uid, int(offset)
    raise AssertionError("segment not found in any utterance")


def batches(dataset, count):
    return [(m.numpy(), a.numpy()) for m, a in dataset.take(count)]


def test_segments_and_mels_are_aligned(corpus):
    dataset = data.make_dataset(
        corpus["long_ids"], corpus["audio"], corpus["mels"], PARAMS, batch_size=3, deterministic=True, seed=3
    )
    assert dataset.element_spec[0].shape == (3, FRAMES, 80) and dataset.element_spec[1].shape == (3, SEGMENT)
    offsets = set()
    for mel, wave in batches(dataset, 3):
        for m, a in zip(mel, wave):
            uid, offset = locate(a, corpus["wavs"])
            assert offset % HOP == 0, (uid, offset)
            offsets.add(offset)
            f0 = offset // HOP
            np.testing.assert_array_equal(m, corpus["mels_by_id"][uid][f0 : f0 + FRAMES])
            # The mel recomputed from the yielded audio agrees away from the segment's edges, where
            # its reflect padding differs from the utterance's neighbouring samples.
            recomputed = audio.mel_spectrogram(a, PARAMS.audio)
            assert recomputed.shape == (1 + SEGMENT // HOP, 80)
            np.testing.assert_allclose(m[2 : FRAMES - 2], recomputed[2 : FRAMES - 2], atol=1e-4, rtol=0)
    assert len(offsets) > 3  # random starts, not always the same place


def test_model_forward_accepts_a_batch(corpus):
    params = tfwaveglow.load_params(overrides={"model.n_flows": 2, "model.wn.n_layers": 2, "model.wn.n_channels": 8})
    dataset = data.make_dataset(corpus["ids"], corpus["audio"], corpus["mels"], params, batch_size=2, seed=1)
    mel, wave = next(iter(dataset))
    assert (FRAMES - 2) * HOP < SEGMENT <= FRAMES * HOP
    out = tfwaveglow.WaveGlow.from_params(params).forward(mel, wave)
    assert out["z"].shape == (2, SEGMENT // 8, 8)
    assert np.isfinite(float(tfwaveglow.nll_loss(out)))


def test_short_file_is_padded(corpus):
    dataset = data.make_dataset(["male/short"], corpus["audio"], corpus["mels"], PARAMS, batch_size=2, seed=0)
    stored_mel = corpus["mels_by_id"]["male/short"]
    stored_wav = corpus["wavs"]["male/short"]
    assert stored_mel.shape[0] == 1 + SHORT_SAMPLES // HOP
    for mel, wave in zip(*batches(dataset, 1)[0]):
        np.testing.assert_array_equal(wave[:SHORT_SAMPLES], stored_wav)
        assert not wave[SHORT_SAMPLES:].any()
        np.testing.assert_array_equal(mel[: stored_mel.shape[0]], stored_mel)
        np.testing.assert_array_equal(mel[stored_mel.shape[0] :], np.float32(np.log(1e-5)))


def test_deterministic_mode_repeats_and_resumes(corpus):
    def make(seed, **kwargs):
        dirs = corpus["audio"], corpus["mels"]
        return data.make_dataset(corpus["ids"], *dirs, PARAMS, batch_size=2, deterministic=True, seed=seed, **kwargs)

    first, second = batches(make(7), 6), batches(make(7), 6)
    for (m1, a1), (m2, a2) in zip(first, second):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(a1, a2)
    other = batches(make(8), 6)
    assert any(not np.array_equal(a1, a2) for (_, a1), (_, a2) in zip(first, other))
    resumed = batches(make(7, skip_batches=4), 2)
    for (m1, a1), (m2, a2) in zip(first[4:], resumed):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(a1, a2)


@pytest.mark.parametrize("pipelines, replicas", [(1, 2), (2, 2), (2, 4)])
def test_input_pipelines_split_the_global_batches_and_read_only_their_share(corpus, monkeypatch, pipelines, replicas):
    global_batch, steps, dirs = 4, 3, (corpus["audio"], corpus["mels"])
    local, per_replica = replicas // pipelines, global_batch // replicas

    def make(context=None, **kwargs):
        return data.make_dataset(corpus["ids"], *dirs, PARAMS, batch_size=global_batch, deterministic=True, seed=3,
                                 input_context=context, **kwargs)  # fmt: skip

    def contexts():
        return [tf.distribute.InputContext(pipelines, p, replicas) for p in range(pipelines)]

    reference = batches(make(skip_batches=2), steps)
    per_pipeline = [batches(make(c, skip_batches=2), steps * local) for c in contexts()]
    for step in range(steps):
        # The global batch, in order: pipeline 0's replicas' batches, then pipeline 1's, ...
        parts = [per_pipeline[p][step * local + r] for p in range(pipelines) for r in range(local)]
        assert all(m.shape[0] == per_replica for m, _ in parts)
        np.testing.assert_array_equal(np.concatenate([m for m, _ in parts]), reference[step][0])
        np.testing.assert_array_equal(np.concatenate([a for _, a in parts]), reference[step][1])

    # One pass over the list: the pipelines together read each utterance once, as one process does.
    reads = []
    original_read = data._Utterances.read
    monkeypatch.setattr(data._Utterances, "read", lambda self, *a: reads.append(a) or original_read(self, *a))
    batches(make(repeat=False), 100)
    whole = sorted(reads)
    reads.clear()
    for context in contexts():
        batches(make(context, repeat=False), 100)
    assert sorted(reads) == whole and len(whole) == len(corpus["ids"])
    with pytest.raises(data.DataError, match="global batch"):
        make(tf.distribute.InputContext(3, 0, 3))


def test_each_epoch_visits_every_utterance_once(corpus):
    ids = corpus["long_ids"]
    dataset = data.make_dataset(ids, corpus["audio"], corpus["mels"], PARAMS, batch_size=1, seed=11)
    seen = [locate(a[0], corpus["wavs"])[0] for _, a in batches(dataset, 2 * len(ids))]
    assert sorted(seen[: len(ids)]) == sorted(ids) and sorted(seen[len(ids) :]) == sorted(ids)
    assert seen[: len(ids)] != seen[len(ids) :]  # reshuffled per epoch


def test_evaluation_order_takes_centre_segments(corpus):
    ids = corpus["long_ids"]
    dataset = data.make_dataset(
        ids, corpus["audio"], corpus["mels"], PARAMS, batch_size=1, training=False, repeat=False
    )
    got = batches(dataset, 100)
    assert len(got) == len(ids)
    for uid, (mel, wave) in zip(ids, got):
        wav = corpus["wavs"][uid]
        f0 = ((wav.shape[0] - SEGMENT) // HOP) // 2
        np.testing.assert_array_equal(wave[0], wav[f0 * HOP : f0 * HOP + SEGMENT])
        np.testing.assert_array_equal(mel[0], corpus["mels_by_id"][uid][f0 : f0 + FRAMES])


def test_validation_dataset_yields_whole_utterances(corpus):
    valid_list = os.path.join(corpus["root"], "valid.txt")
    ids = data.read_filelist(valid_list)
    got = list(data.make_validation_dataset(valid_list, corpus["audio"], corpus["mels"], PARAMS))
    assert len(got) == len(ids)
    for uid, (mel, wave) in zip(ids, got):
        wav = corpus["wavs"][uid]
        keep = (wav.shape[0] // HOP) * HOP
        assert wave.shape == (1, keep) and mel.shape == (1, keep // HOP + 1, 80)
        np.testing.assert_array_equal(wave[0].numpy(), wav[:keep])
        np.testing.assert_array_equal(mel[0].numpy(), corpus["mels_by_id"][uid][: keep // HOP + 1])
        frames = mel.shape[1]
        assert (frames - 2) * HOP < keep <= frames * HOP
    mel, wave = next(iter(data.make_validation_dataset(ids, corpus["audio"], corpus["mels"], PARAMS, max_samples=5000)))
    assert wave.shape == (1, (5000 // HOP) * HOP) and mel.shape == (1, 5000 // HOP + 1, 80)
    with pytest.raises(data.DataError, match="batch_size must be 1"):
        data.make_validation_dataset(ids, corpus["audio"], corpus["mels"], PARAMS, batch_size=4)


def test_read_filelist(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# comment\nspk/a\n\n  spk/b.wav  \nc.npy\nd.v2\n")
    assert data.read_filelist(path) == ["spk/a", "spk/b", "c", "d.v2"]
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(data.DataError, match="empty.txt"):
        data.read_filelist(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        data.read_filelist(tmp_path / "missing.txt")


def _copy_corpus(corpus, tmp_path, ids):
    wave_dir, mel_dir = tmp_path / "audio", tmp_path / "mels"
    for uid in ids:
        for src, dst, ext in ((corpus["audio"], wave_dir, ".wav"), (corpus["mels"], mel_dir, ".npy")):
            os.makedirs(os.path.dirname(dst / (uid + ext)), exist_ok=True)
            shutil.copy(os.path.join(src, uid + ext), dst / (uid + ext))
    return str(wave_dir), str(mel_dir)


def _first_batch(ids, wave_dir, mel_dir, batch_size=1):
    dataset = data.make_dataset(ids, wave_dir, mel_dir, PARAMS, batch_size=batch_size, training=False)
    return next(iter(dataset))


def test_bad_stored_files_raise_errors_naming_them(corpus, tmp_path):
    uid = corpus["long_ids"][0]
    wave_dir, mel_dir = _copy_corpus(corpus, tmp_path, [uid])
    mel_path = os.path.join(mel_dir, uid + ".npy")
    wav_path = os.path.join(wave_dir, uid + ".wav")
    good_mel = np.load(mel_path)

    with pytest.raises(data.DataError, match="missing.*nobody.wav"):
        data.make_dataset([uid, "nobody"], wave_dir, mel_dir, PARAMS, batch_size=1)
    with pytest.raises(data.DataError, match="no utterance ids"):
        data.make_dataset([], wave_dir, mel_dir, PARAMS, batch_size=1)
    with pytest.raises(data.DataError, match="no batch of 4"):
        data.make_dataset([uid], wave_dir, mel_dir, PARAMS, batch_size=4, repeat=False)

    nan_mel = good_mel.copy()
    nan_mel[5, 3] = np.nan
    np.save(mel_path, nan_mel)
    with pytest.raises(tf.errors.OpError, match=f"{mel_path}.*non-finite"):
        _first_batch([uid], wave_dir, mel_dir)

    np.save(mel_path, good_mel[:-3])
    with pytest.raises(tf.errors.OpError, match=f"{mel_path}: mel shape"):
        _first_batch([uid], wave_dir, mel_dir)
    np.save(mel_path, good_mel)

    samples = corpus["wavs"][uid].copy()
    samples[::1000] = np.nan  # every segment holds some
    soundfile.write(wav_path, samples, 22050, subtype="FLOAT")
    with pytest.raises(tf.errors.OpError, match=f"{wav_path}: non-finite"):
        _first_batch([uid], wave_dir, mel_dir)

    soundfile.write(wav_path, corpus["wavs"][uid], 16000, subtype="PCM_16")
    with pytest.raises(tf.errors.OpError, match=f"{wav_path}: sampling rate 16000"):
        _first_batch([uid], wave_dir, mel_dir)
