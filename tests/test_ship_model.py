"""scripts/ship_model.py end to end on a tiny training run: float16 model, samples, model card."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import ROOT

import tfwaveglow
from tfwaveglow.model_io import stored_weights_dtype, weights_to_arrays
from tfwaveglow.training.params_history import params_changes

SMALL = {"model.n_flows": 2, "model.n_early_every": 2, "model.wn.n_layers": 2, "model.wn.n_channels": 8}
# An annealed run: constant rate to step 150, then a cosine decay.
ANNEALED = {"train.lr_schedule": "cosine", "train.lr_decay_start": 150, "train.lr_decay_rate": 0.1}
# train.py's columns; only step, time, split and loss/total are read.
METRICS_CSV = """step,time,split,loss/total,loss/z,loss/log_s,loss/log_det_w,learning_rate,grad_norm,steps_per_sec,\
samples_per_sec
50,1000.0,train,-1.5,,,,,,,
100,1060.0,train,-2.5,,,,,,,
100,1070.0,valid,-2.25,,,,,,,
150,5000.0,train,-3.0,,,,,,,
200,5030.0,train,-3.5,,,,,,,
200,5040.0,valid,-3.125,,,,,,,
250,5100.0,train,-9.0,,,,,,,
"""


def load_script():
    spec = importlib.util.spec_from_file_location("ship_model", os.path.join(ROOT, "scripts", "ship_model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ship")
    params = tfwaveglow.load_params(os.path.join(ROOT, "configs", "cpu_convergence.yaml"), {**SMALL, **ANNEALED})
    model = tfwaveglow.WaveGlow.from_params(params, weight_norm=True)
    rng = np.random.default_rng(0)
    for coupling in model.couplings:  # non-identity couplings
        end = coupling.wn.end
        end.assign_kernel(rng.normal(0, 0.05, end.kernel.shape), rng.normal(0, 0.05, end.bias.shape))
    run = tmp / "run"
    run.mkdir()
    tfwaveglow.save_params(params, str(run / "params.yaml"))
    step = tf.Variable(200, dtype=tf.int64)
    train_seconds, cpu_seconds = tf.Variable(5400.0, dtype=tf.float64), tf.Variable(9000.0, dtype=tf.float64)
    checkpoint = tf.train.Checkpoint(step=step, model=model, train_seconds=train_seconds, cpu_seconds=cpu_seconds)
    tf.train.CheckpointManager(checkpoint, str(run / "checkpoints"), 3).save(200)
    (run / "metrics.csv").write_text(METRICS_CSV)
    examples = tmp / "examples"
    (examples / "male").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "examples", "male", "grail-gr-v-vsechny1.flac"), examples / "male")
    out, samples = tmp / "model", tmp / "samples"
    script = load_script()
    script.main(
        ["ship_model", f"--run_dir={run}", f"--output_dir={out}", f"--examples_dir={examples}",
         f"--samples_dir={samples}", "--sigma=0.7"]
    )  # fmt: skip
    return {"tmp": tmp, "run": run, "out": out, "samples": samples, "model": model, "script": script}


def test_the_checkpoint_is_shipped_in_float16_with_the_denoiser_default(shipped):
    out = shipped["out"]
    assert sorted(os.listdir(out)) == ["MODEL_CARD.md", "params.yaml", "training_state.json", "weights.npz"]
    # What train.py --continue_run carries on from: the checkpoint's step and clocks.
    state = json.loads((out / "training_state.json").read_text())
    assert state == {"step": 200, "train_seconds": 5400.0, "cpu_seconds": 9000.0}
    assert stored_weights_dtype(out) == "float16"
    loaded, params = tfwaveglow.model_io.load_model_and_params(out)
    assert params.export.denoiser_strength == 0.1 and params.model.n_flows == 2
    assert params.export.sigma == 0.7  # --sigma; the run's own is 0.6
    assert "sigma 0.7, denoiser strength 0.1" in (out / "MODEL_CARD.md").read_text()
    expected = weights_to_arrays(shipped["model"].fold_weight_norm())
    for name, value in weights_to_arrays(loaded).items():
        np.testing.assert_array_equal(value, expected[name].astype(np.float16).astype(np.float32), err_msg=name)


def test_the_card_reports_the_runs_numbers(shipped):
    card = (shipped["out"] / "MODEL_CARD.md").read_text()
    assert "| training steps | 200 (checkpoint `ckpt-200`) |" in card
    assert "**-3.125** (step 200; best -3.125 at step 200)" in card
    assert "| training NLL | -2.625 (mean of the rows logged at steps 50–200) |" in card  # step 250 is later
    # 60 + 10 s, then a stop of more than 10 minutes, then 30 + 10 s: 110 s.
    assert f"| training time | {110 / 3600:.2f} h" in card
    # The reproduction command: the config file plus exactly the keys where the run differs from it.
    overrides = re.findall(r"--params_override=(\S+)", card)
    assert overrides == [
        "train.steps=200",
        "model.n_flows=2",
        "model.wn.n_layers=2",
        "model.wn.n_channels=8",
        "train.lr_schedule=cosine",
        "train.lr_decay_start=150",
        "train.lr_decay_rate=0.1",
    ]
    reproduced = tfwaveglow.load_params(
        os.path.join(ROOT, "configs", "cpu_convergence.yaml"), dict(o.split("=", 1) for o in overrides)
    )
    shipped_params = tfwaveglow.load_params(str(shipped["run"] / "params.yaml"))
    assert reproduced.model == shipped_params.model and reproduced.data == shipped_params.data
    assert dataclasses.replace(reproduced.train, steps=shipped_params.train.steps) == shipped_params.train
    assert "  lr_decay_start: 150\n" in card
    assert "GPL-2" in card and "Not measured yet for this checkpoint" in card


def test_samples_are_the_demo_of_the_shipped_model(shipped):
    samples = shipped["samples"]
    summary = json.loads((samples / "summary.json").read_text())
    assert summary["model"] == str(shipped["out"]) and summary["num_files"] == 1
    assert sorted(os.listdir(samples / "male" / "grail-gr-v-vsechny1")) == [
        "griffin_lim.wav", "mels.png", "original.wav", "waveglow.wav", "waveglow_denoised.wav"
    ]  # fmt: skip
    readme = (samples / "README.md").read_text()
    assert "(200 training steps, float16 weights)" in readme and "denoiser strength 0.1" in readme


def test_the_evaluation_section_is_taken_from_a_report_and_then_kept(shipped, tmp_path):
    report = tmp_path / "evaluation.md"
    report.write_text("# Copy-synthesis evaluation\n\n| file | PESQ |\n| --- | --- |\n| a | 1.23 |\n")
    script, run, out = shipped["script"], shipped["run"], shipped["out"]
    examples = os.path.join(ROOT, "examples")
    base = ["ship_model", f"--run_dir={run}", f"--output_dir={out}", "--samples_dir=", f"--examples_dir={examples}"]
    script.main([*base, f"--evaluation_md={report}"])
    card = (out / "MODEL_CARD.md").read_text()
    assert "| a | 1.23 |" in card and "# Copy-synthesis evaluation" not in card
    script.main(base)  # shipped again without a report: the section stays
    assert "| a | 1.23 |" in (out / "MODEL_CARD.md").read_text()


def test_a_run_without_checkpoints_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit, match=r"ship_model: error: .*run: no checkpoint in checkpoints/"):
        load_script().main(["ship_model", f"--run_dir={tmp_path / 'run'}", f"--output_dir={tmp_path / 'm'}"])


def test_the_card_describes_the_layout_and_reproduces_from_layered_configs():
    script = load_script()
    layers = ["configs/pilot_common.yaml", "configs/pilots/frame_g256_sep7x128.yaml", "configs/long_run.yaml"]
    frame = tfwaveglow.load_params([os.path.join(ROOT, path) for path in layers])
    assert script.architecture(frame, 11_705_984) == (
        "12 flows of 256-sample groups (one per mel frame), WN 7 layers × 128 channels (depthwise-separable), "
        "the mel repeated to the group rate with 1 frame of context either side; 11,705,984 parameters"
    )
    nvidia = tfwaveglow.load_params(os.path.join(ROOT, "params.yaml"))
    assert script.architecture(nvidia, 87_877_888) == (
        "12 flows of 8-sample groups (32 per mel frame), WN 8 layers × 256 channels, "
        "NVIDIA's transposed-conv upsampler (1024 taps); 87,877,888 parameters"
    )
    # Only the steps differ from the layered configs; one more key shows up as one override.
    assert script.reproduce_overrides(frame, 9000, layers) == ["train.steps=9000"]
    wider = dataclasses.replace(frame, model=dataclasses.replace(frame.model, n_flows=8, n_early_every=2))
    assert script.reproduce_overrides(wider, 9000, layers) == [
        "train.steps=9000", "model.n_flows=8", "model.n_early_every=2"
    ]  # fmt: skip
    assert script.precision(frame.train) == "float32 on a CPU (`mixed_precision: true` applies on a GPU only)"
    assert script.precision(dataclasses.replace(frame.train, mixed_precision="bfloat16")) == (
        "bfloat16 mixed precision"
    )


def _overrides(entries):
    return dict(entry.split("=", 1) for entry in entries)


def test_a_run_that_changed_its_config_on_resume_is_reproduced_in_stages(tmp_path):
    """params_changes.jsonl: the pilot's config, the long-run schedule from step 4328, batch 8 from step 21000."""
    script = load_script()
    pilot = ["configs/pilot_common.yaml", "configs/pilots/frame_g256_sep7x128.yaml"]
    start = tfwaveglow.load_params([os.path.join(ROOT, path) for path in pilot])
    schedule = {"lr_schedule": "cosine", "lr_decay_steps": 150000, "cpu_seconds_budget": 0, "checkpoint_every": 1000}
    scheduled = dataclasses.replace(start, train=dataclasses.replace(start.train, **schedule))
    batch8 = dataclasses.replace(
        scheduled, train=dataclasses.replace(scheduled.train, batch_size=8, lr_decay_steps=85000)
    )
    newest = dataclasses.replace(batch8, train=dataclasses.replace(batch8.train, learning_rate=0.0001))
    changes = [
        {"step": 4328, "changed": params_changes(start, scheduled)},
        {"step": 21000, "changed": params_changes(scheduled, batch8)},
        {"step": 30000, "changed": params_changes(batch8, newest)},  # after the shipped step: left out
    ]
    stages = script.reproduce_stages(newest, 25000, pilot, changes)
    assert [stage["stop"] for stage in stages] == [4328, 21000, None]
    assert stages[0]["overrides"] == ["train.steps=25000"]
    assert stages[2]["overrides"] == ["train.batch_size=8", "train.lr_decay_steps=85000"]
    # Replayed as train.py does it (the layered configs first, then the saved params.yaml and the call's
    # overrides), each stage trains with the config the run had then, and the last one stops at step 25000.
    replayed = tfwaveglow.load_params([os.path.join(ROOT, path) for path in pilot], _overrides(stages[0]["overrides"]))
    for stage, expected in zip(stages, [start, scheduled, batch8]):
        if stage is not stages[0]:
            tfwaveglow.save_params(replayed, str(tmp_path / "params.yaml"))
            replayed = tfwaveglow.load_params(str(tmp_path / "params.yaml"), _overrides(stage["overrides"]))
        assert replayed.train.steps == 25000
        assert replayed == dataclasses.replace(expected, train=dataclasses.replace(expected.train, steps=25000))
    commands = script.reproduce_commands(stages, pilot)
    assert commands.count("python train.py") == 3 and "--steps=4328" in commands and "--steps=21000" in commands
    assert commands.count("--params=configs/pilot_common.yaml --params=configs/pilots/frame_g256_sep7x128.yaml") == 1
    text = script.changes_text(changes, 25000)
    assert "from step 21000: `train.batch_size` 4 → 8, `train.lr_decay_steps` 150000 → 85000" in text
    assert "0.0001" not in text


