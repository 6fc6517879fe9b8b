"""scripts/plot_long_run.py: the points it plots come from the run's files, bad specs are clear errors."""

import csv
import importlib.util
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
    report.write_text(
        json.dumps({"sigma": 0.2, "denoiser_strength": 0.0, "average": {"waveglow": {"stoi": {"mean": 0.55}}}})
    )
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
    assert summary["all62"] == [{"step": 2000, "hours": 1.1, "stoi": 0.55, "sigma": 0.2, "denoiser_strength": 0.0}]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _load_script():
    if os.path.dirname(SCRIPT) not in sys.path:  # the script imports its sibling plot_convergence
        sys.path.insert(0, os.path.dirname(SCRIPT))
    spec = importlib.util.spec_from_file_location("plot_long_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_all62_legend_names_the_reports_synthesis_settings_only_when_they_agree():
    settings = _load_script().synthesis_settings
    assert settings([{"sigma": 0.2, "denoiser_strength": 0.0}] * 2) == ", sigma 0.2, no denoiser"
    assert settings([{"sigma": 0.6, "denoiser_strength": 0.1}]) == ", sigma 0.6, denoiser 0.1"
    assert settings([{"sigma": 0.2, "denoiser_strength": 0.0}, {"sigma": 0.6, "denoiser_strength": 0.0}]) == ""
    assert settings([{"step": 10000, "hours": 5.5, "stoi": 0.72}]) == ""  # a points file from before the keys


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


# --------------------------------------------------------------------------- the ending rule of spectral runs


def _plot_module():
    """scripts/plot_long_run.py as a module (its pure functions), scripts/ on the path for plot_convergence."""
    import importlib.util

    scripts = os.path.join(ROOT, "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    spec = importlib.util.spec_from_file_location("plot_long_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _line(step, hours, stoi, ovrl=None, pesq=None):
    """A heldout_curve.jsonl line: the old keys always, PESQ-WB and DNSMOS OVRL where given."""
    line = {"step": step, "train_hours": hours, "waveglow_stoi": stoi, "griffin_lim_stoi": 0.93}
    if ovrl is not None:
        line.update(waveglow_dnsmos_ovrl=ovrl, griffin_lim_dnsmos_ovrl=2.9, reference_dnsmos_ovrl=3.2)
    if pesq is not None:
        line.update(waveglow_pesq_wb=pesq, griffin_lim_pesq_wb=3.2, reference_pesq_wb=4.64)
    return line


def _write_run(tmp_path, lines, name="run"):
    run = tmp_path / name
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows([[p["step"], 1.0, "valid", -4.0, p["train_hours"], 2 * p["train_hours"]] for p in lines])
    (run / "heldout_curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in lines))
    return run


def test_last_doubling_gain_is_the_slope_of_a_line_in_log2_step():
    import numpy as np

    plot = _plot_module()
    steps = list(range(2000, 48001, 2000))
    # exactly a + b * log2(step): the gain per doubling is b, whatever the window
    curve = [{"step": s, "m": 0.61 + 0.0037 * np.log2(s)} for s in steps]
    assert abs(plot.last_doubling_gain(curve, "m") - 0.0037) < 1e-12
    # a bend at step 24,000 = N/2: only the last doubling (24,000 to 48,000) counts
    bent = [
        {"step": s, "m": 0.05 * min(np.log2(s), np.log2(24000)) + 0.002 * max(np.log2(s / 24000), 0)} for s in steps
    ]
    assert abs(plot.last_doubling_gain(bent, "m") - 0.002) < 1e-12
    # the least-squares line over the window when the points are not on one line
    noisy = [{"step": s, "m": 0.7 + 0.01 * np.log2(s) + (0.003 if i % 2 else -0.003)} for i, s in enumerate(steps)]
    window = [p for p in noisy if p["step"] >= 24000]
    expected = np.polyfit(np.log2([p["step"] for p in window]), [p["m"] for p in window], 1)[0]
    assert abs(plot.last_doubling_gain(noisy, "m") - expected) < 1e-12


def test_last_doubling_gain_is_none_without_a_full_doubling_of_the_metric():
    plot = _plot_module()
    assert plot.last_doubling_gain([], "m") is None
    # first scored step 6,000 > 10,000 / 2
    assert plot.last_doubling_gain([{"step": s, "m": 0.5} for s in (6000, 8000, 10000)], "m") is None
    # a doubling behind N, but only N itself in the window
    assert plot.last_doubling_gain([{"step": 2000, "m": 0.4}, {"step": 10000, "m": 0.5}], "m") is None
    # older lines without the metric do not count towards the doubling; null values neither
    curve = [{"step": s} for s in (2000, 4000, 6000)] + [{"step": s, "m": 0.5} for s in (8000, 10000, 12000)]
    assert plot.last_doubling_gain(curve, "m") is None
    curve[0]["m"] = None
    assert plot.last_doubling_gain(curve, "m") is None
    curve[1]["m"] = 0.45  # step 4,000 has it now: a full doubling, window 6,000 to 12,000
    assert plot.last_doubling_gain(curve, "m") is not None
    # the last scored step lacks the metric: no gain at it
    assert plot.last_doubling_gain([*curve, {"step": 14000}], "m") is None


def test_ending_rule_needs_twenty_hours_and_both_gains_under_a_hundredth():
    rule = _plot_module().ending_rule_met
    assert rule(20.0, 0.009, 0.005) is True
    assert rule(31.5, -0.002, 0.0) is True  # a metric that falls gains less than 0.01
    assert rule(19.99, 0.001, 0.001) is False  # too few hours
    assert rule(25.0, 0.01, 0.0) is False  # STOI gains 0.01: not less
    assert rule(25.0, 0.0, 0.02) is False  # OVRL still gains
    assert rule(25.0, 0.005, None) is False  # no full doubling of OVRL scored yet
    assert rule(None, 0.0, 0.0) is False


def test_the_printed_gains_and_rule_come_from_the_first12_curve(tmp_path):
    import numpy as np

    steps = list(range(2000, 48001, 2000))
    # half an hour per 1000 steps: 24 training hours at step 48,000
    lines = [
        _line(s, s / 2000, 0.70 + 0.004 * np.log2(s / 1000), 2.5 + 0.002 * np.log2(s / 1000), 1.5 + 0.05 * np.log2(s))
        for s in steps
    ]
    run = _write_run(tmp_path, lines)
    quality = tmp_path / "quality.png"
    result = run_script(str(run), "--out", str(tmp_path / "c.png"), "--quality_out", str(quality))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    gains = summary["gain_per_doubling"]
    assert gains["step"] == 48000 and gains["train_hours"] == 24.0
    assert abs(gains["stoi"] - 0.004) < 1e-9 and abs(gains["dnsmos_ovrl"] - 0.002) < 1e-9
    assert summary["ending_rule_met"] is True
    assert summary["first12"][-1] == {
        "step": 48000,
        "train_hours": 24.0,
        "waveglow_stoi": lines[-1]["waveglow_stoi"],
        "waveglow_pesq_wb": lines[-1]["waveglow_pesq_wb"],
        "waveglow_dnsmos_ovrl": lines[-1]["waveglow_dnsmos_ovrl"],
    }
    assert summary["quality_out"] == str(quality) and quality.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same curve cut at step 36,000 (18 training hours): gains as small, hours too few
    (run / "heldout_curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in lines if p["step"] <= 36000))
    result = run_script(str(run), "--out", str(tmp_path / "c.png"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["gain_per_doubling"]["step"] == 36000 and abs(summary["gain_per_doubling"]["stoi"] - 0.004) < 1e-9
    assert summary["ending_rule_met"] is False and summary["quality_out"] is None


def test_old_curve_lines_without_the_new_keys_still_plot(tmp_path):
    # lines of an earlier long_run.sh (STOI only) and a line cut short by a kill, then lines with every key
    old = [_line(s, s / 2000, 0.6 + 0.01 * s / 1000) for s in (2000, 4000, 6000)]
    new = [_line(s, s / 2000, 0.7, 2.4 + s / 1e6, 1.5) for s in (8000, 10000)]
    run = _write_run(tmp_path, old + new)
    with open(run / "heldout_curve.jsonl", "a") as f:
        f.write('{"step": 12000, "train_ho')
    out, quality = tmp_path / "c.png", tmp_path / "q.png"
    result = run_script(str(run), "--out", str(out), "--quality_out", str(quality))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [p["step"] for p in summary["first12"]] == [2000, 4000, 6000, 8000, 10000]
    assert summary["first12"][0] == {"step": 2000, "train_hours": 1.0, "waveglow_stoi": old[0]["waveglow_stoi"]}
    assert set(summary["first12"][-1]) == {
        "step",
        "train_hours",
        "waveglow_stoi",
        "waveglow_pesq_wb",
        "waveglow_dnsmos_ovrl",
    }
    # STOI has a full doubling behind step 10,000; OVRL, scored from step 8,000 on, has not
    assert summary["gain_per_doubling"]["stoi"] is not None and summary["gain_per_doubling"]["dnsmos_ovrl"] is None
    assert summary["ending_rule_met"] is False
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and quality.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a curve of old lines only, and an earlier run's points without the new keys: both panels still drawn
    only_old = _write_run(tmp_path, old, name="old_run")
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"label": "run 3", "validation": [], "first12": old, "all62": []}))
    result = run_script(str(only_old), "--out", str(out), "--quality_out", str(quality), "--earlier", str(earlier))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gain_per_doubling"]["dnsmos_ovrl"] is None
