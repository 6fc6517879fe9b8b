"""Training: the compiled step against a NumPy Adam, checkpoints and resume, NaN guard, precision, distribution."""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from training_helpers import finish, free_ports, preprocess_speech, run_worker

import tfwaveglow
from tfwaveglow import training
from tfwaveglow.model_io import weights_to_arrays
from tfwaveglow.run_lock import RunDirectoryBusyError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# configs/tiny.yaml (2 flows with an early output between them, WN 2 x 8), here with 16 mel bins,
# 1024-sample segments and batches of 4.
TINY_YAML = os.path.join(ROOT, "configs", "tiny.yaml")
TINY = {
    "audio.n_mel_channels": 16,
    "model.n_mel_channels": 16,
    "data.segment_length": 1024,
    "train.batch_size": 4,
    "train.log_every": 1000,
    "train.summary_every": 2,
    "train.checkpoint_every": 1000,
    "train.validate_every": 1000,
    "train.audio_summary_every": 1000000,
}
FRAMES = 4  # ceil(1024 / 256)


def tiny_params(**overrides):
    merged = dict(TINY)
    merged.update({k.replace("__", "."): v for k, v in overrides.items()})
    return tfwaveglow.load_params(TINY_YAML, merged)


def clips(n, seed=0):
    """``n`` (mel [n, 4, 16], audio [n, 1024]) pairs; the audio follows the mel's first bin loosely."""
    rng = np.random.default_rng(seed)
    mel = rng.standard_normal((n, FRAMES, 16)).astype(np.float32)
    envelope = np.repeat(np.abs(mel[:, :, 0]), 256, axis=1)[:, :1024]
    audio = (0.1 * envelope * rng.standard_normal((n, 1024))).astype(np.float32)
    return mel, audio


def stream_fn(mel, audio, batch=4, epochs=64):
    """``Trainer.fit``'s ``dataset_fn`` for an endless-enough stream of global batches of ``batch``,
    each epoch a seeded shuffle, opened at ``start_step``."""
    per_epoch = len(mel) // batch * batch
    order = np.concatenate([np.random.default_rng(e).permutation(len(mel))[:per_epoch] for e in range(epochs)])
    mel, audio = tf.constant(mel), tf.constant(audio)

    def dataset_fn(start_step):
        ds = tf.data.Dataset.from_tensor_slices(order).map(lambda i: (tf.gather(mel, i), tf.gather(audio, i)))
        return ds.batch(batch, drop_remainder=True).skip(start_step)

    return training.split_global_batches(dataset_fn)


def variables_by_path(variables):
    """Values by path below the model (models in one process get numbered names)."""
    return {v.path.split("/", 1)[-1]: np.array(v.numpy()) for v in variables}


def optimizer_state(trainer):
    return {f"{i}:{v.path}": np.array(v.numpy()) for i, v in enumerate(trainer.optimizer.variables)}


def read_events(directory):
    """{tag: [(step, value or None)]} from the TensorBoard event files in ``directory``."""
    tags = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                number = float(tf.make_ndarray(value.tensor)) if plugin == "scalars" else None
                tags.setdefault(value.tag, []).append((event.step, number))
    return tags


# ----------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("step_offset", [0, 70])
@pytest.mark.parametrize("decay_start", [0, 5, 300])
@pytest.mark.parametrize("schedule", ["constant", "exponential", "cosine"])
def test_learning_rate_schedule_matches_closed_form(schedule, decay_start, step_offset):
    lr = training.TrainLearningRate(
        2e-4,
        schedule,
        warmup_steps=10,
        decay_steps=100,
        decay_rate=0.25,
        decay_start=decay_start,
        step_offset=step_offset,
    )
    for step in [0, 4, 9, 10, 60, 110, 299, 300, 350, 500]:
        # The warm-up counts the optimizer's own steps, the decay the run's.
        warm = min(1.0, (step + 1) / 10)
        u = max(step + step_offset - max(10, decay_start), 0)
        decay = {
            "constant": 1.0,
            "exponential": 0.25 ** (u / 100),
            "cosine": 0.25 + 0.75 * 0.5 * (1 + math.cos(math.pi * min(u / 100, 1.0))),
        }[schedule]
        assert float(lr(step)) == pytest.approx(2e-4 * warm * decay, rel=1e-5)


def test_optimizer_is_adam_at_the_configured_rate():
    params = tiny_params()
    optimizer = training.make_optimizer(params.train)
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)


def test_native_dilation_is_refused_for_training_where_tensorflow_cannot_differentiate_it(tmp_path):
    from tfwaveglow.layers.dilated_conv import native_dilation_gradient_error

    params = tiny_params(model__wn__dilated_conv="native")
    if not native_dilation_gradient_error():
        pytest.skip("this TensorFlow build differentiates conv1d's own dilation")
    with pytest.raises(ValueError, match="model.wn.dilated_conv: native cannot be trained on this machine"):
        training.Trainer(params, tmp_path / "run")
    assert not os.path.exists(tmp_path / "run")


