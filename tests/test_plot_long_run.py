"""scripts/plot_long_run.py: the points it plots come from the run's files, bad specs are clear errors."""

import csv
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "plot_long_run.py")
HEADER = ["step", "time", "split", "loss/total", "train_hours", "cpu_hours"]


def make_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        [100, 1.0, "train", -3.0, 0.05, 0.1],
        [1000, 2.0, "valid", -3.5, 0.5, 1.0],
        [2000, 3.0, "valid", -3.9, 1.0, 2.0],
        [2000, 4.0, "valid", -3.8, 1.1, 2.2],  # written again after a resume: this row wins
    ]
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    point = {"step": 2000, "train_hours": 1.1, "waveglow_stoi": 0.42, "griffin_lim_stoi": 0.93}
    (run / "heldout_curve.jsonl").write_text(json.dumps(point) + "\n")
    report = tmp_path / "evaluation.json"
    report.write_text(json.dumps({"average": {"waveglow": {"stoi": {"mean": 0.55}}}}))
    return run, report


def run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_points_come_from_metrics_heldout_curve_and_reports(tmp_path):
    run, report = make_run(tmp_path)
    out = tmp_path / "curve.png"
    result = run_script(str(run), "--out", str(out), "--all62", f"2000={report}")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["validation"] == [
        {"step": 1000, "nll": -3.5, "hours": 0.5},
        {"step": 2000, "nll": -3.8, "hours": 1.1},
    ]
    assert summary["first12"] == [{"step": 2000, "train_hours": 1.1, "waveglow_stoi": 0.42}]
    assert summary["all62"] == [{"step": 2000, "hours": 1.1, "stoi": 0.55}]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_step_without_validation_or_a_malformed_spec_is_a_clear_error(tmp_path):
    run, report = make_run(tmp_path)
    result = run_script(str(run), "--out", str(tmp_path / "x.png"), "--all62", f"3000={report}")
    assert result.returncode == 1 and "no validation row at step 3000" in result.stderr
    result = run_script(str(run), "--out", str(tmp_path / "x.png"), "--all62", str(report))
    assert result.returncode == 1 and "expected STEP=PATH" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_saved_points_of_an_earlier_run_are_drawn_beside_and_round_trip(tmp_path):
    run, report = make_run(tmp_path)
    saved = tmp_path / "run_a.json"
    result = run_script(str(run), "--out", str(tmp_path / "a.png"), "--label", "run a", "--save_points", str(saved))
    assert result.returncode == 0, result.stderr
    points = json.loads(saved.read_text())
    assert points["label"] == "run a"
    assert points["validation"][-1] == {"step": 2000, "nll": -3.8, "hours": 1.1}
    assert points["first12"] == [{"step": 2000, "train_hours": 1.1, "waveglow_stoi": 0.42}]

    out = tmp_path / "b.png"
    result = run_script(str(run), "--out", str(out), "--label", "run b", "--earlier", str(saved))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "run b"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_earlier_points_file_without_its_curves_is_a_clear_error(tmp_path):
    run, _ = make_run(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"label": "x", "validation": []}))
    result = run_script(str(run), "--out", str(tmp_path / "x.png"), "--earlier", str(bad))
    assert result.returncode == 1 and "no first12, all62 in it" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_the_committed_points_of_run_3_load_and_match_the_shipped_step():
    points = json.loads(open(os.path.join(ROOT, "docs", "long_run_points", "run3.json")).read())
    all62 = {p["step"]: p["stoi"] for p in points["all62"]}
    nll = {p["step"]: p["nll"] for p in points["validation"]}
    card = open(os.path.join(ROOT, "docs", "long_run.md")).read()
    # the shipped step-10,000 model's figures, as the run's documentation gives them
    assert all62[10000] == 0.720 and "| 10,000 | 5.53 | 57.3 dB | 0.720 |" in card
    assert nll[10000] == -4.276


def _gains_by_subprocess(tmp_path, stoi_at):
    """Runs the script on a run whose all-62 reports give ``stoi_at[step]``; returns its gains."""
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows([[step, 1.0, "valid", -4.0, step / 1000, step / 500] for step in stoi_at])
    specs = []
    for step, stoi in stoi_at.items():
        report = tmp_path / f"eval_{step}.json"
        report.write_text(json.dumps({"average": {"waveglow": {"stoi": {"mean": stoi}}}}))
        specs += ["--all62", f"{step}={report}"]
    result = run_script(str(run), "--out", str(tmp_path / "c.png"), *specs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["all62_gain_per_doubling"]


def test_gain_per_doubling_is_the_slope_over_the_last_doubling(tmp_path):
    import numpy as np

    steps = [10000, 12000, 14000, 16000, 20000, 24000, 28000, 32000]
    # 0.03 STOI per doubling up to step 16,000, then 0.01: a closed-form curve in log2(step)
    stoi = {s: 0.7 + 0.03 * min(np.log2(s / 10000), np.log2(1.6)) + 0.01 * max(np.log2(s / 16000), 0.0) for s in steps}
    gains = {g["step"]: g for g in _gains_by_subprocess(tmp_path, stoi)}
    # only the steps with a full doubling of scored steps behind them (the first is 10,000)
    assert sorted(gains) == [20000, 24000, 28000, 32000]
    # 16,000 to 32,000 lies on the second line: its slope is exactly 0.01
    assert gains[32000]["points"] == 5 and abs(gains[32000]["gain"] - 0.01) < 1e-9
    # a window across the bend: NumPy's least-squares line over the same points
    window = [s for s in steps if 12000 <= s <= 24000]
    expected = np.polyfit(np.log2(window), [stoi[s] for s in window], 1)[0]
    assert gains[24000]["points"] == len(window) and abs(gains[24000]["gain"] - expected) < 1e-9
    assert 0.01 < gains[24000]["gain"] < 0.03


def test_gain_per_doubling_needs_three_points_in_the_window(tmp_path):
    gains = _gains_by_subprocess(tmp_path, {10000: 0.70, 20000: 0.73, 40000: 0.75})
    assert gains == []  # each doubling holds only two scored steps
