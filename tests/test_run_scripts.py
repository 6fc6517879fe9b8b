"""The run scripts: the shared shell helper scripts/link_heldout.sh and the long run's driver scripts/long_run.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK_HELDOUT = os.path.join(ROOT, "scripts", "link_heldout.sh")
LONG_RUN = os.path.join(ROOT, "scripts", "long_run.sh")


def _corpus(tmp_path, ids):
    corpus = tmp_path / "corpus"
    for name in ids:
        wav = corpus / "audio" / f"{name}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        wav.write_bytes(name.encode())  # content only identifies the file
    (corpus / "valid.txt").write_text("".join(f"{name}\n" for name in ids))
    return corpus


def test_links_the_first_held_out_utterances_in_list_order(tmp_path):
    ids = ["female/a", "male/b", "female/c"]
    corpus = _corpus(tmp_path, ids)
    out = tmp_path / "heldout"
    subprocess.run(["bash", LINK_HELDOUT, str(corpus), str(out), "2"], check=True)
    linked = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert linked == ["female/a.wav", "male/b.wav"]
    assert (out / "female" / "a.wav").is_symlink()
    assert (out / "male" / "b.wav").read_bytes() == b"male/b"
    # Zero links the whole list; running again replaces the links.
    subprocess.run(["bash", LINK_HELDOUT, str(corpus), str(out), "0"], check=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.wav")) == ["female/a.wav", "female/c.wav", "male/b.wav"]


def test_a_listed_utterance_without_audio_is_named(tmp_path):
    corpus = _corpus(tmp_path, ["female/a"])
    with open(corpus / "valid.txt", "a") as f:
        f.write("male/gone\n")
    result = subprocess.run(
        ["bash", LINK_HELDOUT, str(corpus), str(tmp_path / "out"), "0"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "male/gone" in result.stderr and "missing" in result.stderr


def test_a_relative_corpus_path_gives_links_that_resolve(tmp_path):
    _corpus(tmp_path, ["female/a"])
    out = tmp_path / "runs" / "heldout"
    subprocess.run(["bash", LINK_HELDOUT, "corpus", str(out), "0"], check=True, cwd=tmp_path)
    assert (out / "female" / "a.wav").read_bytes() == b"female/a"


@pytest.mark.slow  # about two minutes: two stretches of training, two evaluations
def test_long_run_scores_each_stretch_and_runs_griffin_lim_once(tmp_path, speech_dir):
    import tfwaveglow
    from tfwaveglow import preprocess

    corpus = tmp_path / "corpus"
    preprocess.preprocess_corpus(
        speech_dir, str(corpus / "mels"), str(corpus), tfwaveglow.load_params(None), num_workers=1, progress=False
    )
    params = tfwaveglow.load_params(
        os.path.join(ROOT, "configs", "tiny.yaml"),
        {
            "train.steps": 4,
            "train.checkpoint_every": 2,
            "train.validate_every": 2,
            "train.log_every": 2,
            "train.summary_every": 2,
        },
    )
    tfwaveglow.save_params(params, tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    env = dict(os.environ, CORPUS_DIR=str(corpus), PYTHON=sys.executable, THREADS="2", TF_CPP_MIN_LOG_LEVEL="2")
    command = ["bash", LONG_RUN, str(run), "2", "--", f"--params={tmp_path / 'tiny.yaml'}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:] + (run / "train.log").read_text()[-4000:]
    assert "long run finished at step 4" in done.stdout

    lines = [json.loads(text) for text in (run / "heldout_curve.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    reports = {
        step: json.loads((run / "heldout_eval" / f"step_{step}" / "evaluation.json").read_text()) for step in (2, 4)
    }
    # Griffin-Lim and the recordings were scored at the first scored step only; the second line carries them on.
    assert reports[2]["systems"] == ["reference", "waveglow", "griffin_lim"] and reports[4]["systems"] == ["waveglow"]
    for line, step in zip(lines, (2, 4)):
        for metric in ("stoi", "pesq_wb", "log_mel_distance"):
            assert line[f"waveglow_{metric}"] == reports[step]["average"]["waveglow"][metric]["mean"]
            assert line[f"griffin_lim_{metric}"] == reports[2]["average"]["griffin_lim"][metric]["mean"]
    assert lines[0]["griffin_lim_stoi"] > 0.8 and lines[1]["waveglow_stoi"] < lines[1]["griffin_lim_stoi"]
    assert reports[4]["average"]["waveglow"] != reports[2]["average"]["waveglow"]
    assert [line["examples"] for line in lines] == [2 * params.train.batch_size, 4 * params.train.batch_size]
    assert lines[1]["valid_step"] == 4 and lines[1]["valid_nll"] is not None

    # Started again at the end: nothing is trained or scored twice.
    again = subprocess.run(["bash", LONG_RUN, str(run), "2"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "long run finished at step 4" in again.stdout
    assert len((run / "heldout_curve.jsonl").read_text().splitlines()) == 2


# A stand-in for train.py: appends a training row per step (a quarter of a training hour each) and a
# validation row with spectral terms to metrics.csv, and marks a checkpoint at --steps.
_FAKE_TRAIN = """
import csv, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
run, target = args["model_dir"], int(args["steps"])
ckpt = os.path.join(run, "checkpoints")
step = int(open(os.path.join(ckpt, "checkpoint")).read().split('"')[1].rsplit("-", 1)[1])
with open(os.path.join(run, "fake_train_calls.txt"), "a") as f:
    f.write(f"{step} {target}\\n")