# ----------------------------------------------------------------------------- the step
def test_step_equals_numpy_adam_on_clipped_gradient(tmp_path):
    """One step = NumPy Adam (Keras' update) on the tape's gradient clipped to the global norm."""
    params = tiny_params(train__grad_clip_norm=0.05, train__learning_rate=1e-3)
    trainer = training.Trainer(params, tmp_path / "run")
    mel, audio = clips(4)
    variables = trainer.model.trainable_variables
    before = [v.numpy().astype(np.float64) for v in variables]
    with tf.GradientTape() as tape:
        terms = tfwaveglow.nll_terms(trainer.model.forward(mel, audio))
    grads = [g.numpy().astype(np.float64) for g in tape.gradient(terms["loss/total"], variables)]

    result = trainer.train_step((tf.constant(mel), tf.constant(audio)))

    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert result["grad_norm"] == pytest.approx(norm, rel=1e-4)
    assert norm > 0.05, "the test needs the gradient to be clipped"
    for key in training.LOSS_TERMS:
        assert result[key] == pytest.approx(float(terms[key]), rel=1e-5, abs=1e-7)
    assert result["applied"] and int(trainer.step.numpy()) == 1
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    for var, w0, g in zip(variables, before, grads):
        g = g * (0.05 / norm)
        m, v = (1 - b1) * g, (1 - b2) * g * g
        alpha = lr * math.sqrt(1 - b2) / (1 - b1)
        expected = w0 - alpha * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-4, atol=1e-7, err_msg=var.path)


def test_fit_writes_a_loadable_run_dir_with_summaries(tmp_path):
    model_dir = tmp_path / "run"
    params = tiny_params(train__checkpoint_every=4, train__validate_every=3)
    mel, audio = clips(12)
    valid = tf.data.Dataset.from_tensor_slices(clips(3, seed=7)).batch(1)
    trainer = training.Trainer(params, model_dir)
    assert trainer.restore() == 0
    summary = trainer.fit(stream_fn(mel, audio), valid, steps=7)

    assert summary["step"] == 7 and summary["nonfinite_steps"] == 0
    assert trainer.trace_count == 1, "the pinned signature must not retrace across epochs"
    assert tf.train.CheckpointManager(trainer.checkpoint, model_dir / "checkpoints", 5).checkpoints
    names = sorted(os.path.basename(p) for p in trainer.manager.checkpoints)
    assert names == ["ckpt-4", "ckpt-7"]
    assert tfwaveglow.load_params(model_dir / "params.yaml") == params

    # The run dir and the inference artifact both load, with the trained (folded) weights.
    trained = weights_to_arrays(trainer.model.fold_weight_norm())
    for path in (model_dir, model_dir / "inference"):
        loaded = weights_to_arrays(tfwaveglow.load_model(path))
        assert loaded.keys() == trained.keys()
        for key in trained:
            np.testing.assert_allclose(loaded[key], trained[key], rtol=1e-6, atol=1e-7, err_msg=f"{path}: {key}")

    # Validation NLL: the mean over clips of the loaded model's loss.
    model = tfwaveglow.load_model(model_dir)
    vm, va = clips(3, seed=7)
    expected = np.mean([float(tfwaveglow.nll_loss(model.forward(vm[i : i + 1], va[i : i + 1]))) for i in range(3)])
    assert summary["valid"]["loss/total"] == pytest.approx(expected, rel=1e-4, abs=1e-6)

    train_tags = read_events(model_dir / "train")
    for tag in (
        *training.LOSS_TERMS,
        "train/learning_rate",
        "train/grad_norm",
        "train/steps_per_sec",
        "train/samples_per_sec",
        "train/nonfinite_steps",
    ):
        assert [s for s, _ in train_tags[tag]] == [2, 4, 6], tag
    assert all(v == pytest.approx(1e-4) for _, v in train_tags["train/learning_rate"])
    valid_tags = read_events(model_dir / "valid")
    assert [s for s, _ in valid_tags["loss/total"]] == [3, 6, 7]
    assert valid_tags["loss/total"][-1][1] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    with open(model_dir / "metrics.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), r["split"]) for r in rows] == [
        (2, "train"),
        (3, "valid"),
        (4, "train"),
        (6, "train"),
        (6, "valid"),
        (7, "valid"),
    ]

    # Running again past the end does nothing; the step counter is restored.
    again = training.Trainer(params, model_dir)
    assert again.restore() == 7
    assert again.fit(stream_fn(mel, audio), steps=7)["step"] == 7

    # Rows a killed run logged after its last checkpoint go on resume, the others stay as they were.
    with open(model_dir / "metrics.csv", encoding="utf-8") as f:
        before = f.read()
    with open(model_dir / "metrics.csv", "a", encoding="utf-8") as f:
        f.write("8,1.0,train,-1,0,0,0,1e-4,1,1,4\n10,2.0,valid,-1,0,0,0,,,,\n")
    resumed = training.Trainer(params, model_dir)
    assert resumed.restore() == 7
    with open(model_dir / "metrics.csv", encoding="utf-8") as f:
        assert f.read() == before