def test_a_run_carried_on_from_a_shipped_model_is_reproduced_through_that_model(tmp_path):
    """lr_step_offset 150: train to 150, ship, then --init_from that model --continue_run; hours from its clock."""
    script = load_script()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    # A carried-on run's metrics.csv starts at the step it carried on from; its train_hours column goes on
    # from the shipped model's clock (5.5 h), which the rows' wall times alone cannot know.
    (run / "metrics.csv").write_text(
        "step,time,split,loss/total,train_hours,cpu_hours\n"
        "200,1000.0,train,-4.0,5.6,9.0\n"
        "200,1001.0,valid,-3.9,5.6,9.0\n"
        "250,1100.0,train,-4.1,5.75,9.2\n"
        "300,9000.0,train,-4.2,5.9,9.5\n"
    )
    record = script.training_record(str(run), 250)
    assert record["hours"] == 5.75 and record["valid_nll"] == -3.9

    offset, step = tf.Variable(150, dtype=tf.int64), tf.Variable(250, dtype=tf.int64)
    prefix = tf.train.Checkpoint(step=step, lr_step_offset=offset).write(str(run / "checkpoints" / "ckpt-250"))
    assert script.checkpoint_continued_from(prefix) == 150
    fresh = tf.train.Checkpoint(step=step).write(str(tmp_path / "fresh" / "ckpt-250"))
    assert script.checkpoint_continued_from(fresh) == 0

    configs = ["configs/pilot_common.yaml", "configs/pilots/frame_g256_sep7x128.yaml"]
    params = tfwaveglow.load_params([os.path.join(ROOT, path) for path in configs])
    stages = script.reproduce_stages(params, 250, configs, [])
    commands = script.reproduce_commands(stages, configs, continued_from=150).split("\npython ")
    assert len(commands) == 3
    assert commands[0].startswith("python train.py") and commands[1].startswith("scripts/ship_model.py")
    assert commands[2].startswith("train.py")
    first, ship, second = commands
    assert "--model_dir=runs/ship_first" in first and first.rstrip().endswith("--steps=150")
    assert "--checkpoint=runs/ship_first/checkpoints/ckpt-150" in ship and "--output_dir=runs/ship_step150" in ship
    assert "--model_dir=runs/ship " in second and "--init_from=runs/ship_step150 --continue_run" in second
    # Both runs train the same config to the same train.steps, so the schedule is the one run's.
    assert re.findall(r"--params\S*", first) == re.findall(r"--params\S*", second)
    assert "--params_override=train.steps=250" in second
    assert "Adam's moments restarted at step 150" in script.continued_text(150)
    assert script.continued_text(0) == "" and "init_from" not in script.reproduce_commands(stages, configs)