with open(os.path.join(run, "metrics.csv"), "a", newline="") as f:
    writer = csv.writer(f)
    for s in range(step + 1, target + 1):
        writer.writerow([s, 0, "train", -3.0, s / 4, s / 2, "", ""])
    writer.writerow([target, 0, "valid", -4.0 - target / 100, target / 4, target / 2, 1.0 / target, 2.0 / target])
open(os.path.join(ckpt, f"ckpt-{target}.index"), "w").close()
with open(os.path.join(ckpt, "checkpoint"), "w") as f:
    f.write(f'model_checkpoint_path: "ckpt-{target}"\\nall_model_checkpoint_paths: "ckpt-{target}"\\n')
"""

# A stand-in for evaluate.py: an evaluation.json whose every mean tells its system, metric and step.
_FAKE_EVALUATE = """
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
out = args["output_dir"]
step = int(os.path.basename(out).split("_")[1])
systems = ["reference", "waveglow", "griffin_lim"] if "--griffin_lim" in sys.argv else ["waveglow"]
metrics = ["log_mel_distance", "mcd", "pesq_wb", "stoi", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"]
offset = {"waveglow": 0.0, "griffin_lim": 100.0, "reference": 200.0}
average = {s: {m: {"mean": offset[s] + step + i / 10, "files": 12} for i, m in enumerate(metrics)} for s in systems}
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "evaluation.json"), "w") as f:
    json.dump({"systems": systems, "average": average}, f)