@pytest.mark.slow  # about 25 s; CI runs it
def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path):
    """Deterministic mode: 6 steps straight == 3 steps, then a fresh trainer restores and runs 3 more."""
    params = tiny_params(train__deterministic=True)
    mel, audio = clips(16)
    straight = training.Trainer(params, tmp_path / "straight")
    straight.restore()
    straight.fit(stream_fn(mel, audio), steps=6)

    first = training.Trainer(params, tmp_path / "resumed")
    first.restore()
    first.fit(stream_fn(mel, audio), steps=3)
    resumed = training.Trainer(params, tmp_path / "resumed")
    assert resumed.restore() == 3
    resumed.fit(stream_fn(mel, audio), steps=6)

    assert int(resumed.step.numpy()) == int(straight.step.numpy()) == 6
    assert int(resumed.optimizer.iterations.numpy()) == 6
    a, b = variables_by_path(straight.model.weights), variables_by_path(resumed.model.weights)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    a, b = optimizer_state(straight), optimizer_state(resumed)
    assert len(a) == len(b) > 2 * len(straight.model.trainable_variables)
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        np.testing.assert_array_equal(va, vb, err_msg=f"{ka} / {kb}")
    # Three steps fewer leave different weights, so the comparison above can fail.
    halfway, end = variables_by_path(first.model.weights), variables_by_path(straight.model.weights)
    assert any(not np.array_equal(halfway[k], end[k]) for k in halfway)


def test_cpu_time_budget_stops_the_run_and_training_time_survives_resume(tmp_path):
    """train.cpu_seconds_budget: fit stops once the run's CPU time reaches it, summed over resumes."""
    mel, audio = clips(16)
    run = tmp_path / "run"
    first = training.Trainer(tiny_params(), run)
    first.restore()
    first.fit(stream_fn(mel, audio), steps=4)
    cpu_after_4 = float(first.cpu_seconds.numpy())
    wall_after_4 = float(first.train_seconds.numpy())
    # Steps 2-4 were counted (the first step of a process traces the graph and is not).
    assert 0 < cpu_after_4 and 0 < wall_after_4
    per_step = cpu_after_4 / 3
    budget = cpu_after_4 + 2.5 * per_step  # reached after about three more steps
    resumed = training.Trainer(tiny_params(train__cpu_seconds_budget=budget), run)
    assert resumed.restore() == 4
    assert float(resumed.cpu_seconds.numpy()) == cpu_after_4
    summary = resumed.fit(stream_fn(mel, audio), steps=1000)
    assert 5 <= summary["step"] < 20
    assert float(resumed.cpu_seconds.numpy()) >= budget
    assert summary["checkpoint"].endswith(f"ckpt-{summary['step']}")
    with open(run / "metrics.csv", encoding="utf-8") as f:
        hours = [float(row["cpu_hours"]) for row in csv.DictReader(f)]
    assert hours == sorted(hours) and hours[-1] > 0
    # The resume changed one key: recorded with the step it held from; a resume without a change adds nothing.
    budget_default = tiny_params().train.cpu_seconds_budget
    expected = [{"step": 4, "changed": {"train.cpu_seconds_budget": [budget_default, budget]}}]
    assert budget != budget_default
    assert training.read_params_changes(run) == expected
    assert training.Trainer(tiny_params(train__cpu_seconds_budget=budget), run).restore() == summary["step"]
    assert training.read_params_changes(run) == expected
    initial = training.dotted_initial_params(tfwaveglow.load_params(run / "params.yaml"), expected)
    assert initial["train.cpu_seconds_budget"] == budget_default and initial["model.n_flows"] == 2


# ----------------------------------------------------------------------------- one trainer per run
def test_a_second_trainer_on_a_busy_run_directory_stops_and_names_the_holder(tmp_path):
    """Another process holds the run: restore refuses before writing anything; its kill frees the run."""
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from tfwaveglow.run_lock import RunDirectoryLock\n"
            "lock = RunDirectoryLock(sys.argv[1])\n"
            "lock.acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
            str(run),
        ],
        env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        trainer = training.Trainer(tiny_params(), run)
        with pytest.raises(RunDirectoryBusyError, match=rf"{run}.*pid {holder.pid} on "):
            trainer.restore()
        assert sorted(os.listdir(run)) == ["train.lock"], "nothing may be written beside the holder"
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
        holder.wait()
    assert trainer.restore() == 0
    # In one process too: a second trainer is refused while the first one holds the run ...
    with pytest.raises(RunDirectoryBusyError, match=rf"pid {os.getpid()} on "):
        training.Trainer(tiny_params(), run).restore()
    mel, audio = clips(8)
    assert trainer.fit(stream_fn(mel, audio), steps=2)["step"] == 2
    # ... and the end of fit frees it for the next one.
    again = training.Trainer(tiny_params(), run)
    assert again.restore() == 2
    again.run_lock.release()


