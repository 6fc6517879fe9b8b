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
    # Griffin-Lim ran at the first scored step only; the second line carries its figures on.
    assert reports[2]["systems"] == ["waveglow", "griffin_lim"] and reports[4]["systems"] == ["waveglow"]
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