"""

_CURVE_METRICS = (
    "log_mel_distance",
    "mcd",
    "pesq_wb",
    "stoi",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_ovrl",
    "dnsmos_p808",
)


def _fake_python(tmp_path):
    """A PYTHON for long_run.sh that runs the stand-ins for train.py and evaluate.py, and Python for the rest."""
    (tmp_path / "fake_train.py").write_text(_FAKE_TRAIN)
    (tmp_path / "fake_evaluate.py").write_text(_FAKE_EVALUATE)
    wrapper = tmp_path / "python"
    wrapper.write_text(
        "#!/usr/bin/env bash\n"
        'case "${1:-}" in\n'
        f'  */train.py) shift; exec "{sys.executable}" "{tmp_path / "fake_train.py"}" "$@" ;;\n'
        f'  */evaluate.py) shift; exec "{sys.executable}" "{tmp_path / "fake_evaluate.py"}" "$@" ;;\n'
        "esac\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.slow  # about 40 s (five TensorFlow imports in the script's own steps); CI runs it
def test_long_run_records_every_metric_and_scores_within_score_hours(tmp_path):
    """The curve lines, the carried baselines and SCORE_HOURS's stretches, with stand-ins for training and scoring.

    No model is trained or evaluated; the time (10 to 40 s) is the five TensorFlow imports of the
    script's own Python (the latest checkpoint, the curve line).
    """
    corpus = _corpus(tmp_path, ["female/a"])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "params.yaml").write_text("train:\n  steps: 16\n  batch_size: 2\n  checkpoint_every: 2\n")
    # A run at step 8, scored there by an earlier long_run.sh (STOI, PESQ-WB and log-mel only, no recordings).
    (run / "metrics.csv").write_text("step,time,split,loss/total,train_hours,cpu_hours,loss/mel,loss/stft\n")
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-0"\n')
    wrapper = _fake_python(tmp_path)
    subprocess.run([sys.executable, str(tmp_path / "fake_train.py"), f"--model_dir={run}", "--steps=8"], check=True)
    (run / "fake_train_calls.txt").unlink()
    old = {"step": 8, "train_hours": 2.0, "valid_nll": -4.08, "waveglow_stoi": 0.5, "waveglow_pesq_wb": 1.2}
    old.update(
        waveglow_log_mel_distance=1.4, griffin_lim_stoi=0.9, griffin_lim_pesq_wb=3.0, griffin_lim_log_mel_distance=0.2
    )
    (run / "heldout_curve.jsonl").write_text(json.dumps(old) + "\n")

    # 0.25 training hours a step: 1.1 hours hold 4 steps, two checkpoint intervals, so stretches of 4, not 8.
    env = dict(os.environ, CORPUS_DIR=str(corpus), PYTHON=str(wrapper), SCORE_HOURS="1.1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(["bash", LONG_RUN, str(run), "8"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "long run finished at step 16" in done.stdout
    assert (run / "fake_train_calls.txt").read_text().split("\n")[:-1] == ["8 12", "12 16"]
    assert "stretch of 4 steps" in done.stderr

    lines = [json.loads(text) for text in (run / "heldout_curve.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [8, 12, 16]
    assert lines[0] == old  # already scored: not scored again
    for line, step in zip(lines[1:], (12, 16)):
        assert line["examples"] == 2 * step and line["train_hours"] == step / 4 and line["cpu_hours"] == step / 2
        assert line["valid_step"] == step and line["valid_nll"] == -4.0 - step / 100
        assert line["valid_mel"] == 1.0 / step and line["valid_stft"] == 2.0 / step
        for i, metric in enumerate(_CURVE_METRICS):
            assert line[f"waveglow_{metric}"] == step + i / 10
            # the curve had no recordings' row: the baselines were scored again at step 12, then carried on
            assert line[f"griffin_lim_{metric}"] == 100 + 12 + i / 10
            assert line[f"reference_{metric}"] == 200 + 12 + i / 10
    reports = {s: json.loads((run / "heldout_eval" / f"step_{s}" / "evaluation.json").read_text()) for s in (12, 16)}
    assert reports[12]["systems"] == ["reference", "waveglow", "griffin_lim"] and reports[16]["systems"] == ["waveglow"]


def test_long_run_refuses_a_score_hours_that_is_not_a_positive_number(tmp_path):
    for value in ("two", "0", "-1", "0.0"):
        env = dict(os.environ, SCORE_HOURS=value)
        done = subprocess.run(["bash", LONG_RUN, str(tmp_path / "run")], env=env, capture_output=True, text=True)
        assert done.returncode == 2 and "SCORE_HOURS must be a positive number" in done.stderr, value