# ----------------------------------------------------------------------------- NaN guard
def test_nan_guard_skips_counts_and_stops_with_the_last_good_checkpoint_intact(tmp_path):
    params = tiny_params(train__checkpoint_every=2, train__max_consecutive_nonfinite=3)
    mel, audio = clips(4 * 8)
    mel, audio = mel.reshape(8, 4, FRAMES, 16), audio.reshape(8, 4, 1024)
    mel[2, 1, 0, 3] = np.nan  # step 3: NaN in the mel
    audio[4] *= 1e30  # step 5: finite input whose loss overflows to inf
    audio[5, 0, 10] = np.inf  # step 6: inf in the audio
    mel[6, 2] = np.nan  # step 7: the third in a row
    batches = tf.data.Dataset.from_tensor_slices((mel, audio))
    trainer = training.Trainer(params, tmp_path / "run")
    trainer.restore()
    snapshots = {}

    original = trainer.train_step

    def recording_step(batch):
        result = original(batch)
        snapshots[int(trainer.step.numpy())] = (result, variables_by_path(trainer.model.weights))
        return result

    trainer.train_step = recording_step
    with pytest.raises(training.NonFiniteTrainingError, match=r"3 non-finite steps in a row.*ckpt-4"):
        trainer.fit(training.split_global_batches(lambda start_step: batches.skip(start_step)), steps=8)

    assert [k for k, (r, _) in sorted(snapshots.items()) if not r["applied"]] == [3, 5, 6, 7]
    assert [bool(snapshots[k][0]["inputs_finite"]) for k in (3, 5, 6, 7)] == [False, True, False, False]
    assert not snapshots[5][0]["loss_finite"] and not np.isfinite(snapshots[5][0]["loss/total"])
    assert int(trainer.nonfinite_steps.numpy()) == 4
    assert int(trainer.optimizer.iterations.numpy()) == 3  # steps 1, 2 and 4 updated the weights
    for skipped in (3, 5, 6, 7):
        for key, value in snapshots[skipped][1].items():
            np.testing.assert_array_equal(value, snapshots[skipped - 1][1][key], err_msg=f"step {skipped}: {key}")
    # Nothing was saved after step 4, and that checkpoint holds step 4's weights.
    assert trainer.manager.latest_checkpoint.endswith("ckpt-4")
    reader = tf.train.load_checkpoint(trainer.manager.latest_checkpoint)
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    restored = training.Trainer(params, tmp_path / "run")
    assert restored.restore() == 4
    for key, value in variables_by_path(restored.model.weights).items():
        np.testing.assert_array_equal(value, snapshots[4][1][key], err_msg=key)


def test_checkpoint_index_never_lists_a_checkpoint_being_deleted(tmp_path, monkeypatch):
    """A kill while old checkpoints are deleted must not leave them in the index; leftovers are cleaned up."""
    from tensorflow.python.checkpoint import checkpoint_management

    params = tiny_params(train__max_to_keep=2)
    trainer = training.Trainer(params, tmp_path)
    trainer.restore()
    listed_while_deleting = []
    delete = checkpoint_management._delete_file_if_exists

    def recording_delete(filespec):
        state = tf.train.get_checkpoint_state(trainer.checkpoint_dir)
        listed = [os.path.basename(p) for p in state.all_model_checkpoint_paths]
        listed_while_deleting.append((os.path.basename(filespec).split(".")[0], listed))
        delete(filespec)

    monkeypatch.setattr(checkpoint_management, "_delete_file_if_exists", recording_delete)
    for step in (1, 2, 3, 4):
        trainer.step.assign(step)
        trainer.save()
    assert [name for name, _ in listed_while_deleting] == ["ckpt-1", "ckpt-1", "ckpt-2", "ckpt-2"]
    for name, listed in listed_while_deleting:
        assert name not in listed, (name, listed)
    state = tf.train.get_checkpoint_state(trainer.checkpoint_dir)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-3", "ckpt-4"]

    # What a kill mid-delete or mid-write leaves behind goes at the next start; listed checkpoints stay.
    leftovers = [tmp_path / "checkpoints" / "ckpt-2.data-00000-of-00001", tmp_path / "checkpoints" / "ckpt-5_temp"]
    leftovers[0].write_bytes(b"partial")
    leftovers[1].mkdir()
    (leftovers[1] / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"partial")
    trainer.run_lock.release()  # as the killed process's exit would
    assert training.Trainer(params, tmp_path).restore() == 4
    assert not any(p.exists() for p in leftovers)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "checkpoint",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
        "ckpt-4.data-00000-of-00001",
        "ckpt-4.index",
    ]


# ----------------------------------------------------------------------------- precision
@pytest.mark.slow  # about 12 s; CI runs it
def test_loss_scaling_in_float32_gives_the_unscaled_step(tmp_path):
    params = tiny_params()
    mel, audio = clips(4)
    batch = (tf.constant(mel), tf.constant(audio))
    plain = training.Trainer(params, tmp_path / "plain", loss_scaling=False)
    scaled = training.Trainer(params, tmp_path / "scaled", loss_scaling=True)
    scaled.model.set_weights(plain.model.get_weights())
    r_plain, r_scaled = plain.train_step(batch), scaled.train_step(batch)
    assert r_scaled["grad_norm"] == pytest.approx(r_plain["grad_norm"], rel=1e-5)
    for a, b in zip(plain.model.weights, scaled.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-8, err_msg=a.path)

    # An overflowing scaled gradient with a finite loss: skipped, the scale halves, not counted as non-finite.
    scaled.loss_scale.scale.assign(2.0**40)
    before = variables_by_path(scaled.model.weights)
    result = scaled.train_step((tf.constant(mel), tf.constant(audio * 1e13)))
    assert result["loss_finite"] and not result["grads_finite"] and result["overflow"]
    assert not result["applied"]
    assert float(scaled.loss_scale.scale.numpy()) == 2.0**39
    assert int(scaled.nonfinite_steps.numpy()) == 0 and int(scaled.optimizer.iterations.numpy()) == 1
    for key, value in variables_by_path(scaled.model.weights).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_dynamic_loss_scale_grows_and_shrinks():
    scale = training.DynamicLossScale(initial_scale=8.0, growth_steps=2)
    steps = [True, True, True, False, False, False, False, True]
    seen = []
    for finite in steps:
        scale.update(tf.constant(finite))
        seen.append(float(scale.scale.numpy()))
    assert seen == [8.0, 16.0, 16.0, 8.0, 4.0, 2.0, 1.0, 1.0]


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="checks the GPU-less behaviour")
def test_mixed_precision_is_not_applied_without_a_gpu(tmp_path):
    assert keras.mixed_precision.global_policy().name == "float32"
    assert training.configure_mixed_precision(True) is None
    trainer = training.Trainer(tiny_params(train__mixed_precision=True), tmp_path / "run")
    assert not trainer.mixed_precision and not trainer.loss_scaling
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow  # about 12 s; CI runs it
def test_forced_mixed_float16_keeps_float32_variables_log_dets_and_loss(tmp_path):
    """The float16 path, forced on the CPU: float32 variables, log-dets and loss; close to float32 training."""
    params = tiny_params()
    mel, audio = clips(4)
    batch = (tf.constant(mel), tf.constant(audio))
    reference = training.Trainer(params, tmp_path / "fp32")
    try:
        mixed = training.Trainer(params, tmp_path / "fp16", mixed_precision=True)
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        assert mixed.mixed_precision and mixed.loss_scaling
        mixed.model.set_weights(reference.model.get_weights())
        assert all(v.dtype == "float32" for v in mixed.model.weights)
        out = mixed.model.forward(tf.cast(mel, tf.float16), tf.cast(audio, tf.float16))
        assert out["z"].dtype == tf.float32  # only the conditioning and the WNs run in float16
        assert out["log_det_w_sum"].dtype == tf.float32 and out["log_s_sum"].dtype == tf.float32
        assert mixed.model.convinv[0].inverse_kernel().dtype == tf.float32
        assert all(v.dtype == tf.float32 for v in tfwaveglow.nll_terms(out).values())
        r16 = [mixed.train_step(batch) for _ in range(3)]
        r32 = [reference.train_step(batch) for _ in range(3)]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(r["applied"] for r in r16)
    assert r16[0]["loss_scale"] == 2.0**15
    for a, b in zip(r16, r32):
        assert a["loss/total"] == pytest.approx(b["loss/total"], abs=2e-3)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=2e-2)


