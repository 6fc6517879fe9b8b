"""scripts/ship_model.py end to end on a tiny training run: float16 model, samples, model card."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shlex
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
    # A run from fresh weights on the Fish Fillets corpus: no lineage, the corpus's own commands.
    assert "trained from scratch with tfwaveglow on\nthe Czech voices" in card
    assert "--init_from" not in card and "corpus_plus" not in card and "scripts/get_corpus.sh" in card


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
    assert script.model_card.architecture(frame, 11_705_984) == (
        "12 flows of 256-sample groups (one per mel frame), WN 7 layers × 128 channels (depthwise-separable), "
        "the mel repeated to the group rate with 1 frame of context either side; 11,705,984 parameters"
    )
    nvidia = tfwaveglow.load_params(os.path.join(ROOT, "params.yaml"))
    assert script.model_card.architecture(nvidia, 87_877_888) == (
        "12 flows of 8-sample groups (32 per mel frame), WN 8 layers × 256 channels, "
        "NVIDIA's transposed-conv upsampler (1024 taps); 87,877,888 parameters"
    )
    # Only the steps differ from the layered configs; one more key shows up as one override.
    assert script.model_card.reproduce_overrides(frame, 9000, layers) == ["train.steps=9000"]
    wider = dataclasses.replace(frame, model=dataclasses.replace(frame.model, n_flows=8, n_early_every=2))
    assert script.model_card.reproduce_overrides(wider, 9000, layers) == [
        "train.steps=9000", "model.n_flows=8", "model.n_early_every=2"
    ]  # fmt: skip
    assert (
        script.model_card.precision(frame.train) == "float32 on a CPU (`mixed_precision: true` applies on a GPU only)"
    )
    assert script.model_card.precision(dataclasses.replace(frame.train, mixed_precision="bfloat16")) == (
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
    stages = script.model_card.reproduce_stages(newest, 25000, pilot, changes)
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
    commands = script.model_card.reproduce_commands(stages, pilot)
    assert commands.count("python train.py") == 3 and "--steps=4328" in commands and "--steps=21000" in commands
    assert commands.count("--params=configs/pilot_common.yaml --params=configs/pilots/frame_g256_sep7x128.yaml") == 1
    text = script.model_card.changes_text(changes, 25000)
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
    # With objectives beside the NLL, loss/total is their sum: the NLL is its own column.
    (run / "metrics.csv").write_text(
        "step,time,split,loss/total,train_hours,cpu_hours,loss/nll,loss/stft\n"
        "200,1000.0,train,0.9,5.6,9.0,-5.25,1.1\n"
        "200,1001.0,valid,-4.2,5.6,9.0,-4.2,1.2\n"
        "250,1100.0,train,0.8,5.75,9.2,-5.5,1.0\n"
    )
    record = script.training_record(str(run), 250)
    assert record["train_nll"] == pytest.approx(-5.375) and record["valid_nll"] == -4.2

    offset, step = tf.Variable(150, dtype=tf.int64), tf.Variable(250, dtype=tf.int64)
    prefix = tf.train.Checkpoint(step=step, lr_step_offset=offset).write(str(run / "checkpoints" / "ckpt-250"))
    assert script.checkpoint_continued_from(prefix) == 150
    fresh = tf.train.Checkpoint(step=step).write(str(tmp_path / "fresh" / "ckpt-250"))
    assert script.checkpoint_continued_from(fresh) == 0

    configs = ["configs/pilot_common.yaml", "configs/pilots/frame_g256_sep7x128.yaml"]
    params = tfwaveglow.load_params([os.path.join(ROOT, path) for path in configs])
    stages = script.model_card.reproduce_stages(params, 250, configs, [])
    commands = script.model_card.reproduce_commands(stages, configs, continued_from=150).split("\npython ")
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
    assert "Adam's moments restarted at step 150" in script.model_card.continued_text(150)
    assert script.model_card.continued_text(0) == "" and "init_from" not in script.model_card.reproduce_commands(
        stages, configs
    )


def _tiny_run(run, params, steps, hours, warm_start=None):
    """A run directory as train.py leaves it: params, one checkpoint, metrics, its warm-start record."""
    (run / "checkpoints").mkdir(parents=True)
    tfwaveglow.save_params(params, str(run / "params.yaml"))
    slots = {"step": tf.Variable(steps, dtype=tf.int64)}
    tf.train.Checkpoint(**slots).write(str(run / "checkpoints" / f"ckpt-{steps}"))
    (run / "checkpoints" / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{steps}"\n')
    (run / "metrics.csv").write_text(
        f"step,time,split,loss/total,train_hours,cpu_hours\n{steps},1000.0,train,-4.0,{hours},{2 * hours}\n"
    )
    if warm_start:
        (run / "warm_start.json").write_text(json.dumps(warm_start))


def test_a_run_warm_started_from_other_runs_is_reproduced_through_its_lineage(tmp_path):
    """origin model (step 100) -> run a (a pilot: spectral objective, CPU budget) -> run b (the shipped run)."""
    from tfwaveglow.training import read_warm_start

    script = load_script()
    card = script.model_card
    configs = ["configs/pilot_common.yaml", "configs/pilots/frame_g256_sep7x128.yaml"]
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "training_state.json").write_text(json.dumps({"step": 100, "train_seconds": 7200.0, "cpu_seconds": 1}))
    spectral = {"loss.nll": 0.1, "loss.stft": 1.0, "loss.mel": 1.0, "spectral.fft_sizes": "[1024, 512]",
                "spectral.hop_sizes": "[120, 50]", "spectral.win_lengths": "[600, 240]"}  # fmt: skip
    pilot = tfwaveglow.load_params(
        [os.path.join(ROOT, path) for path in configs],
        {**spectral, "train.cpu_seconds_budget": 3600, "train.batch_size": 4},
    )
    final = tfwaveglow.load_params(
        [os.path.join(ROOT, path) for path in configs], {**spectral, "train.learning_rate": 5e-5}
    )
    _tiny_run(tmp_path / "a", pilot, 48, 1.25, {"init_from": str(origin), "step": 100, "continue_run": False})
    _tiny_run(tmp_path / "b", final, 300, 2.5, {"init_from": str(tmp_path / "a" / "inference"), "step": None})
    assert read_warm_start(tmp_path / "b")["continue_run"] is False

    found_origin, runs = script.lineage(str(tmp_path / "b"))
    assert found_origin == card.Origin(str(origin), 100, 2.0, None, None)  # not a committed model
    assert [(run.steps, run.hours, run.stopped_by_budget()) for run in runs] == [(48, 1.25, True)]
    assert runs[0].params == pilot

    this_run = card.Run(final, 300, 2.5)
    commands = card.reproduce_lineage(found_origin, [*runs, this_run], configs, card.FISH_FILLETS_AND_TUX_PAINT)
    assert commands.index("scripts/get_corpus.sh") < commands.index("get_extra_voices.py") < commands.index("train.py")
    calls = commands.split("python train.py")[1:]
    assert len(calls) == 2
    assert "--model_dir=runs/ship_stage1" in calls[0] and f"--init_from={origin}" in calls[0]
    assert "--model_dir=runs/ship " in calls[1] and "--init_from=runs/ship_stage1/inference" in calls[1]
    assert all("--filelist=corpus_plus/train.txt" in call and "--lc_dir=corpus_plus/mels" in call for call in calls)
    # Replayed as train.py reads them, each call's overrides give that run's config, trained to its step.
    for call, (params, steps) in zip(calls, [(pilot, 48), (final, 300)]):
        entries = [shlex.split(line.strip())[0] for line in call.split("\\\n") if "--params_override=" in line]
        overrides = dict(entry.removeprefix("--params_override=").split("=", 1) for entry in entries)
        replayed = tfwaveglow.load_params([os.path.join(ROOT, path) for path in configs], overrides)
        assert replayed == dataclasses.replace(params, train=dataclasses.replace(params.train, steps=steps))
    text = card.lineage_text(found_origin, [*runs, this_run])
    assert "1. the model `" in text and "at step 100, 2.0 h" in text
    assert "2. a run: 48 steps (1.2 h) of 0.1 × NLL + 1 × multi-resolution STFT + 1 × log-mel L1" in text
    assert "stopped by its CPU-time budget" in text and "3. this run: 300 steps (2.5 h)" in text
    assert card.lineage_text(None, [this_run]) == ""

    # A record that goes round in a circle, or is not a record, is a clear error.
    (tmp_path / "a" / "warm_start.json").write_text(json.dumps({"init_from": str(tmp_path / "b")}))
    with pytest.raises(script.ShipError, match="circle"):
        script.lineage(str(tmp_path / "b"))
    (tmp_path / "a" / "warm_start.json").write_text("{not json")
    with pytest.raises(script.ShipError, match=r"a/warm_start.json: not a warm-start record"):
        script.lineage(str(tmp_path / "b"))


def test_a_committed_model_is_found_in_git_and_nothing_else_is(tmp_path):
    import subprocess

    script = load_script()
    held = script.git_commit_holding(os.path.join(ROOT, "models", "fishfillets_cs"))
    if held is None:  # a working tree with the model changed but not committed holds no commit
        status = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "models/fishfillets_cs"], capture_output=True, text=True
        )
        assert status.stdout.strip()
        return
    commit, path = held
    assert path == "models/fishfillets_cs"
    # The commit holds the very weights that are on disk.
    blob = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", f"{commit}:models/fishfillets_cs/weights.npz"], capture_output=True, text=True
    ).stdout.strip()
    on_disk = subprocess.run(
        ["git", "-C", ROOT, "hash-object", "models/fishfillets_cs/weights.npz"], capture_output=True, text=True
    ).stdout.strip()
    assert blob and blob == on_disk
    assert script.git_commit_holding(str(tmp_path)) is None


def test_a_committed_model_is_found_by_the_sha256_of_its_weights_even_once_replaced(tmp_path):
    import hashlib
    import subprocess

    script = load_script()
    model = os.path.join(ROOT, "models", "fishfillets_cs")
    committed = subprocess.run(
        ["git", "-C", ROOT, "show", "HEAD:models/fishfillets_cs/weights.npz"], capture_output=True
    ).stdout
    assert committed
    sha = hashlib.sha256(committed).hexdigest()
    commit, path = script.git_commit_holding(model, sha)
    assert path == "models/fishfillets_cs"
    held = subprocess.run(["git", "-C", ROOT, "show", f"{commit}:{path}/weights.npz"], capture_output=True).stdout
    assert hashlib.sha256(held).hexdigest() == sha
    # Weights no commit holds, or a directory outside the repository: nothing.
    assert script.git_commit_holding(model, "0" * 64) is None
    assert script.git_commit_holding(str(tmp_path), sha) is None