def test_bfloat16_training_keeps_float32_variables_and_flow_without_loss_scaling(tmp_path):
    """train.mixed_precision: bfloat16 on any device: WNs in bfloat16, the rest float32, close to float32 steps."""
    params = tiny_params(train__mixed_precision="bfloat16")
    mel, audio = clips(4)
    batch = (tf.constant(mel), tf.constant(audio))
    reference = training.Trainer(tiny_params(), tmp_path / "fp32")
    try:
        mixed = training.Trainer(params, tmp_path / "bf16")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert mixed.compute_dtype == tf.bfloat16 and mixed.mixed_precision and not mixed.loss_scaling
        mixed.model.set_weights(reference.model.get_weights())
        assert all(v.dtype == "float32" for v in mixed.model.weights)
        r16 = [mixed.train_step(batch) for _ in range(3)]
        r32 = [reference.train_step(batch) for _ in range(3)]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(r["applied"] for r in r16)
    for a, b in zip(r16, r32):
        assert a["loss/total"] == pytest.approx(b["loss/total"], abs=2e-2)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=5e-2)


def test_mixed_precision_setting_is_checked():
    with pytest.raises(tfwaveglow.ConfigError, match="mixed_precision"):
        tiny_params(train__mixed_precision="int8")
    assert training.configure_mixed_precision(False) is None


@pytest.mark.slow  # about 17 s; CI runs it
def test_jit_compiled_step_matches_the_graph_step(tmp_path):
    mel, audio = clips(4)
    batch = (tf.constant(mel), tf.constant(audio))
    graph = training.Trainer(tiny_params(), tmp_path / "graph")
    xla = training.Trainer(tiny_params(train__jit_compile=True), tmp_path / "xla")
    xla.model.set_weights(graph.model.get_weights())
    for _ in range(2):
        rg, rx = graph.train_step(batch), xla.train_step(batch)
        assert rx["loss/total"] == pytest.approx(rg["loss/total"], rel=1e-4, abs=1e-6)
    for a, b in zip(graph.model.weights, xla.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)


# ----------------------------------------------------------------------------- warm start, params
def test_init_from_copies_weights_with_a_fresh_optimizer(tmp_path):
    params = tiny_params()
    keras.utils.set_random_seed(99)
    source = tfwaveglow.WaveGlow.from_params(params)  # no weight norm: like a converted NVIDIA model
    tfwaveglow.save_model(source, tmp_path / "pretrained", params)
    trainer = training.Trainer(params, tmp_path / "run")
    assert trainer.restore(init_from=tmp_path / "pretrained") == 0
    assert trainer.model.weight_norm
    expected, got = weights_to_arrays(source), weights_to_arrays(trainer.model)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert int(trainer.optimizer.iterations.numpy()) == 0
    # The run records where its weights came from (no training_state.json there: no step).
    sha = hashlib.sha256((tmp_path / "pretrained" / "weights.npz").read_bytes()).hexdigest()
    record = {"init_from": str(tmp_path / "pretrained"), "step": None, "continue_run": False, "weights_sha256": sha}
    assert training.read_warm_start(tmp_path / "run") == record
    assert training.read_warm_start(tmp_path) is None
    # A run with a checkpoint resumes and ignores --init_from.
    for variable in trainer.model.trainable_variables:
        variable.assign(variable * 0.5)
    trainer.step.assign(2)
    trainer.save()
    trainer.run_lock.release()
    again = training.Trainer(params, tmp_path / "run")
    assert again.restore(init_from=tmp_path / "pretrained") == 2
    assert training.read_warm_start(tmp_path / "run") == record
    resumed, saved = weights_to_arrays(again.model), weights_to_arrays(trainer.model)
    for key in saved:
        np.testing.assert_array_equal(resumed[key], saved[key], err_msg=key)

    # A model of another shape is refused with the directory named.
    bigger = tiny_params(model__wn__n_channels=16)
    with pytest.raises(ValueError, match="pretrained"):
        training.Trainer(bigger, tmp_path / "run2").restore(init_from=tmp_path / "pretrained")


def test_continue_run_carries_on_the_shipped_runs_step_clocks_and_schedule(tmp_path):
    from tfwaveglow.model_io import ModelLoadError, save_training_state

    params = tiny_params(
        train__learning_rate=1e-3,
        train__lr_warmup_steps=4,
        train__lr_schedule="cosine",
        train__lr_decay_steps=100,
        train__lr_decay_rate=0.1,
    )
    keras.utils.set_random_seed(5)
    shipped = tmp_path / "shipped"
    tfwaveglow.save_model(tfwaveglow.WaveGlow.from_params(params), shipped, params, weights_dtype="float16")
    with pytest.raises(ModelLoadError, match="training_state.json"):
        training.Trainer(params, tmp_path / "no_state").restore(init_from=shipped, continue_run=True)
    save_training_state(shipped, step=50, train_seconds=3600.0, cpu_seconds=7200.0)

    def expected_lr(optimizer_step):  # closed form: warm-up on the optimizer's steps, cosine on the run's
        warm = min(1.0, (optimizer_step + 1) / 4)
        u = min(max(optimizer_step + 50 - 4, 0) / 100, 1.0)
        return 1e-3 * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * u)))

    trainer = training.Trainer(params, tmp_path / "run")
    assert trainer.restore(init_from=shipped, continue_run=True) == 50
    record = training.read_warm_start(tmp_path / "run")
    assert record == {
        "init_from": str(shipped),
        "step": 50,
        "continue_run": True,
        "weights_sha256": record["weights_sha256"],
    }
    assert record["weights_sha256"] == hashlib.sha256((shipped / "weights.npz").read_bytes()).hexdigest()
    assert int(trainer.step.numpy()) == 50 and int(trainer.optimizer.iterations.numpy()) == 0
    assert float(trainer.train_seconds.numpy()) == 3600.0 and float(trainer.cpu_seconds.numpy()) == 7200.0
    assert float(trainer.optimizer.learning_rate) == pytest.approx(expected_lr(0), rel=1e-5)
    trainer.optimizer.iterations.assign(10)
    assert float(trainer.optimizer.learning_rate) == pytest.approx(expected_lr(10), rel=1e-5)
    trainer.step.assign(60)
    trainer.save()
    trainer.run_lock.release()

    # Resuming the continued run keeps the offset (the fresh schedule object starts at 0).
    again = training.Trainer(params, tmp_path / "run")
    assert again.lr_schedule.step_offset == 0
    assert again.restore() == 60
    assert again.lr_schedule.step_offset == 50
    assert float(again.optimizer.learning_rate) == pytest.approx(expected_lr(10), rel=1e-5)
    again.run_lock.release()

    with pytest.raises(ValueError, match="continue_run needs init_from"):
        training.Trainer(params, tmp_path / "run3").restore(continue_run=True)


def test_a_checkpoint_older_than_the_clocks_and_offset_still_resumes(tmp_path):
    params = tiny_params()
    trainer = training.Trainer(params, tmp_path / "run")
    trainer.restore()
    trainer.step.assign(3)
    for variable in trainer.model.trainable_variables:
        variable.assign(variable + 0.25)
    # What a run saved before train_seconds, cpu_seconds and lr_step_offset existed holds.
    old = tf.train.Checkpoint(
        step=trainer.step,
        model=trainer.model,
        optimizer=trainer.optimizer,
        loss_scale=trainer.loss_scale,
        nonfinite_steps=trainer.nonfinite_steps,
    )
    tf.train.CheckpointManager(old, str(tmp_path / "run" / "checkpoints"), 3).save(3)
    trainer.run_lock.release()

    again = training.Trainer(params, tmp_path / "run")
    assert again.restore() == 3
    assert float(again.train_seconds.numpy()) == 0.0 and int(again.lr_step_offset.numpy()) == 0
    resumed, saved = weights_to_arrays(again.model), weights_to_arrays(trainer.model)
    for key in saved:
        np.testing.assert_array_equal(resumed[key], saved[key], err_msg=key)
    again.run_lock.release()

    # A checkpoint without the model is still refused.
    bare = tmp_path / "bare"
    tf.train.CheckpointManager(
        tf.train.Checkpoint(step=tf.Variable(1, dtype=tf.int64)), str(bare / "checkpoints"), 1
    ).save(1)
    with pytest.raises(AssertionError):
        training.Trainer(params, bare).restore()


def test_a_run_dir_of_another_model_is_refused(tmp_path):
    params = tiny_params()
    tfwaveglow.save_params(params, tmp_path / "params.yaml")
    other = tiny_params(model__n_flows=3)
    with pytest.raises(ValueError, match="n_flows"):
        training.Trainer(other, tmp_path).restore()
    # Training keys may change between runs of one model.
    longer = tiny_params(train__steps=99)
    assert training.Trainer(longer, tmp_path).restore() == 0
    assert tfwaveglow.load_params(tmp_path / "params.yaml").train.steps == 99
    assert training.read_params_changes(tmp_path) == []  # no checkpoint yet: nothing to record


def test_examples_trained_follow_the_recorded_batch_changes():
    newest = tiny_params(train__batch_size=8, train__learning_rate=1e-4)
    changes = [
        {"step": 10, "changed": {"train.batch_size": [2, 4]}},
        {"step": 20, "changed": {"train.learning_rate": [5e-4, 1e-4]}},
        {"step": 30, "changed": {"train.batch_size": [4, 8]}},
    ]
    # 10 steps of 2, 20 of 4, then 8 per step.
    assert [training.examples_trained(newest, changes, s) for s in (5, 10, 25, 30, 40)] == [10, 20, 80, 100, 180]
    assert training.examples_trained(newest, [], 7) == 56


def test_two_resumes_from_one_checkpoint_are_undone_in_file_order(tmp_path):
    """A resume that set batch 8 died before its next checkpoint; the next resume went back to 4."""
    lines = [
        {"step": 10, "changed": {"train.learning_rate": [1e-3, 5e-4]}},
        {"step": 21, "changed": {"train.batch_size": [4, 8]}},
        {"step": 21, "changed": {"train.batch_size": [8, 4]}},
    ]
    (tmp_path / training.PARAMS_CHANGES_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    changes = training.read_params_changes(tmp_path)
    assert changes == lines
    newest = tiny_params(train__batch_size=4, train__learning_rate=5e-4)
    initial = training.dotted_initial_params(newest, changes)
    assert (initial["train.batch_size"], initial["train.learning_rate"]) == (4, 1e-3)
    assert training.examples_trained(newest, changes, 30) == 30 * 4


def test_a_resume_that_changes_the_objective_records_it(tmp_path):
    trainer = training.Trainer(tiny_params(), tmp_path)
    trainer.restore()
    trainer.step.assign(3)
    trainer.save()
    trainer.run_lock.release()
    resumed = training.Trainer(tiny_params(loss__stft=0.5, spectral__sigma=0.8), tmp_path)
    assert resumed.restore() == 3
    resumed.run_lock.release()
    changed = {"loss.stft": [0.0, 0.5], "spectral.sigma": [0.6, 0.8]}
    assert training.read_params_changes(tmp_path) == [{"step": 3, "changed": changed}]


def test_a_damaged_warm_start_record_is_named(tmp_path):
    (tmp_path / training.WARM_START_FILE).write_text('{"step": 3}')
    with pytest.raises(ValueError, match=r"warm_start.json: not a warm-start record"):
        training.read_warm_start(tmp_path)


def test_a_damaged_params_changes_line_is_named(tmp_path):
    good = '{"step": 5, "changed": {"train.batch_size": [4, 8]}}'
    (tmp_path / training.PARAMS_CHANGES_FILE).write_text(good + '\n{"step": 9\n')
    with pytest.raises(ValueError, match=r"params_changes.jsonl, line 2"):
        training.read_params_changes(tmp_path)


# ----------------------------------------------------------------------------- distribution
@pytest.mark.slow  # about 40 s; CI runs it
def test_mirrored_over_two_cpu_devices_matches_one_device(tmp_path):
    out = finish(run_worker(["mirrored", str(tmp_path)]))
    assert "replicas 2" in out
    mirrored = np.load(tmp_path / "weights_mirrored.npz")
    single = np.load(tmp_path / "weights_default.npz")
    assert mirrored.files == single.files
    moved = 0
    initial = np.load(tmp_path / "weights_initial.npz")
    for key in single.files:
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
        moved += not np.array_equal(single[key], initial[key])
    assert moved > len(single.files) // 2, "training must have changed the weights"
    with open(tmp_path / "summaries.json", encoding="utf-8") as f:
        summaries = json.load(f)
    for key in training.LOSS_TERMS:
        assert summaries["mirrored"]["valid"][key] == pytest.approx(summaries["default"]["valid"][key], abs=1e-5)
        assert summaries["mirrored"]["train"][key] == pytest.approx(summaries["default"]["train"][key], abs=1e-5)


@pytest.mark.slow
def test_multi_worker_over_loopback_trains_identical_workers(tmp_path, corpus):
    """Two workers over loopback, each reading only its half of every global batch from the real files,
    end with the same weights as one process that reads the whole batches."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = [
        run_worker(
            ["multi_worker", str(tmp_path), str(corpus)],
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    outputs = [finish(w) for w in workers]
    assert all("replicas 2" in out for out in outputs)
    w0, w1 = np.load(tmp_path / "weights_worker0.npz"), np.load(tmp_path / "weights_worker1.npz")
    single = np.load(tmp_path / "weights_single.npz")
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
        np.testing.assert_allclose(w0[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # Each worker kept only its half of every global batch of 4 (stream indices 4k, 4k + 1 for worker 0,
    # 4k + 2, 4k + 3 for worker 1), so no example was read twice between them, and together they kept
    # every example of the steps trained. Prefetching may have kept later ones too.
    kept = [json.loads((tmp_path / f"kept_worker{i}.json").read_text(encoding="utf-8")) for i in range(2)]
    for worker, indices in enumerate(kept):
        assert len(set(indices)) == len(indices), f"worker {worker} kept an example twice"
        assert all((i % 4) // 2 == worker for i in indices), f"worker {worker} kept {indices}"
    assert set(range(4 * 4)) <= set(kept[0]) | set(kept[1])
    # and they read real segments from the files, one per kept example at most
    reads = [json.loads((tmp_path / f"reads_worker{i}.json").read_text(encoding="utf-8")) for i in range(2)]
    for worker in range(2):
        assert 2 * 4 <= len(reads[worker]) <= len(kept[worker])
        assert all(frames == 4096 for _, _, frames in reads[worker])
    # Only the chief wrote checkpoints, and they load.
    run_dir = tmp_path / "run_multi_worker"
    assert sorted(os.listdir(run_dir / "checkpoints")) == [
        "checkpoint",
        "ckpt-4.data-00000-of-00001",
        "ckpt-4.index",
    ]
    assert not glob.glob(str(run_dir / ".worker_*"))
    loaded = weights_to_arrays(tfwaveglow.load_model(run_dir))
    assert len(loaded) > 0


# ----------------------------------------------------------------------------- the CLI on real speech
SMOKE_OVERRIDES = {
    "train.steps": 6,
    "train.deterministic": True,
    "train.log_every": 2,
    "train.summary_every": 2,
    "train.checkpoint_every": 3,
    "train.validate_every": 3,
    "train.audio_summary_every": 6,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech_dir):
    """The shipped speech clips preprocessed into a training corpus (4 train, 2 valid utterances)."""
    root = tmp_path_factory.mktemp("corpus")
    preprocess_speech(speech_dir, root)
    return root


def run_cli(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow  # about 35 s; CI runs it
def test_train_cli_smoke_on_real_speech_then_resume(tmp_path, corpus):
    from tfwaveglow import data

    params_file = tmp_path / "tiny.yaml"
    smoke = tfwaveglow.load_params(TINY_YAML, SMOKE_OVERRIDES)
    tfwaveglow.save_params(smoke, params_file)
    model_dir = tmp_path / "run"
    common = [
        f"--filelist={corpus / 'train.txt'}",
        f"--wave_dir={corpus / 'audio'}",
        f"--lc_dir={corpus / 'mels'}",
        f"--model_dir={model_dir}",
        f"--valid_filelist={corpus / 'valid.txt'}",
    ]
    done = run_cli(*common, f"--params={params_file}")
    assert done.returncode == 0, done.stderr[-4000:]
    log = done.stderr
    assert "step 6/6 | loss" in log and "steps/s" in log and "samples/s" in log and "ETA" in log
    assert sorted(os.listdir(model_dir / "checkpoints")) == [
        "checkpoint",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
        "ckpt-6.data-00000-of-00001",
        "ckpt-6.index",
    ]
    params = tfwaveglow.load_params(model_dir / "params.yaml")
    assert params == tfwaveglow.load_params(params_file)

    # The run dir loads as a model, and its validation NLL is the one logged at step 6.
    model = tfwaveglow.load_model(model_dir)
    nll = [
        float(tfwaveglow.nll_loss(model.forward(mel, audio)))
        for mel, audio in data.make_validation_dataset(corpus / "valid.txt", corpus / "audio", corpus / "mels", params)
    ]
    valid = read_events(model_dir / "valid")
    assert [s for s, _ in valid["loss/total"]] == [3, 6]
    assert valid["loss/total"][-1][1] == pytest.approx(np.mean(nll), rel=1e-4)
    # Listenable validation audio and mel images, generated beside the ground truth.
    for clip in (0, 1):
        for tag in (f"audio_{clip}/generated", f"audio_{clip}/ground_truth", f"mel_{clip}/generated_vs_ground_truth"):
            assert [s for s, _ in valid[tag]] == [6], tag
    assert set(read_events(model_dir / "train")) >= {*training.LOSS_TERMS, "train/grad_norm", "train/samples_per_sec"}
    assert os.path.isfile(model_dir / "inference" / "weights.npz")

    # Running again with more steps resumes from step 6 with the run's own params.
    more = run_cli(*common, "--params_override=train.steps=8")
    assert more.returncode == 0, more.stderr[-4000:]
    assert "resumed from" in more.stderr and "ckpt-6 at step 6" in more.stderr
    assert "step 8/8 | loss" in more.stderr
    assert tfwaveglow.load_params(model_dir / "params.yaml").train.steps == 8
    assert tf.train.latest_checkpoint(model_dir / "checkpoints").endswith("ckpt-8")

    # main(argv) in this process: a bad override is refused with the key named, before any training.
    import train as train_cli

    with pytest.raises(tfwaveglow.ConfigError, match="train.no_such_key"):
        train_cli.resolve_params(None, str(model_dir), train_cli.parse_overrides(["train.no_such_key=1"]))
    assert train_cli.main(["train.py", *common, "--params_override=train.no_such_key=1"]) == 1
    assert tf.train.latest_checkpoint(model_dir / "checkpoints").endswith("ckpt-8")


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_readable_checkpoints(tmp_path):
    """scripts/kill_test.py: 4 SIGKILLs at random moments, each followed by a resume (about a minute)."""
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "kill_test.py"), "--rounds=4", f"--work_dir={tmp_path}"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"], report
    latest = [r["latest_step"] or 0 for r in report["rounds"]]
    assert latest == sorted(latest) and report["final"]["latest_step"] == latest[-1] + 3
