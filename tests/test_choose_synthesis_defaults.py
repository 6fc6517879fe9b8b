"""scripts/choose_synthesis_defaults.py: the choice rule on hand-made grids, resuming, --write_params."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import math
import os
import shutil

import pytest
from export_helpers import ROOT

import tfwaveglow


def load_script():
    path = os.path.join(ROOT, "scripts", "choose_synthesis_defaults.py")
    spec = importlib.util.spec_from_file_location("choose_synthesis_defaults", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()


def pair(sigma, strength, stoi, pesq, ovrl, log_mel=1.0):
    """A hand-made grid entry: the means the rule reads (the other metrics are irrelevant to it)."""
    mean = dict.fromkeys(script.METRICS)
    mean.update(stoi=stoi, pesq_wb=pesq, dnsmos_ovrl=ovrl, log_mel_distance=log_mel)
    return {"sigma": sigma, "denoiser_strength": strength, "mean": mean}


def chosen(choice):
    return choice["sigma"], choice["denoiser_strength"]


def test_ranks_share_places_on_ties_and_put_missing_values_last():
    assert script.ranks([0.7, 0.9, 0.7, None]) == [2.5, 1.0, 2.5, 4.0]
    assert script.ranks([None, 1.0, None]) == [2.5, 1.0, 2.5]
    assert script.ranks([3.0]) == [1.0]


def test_a_pair_best_on_every_measure_wins():
    grid = [
        pair(0.6, 0.0, 0.770, 1.60, 1.50),
        pair(0.6, 0.05, 0.779, 1.66, 1.70),
        pair(0.6, 0.1, 0.777, 1.62, 1.69),
        pair(0.8, 0.05, 0.700, 1.40, 1.10),
    ]
    choice = script.choose_pair(grid)
    assert chosen(choice) == (0.6, 0.05) and not choice["fallback"]
    assert choice["ranked_by"] == ["stoi", "pesq_wb", "dnsmos_ovrl"]
    assert sorted(map(tuple, choice["eligible"])) == [(0.6, 0.05), (0.6, 0.1)]
    assert choice["ranking"][0]["rank_sum"] == 3 and choice["ranking"][0]["ranks"] == {
        "stoi": 1.0,
        "pesq_wb": 1.0,
        "dnsmos_ovrl": 1.0,
    }
    assert choice["best_stoi"] == 0.779 and choice["best_ovrl"] == 1.70
    assert "2 of 4 pairs are within 0.005 of that STOI and 0.02 of that OVRL" in choice["reason"]
    assert "tied" not in choice["reason"] and "fallback" not in choice["reason"]


def test_neither_the_best_stoi_nor_the_best_ovrl_alone_decides():
    grid = [
        pair(0.5, 0.0, 0.780, 1.70, 1.50),  # the best STOI, far below the best OVRL
        pair(0.6, 0.05, 0.777, 1.66, 1.70),
        pair(0.7, 0.1, 0.776, 1.62, 1.71),
        pair(0.8, 0.1, 0.760, 1.50, 1.72),  # the best OVRL, far below the best STOI
    ]
    choice = script.choose_pair(grid)
    assert not choice["fallback"]
    assert sorted(map(tuple, choice["eligible"])) == [(0.6, 0.05), (0.7, 0.1)]
    # Among the two: STOI and PESQ-WB rank (0.6, 0.05) first, OVRL (0.7, 0.1): sums 4 against 5.
    assert chosen(choice) == (0.6, 0.05)
    assert [(row["sigma"], row["rank_sum"]) for row in choice["ranking"]] == [(0.6, 4.0), (0.7, 5.0)]
    # The tolerances are flags: a looser OVRL tolerance lets the best-STOI pair in, and it wins.
    loose = script.choose_pair(grid, ovrl_tolerance=0.25)
    assert chosen(loose) == (0.5, 0.0) and (0.5, 0.0) in map(tuple, loose["eligible"])
    # A tighter STOI tolerance leaves the OVRL-best pair out.
    tight = script.choose_pair(grid, stoi_tolerance=0.0035)
    assert [tuple(p) for p in tight["eligible"]] == [(0.6, 0.05)] and chosen(tight) == (0.6, 0.05)


def test_stoi_and_ovrl_disagreeing_beyond_the_tolerances_takes_the_flagged_fallback():
    grid = [
        pair(0.4, 0.0, 0.800, 1.20, 1.50),  # the most intelligible, the least natural
        pair(0.6, 0.02, 0.790, 1.30, 1.90),  # the compromise
        pair(0.7, 0.05, 0.750, 1.10, 1.80),
        pair(0.8, 0.1, 0.700, 1.90, 2.00),  # the most natural, the least intelligible (and the best PESQ)
    ]
    choice = script.choose_pair(grid)
    assert choice["fallback"] and choice["eligible"] == []
    assert choice["ranked_by"] == ["stoi", "dnsmos_ovrl"]  # PESQ-WB plays no part in the fallback
    # STOI ranks 1, 2, 3, 4 and OVRL 4, 2, 3, 1: sums 5, 4, 6, 5.
    assert chosen(choice) == (0.6, 0.02)
    assert {(row["sigma"], row["rank_sum"]) for row in choice["ranking"]} == {(0.4, 5), (0.6, 4), (0.7, 6), (0.8, 5)}
    assert choice["reason"].startswith("fallback: no pair is within 0.005 of the best STOI and 0.02 of the best OVRL")
    assert "the best STOI is 0.8000 (sigma 0.4, denoiser strength 0)" in choice["reason"]
    assert "the best DNSMOS OVRL 2.000 (sigma 0.8, denoiser strength 0.1)" in choice["reason"]
    text = script.choice_text(choice)
    assert "FALLBACK (no pair within both tolerances)" in text and "sigma 0.6, denoiser strength 0.02" in text


def test_equal_rank_sums_go_to_the_lower_log_mel_distance():
    # Three eligible pairs in a cycle (STOI A > B > C, PESQ-WB B > C > A, OVRL C > A > B): every rank sum
    # is 6; B has the lowest log-mel distance. D is outside the OVRL tolerance.
    grid = [
        pair(0.6, 0.0, 0.780, 1.64, 1.71, log_mel=1.30),  # A
        pair(0.6, 0.05, 0.779, 1.66, 1.70, log_mel=1.10),  # B
        pair(0.6, 0.1, 0.778, 1.65, 1.72, log_mel=1.20),  # C
        pair(0.8, 0.0, 0.777, 1.70, 1.69, log_mel=0.90),  # D
    ]
    choice = script.choose_pair(grid)
    assert not choice["fallback"] and len(choice["eligible"]) == 3
    assert [row["rank_sum"] for row in choice["ranking"]] == [6, 6, 6]
    assert chosen(choice) == (0.6, 0.05)
    assert [row["denoiser_strength"] for row in choice["ranking"]] == [0.05, 0.1, 0.0]  # by log-mel distance
    assert "tied with 2 other pairs and ahead on the lower log-mel distance (1.100;" in choice["reason"]
    # Equal log-mel distances too: the smaller denoiser strength.
    same = [dict(e, mean={**e["mean"], "log_mel_distance": 1.0}) for e in grid]
    choice = script.choose_pair(same)
    assert chosen(choice) == (0.6, 0.0) and choice["reason"].endswith(
        "then on the smaller denoiser strength and sigma."
    )


def test_a_pair_that_multiplies_the_log_mel_distance_takes_no_part():
    """A denoiser that empties quiet bins: a little more STOI and OVRL, three times the spectral distance."""
    grid = [
        pair(0.3, 0.0, 0.8915, 2.379, 2.060, log_mel=0.400),
        pair(0.4, 0.0, 0.8909, 2.382, 2.056, log_mel=0.402),
        pair(0.3, 0.02, 0.8923, 2.364, 2.086, log_mel=1.323),
        pair(0.4, 0.02, 0.8918, 2.362, 2.094, log_mel=1.319),
    ]
    # Without the log-mel step the denoised pairs would be the only ones within the OVRL tolerance.
    assert chosen(script.choose_pair(grid, log_mel_ratio=10.0)) == (0.3, 0.02)
    choice = script.choose_pair(grid)
    assert choice["log_mel_ratio"] == 1.5 and choice["over_log_mel"] == [[0.3, 0.02], [0.4, 0.02]]
    # Of the two left, sigma 0.3 ranks first on STOI and OVRL, second on PESQ-WB: 4 against 5.
    assert chosen(choice) == (0.3, 0.0) and not choice["fallback"]
    assert choice["best_stoi"] == 0.8915 and choice["best_ovrl"] == 2.060
    assert "2 pairs took no part, with a log-mel distance over 1.5 times the grid's lowest (0.400)" in choice["reason"]
    table = script.markdown_table(grid, choice)
    assert table.count("| log-mel |") == 2 and "| **0.3** | **0** |" in table
    # Exactly at the ratio still takes part; a pair without a log-mel distance is not held back.
    edge = [pair(0.5, 0.0, 0.80, 2.0, 2.0, log_mel=1.0), pair(0.6, 0.0, 0.80, 2.0, 2.0, log_mel=1.5)]
    assert script.choose_pair(edge)["over_log_mel"] == []
    assert script.choose_pair([*edge, pair(0.7, 0.0, 0.8, 2.0, 2.0, log_mel=None)])["over_log_mel"] == []
    with pytest.raises(script.ChooseError, match="log-mel ratio must be >= 1"):
        script.choose_pair(grid, log_mel_ratio=0.9)


def test_pairs_without_stoi_or_ovrl_take_no_part_and_a_grid_without_any_is_an_error():
    grid = [pair(0.6, 0.0, 0.770, 1.60, 1.50), pair(0.6, 0.1, None, 1.70, 1.90), pair(0.7, 0.0, 0.790, None, None)]
    choice = script.choose_pair(grid)
    assert chosen(choice) == (0.6, 0.0) and choice["excluded"] == [[0.6, 0.1], [0.7, 0.0]]
    with pytest.raises(script.ChooseError, match="no pair has both a mean STOI and a mean DNSMOS OVRL"):
        script.choose_pair(grid[1:])
    with pytest.raises(script.ChooseError, match="tolerances must be >= 0"):
        script.choose_pair(grid, stoi_tolerance=-0.1)


def test_markdown_table_marks_the_choice_and_the_eligible_pairs():
    grid = [pair(0.6, 0.0, 0.770, 1.60, 1.50), pair(0.6, 0.05, 0.779, 1.66, 1.70), pair(0.8, 0.05, 0.7, 1.4, 1.1)]
    table = script.markdown_table(grid, script.choose_pair(grid)).splitlines()
    header = [c.strip() for c in table[0].split("|")[1:-1]]
    assert header == ["sigma", "denoiser", "STOI ↑", "PESQ-WB ↑", "log-mel ↓", "MCD ↓", "OVRL ↑", "SIG ↑", "BAK ↑"] + [
        "within both tol.",
        "rank sum",
    ]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table[2:]]
    assert rows[1][:7] == ["**0.6**", "**0.05**", "0.7790", "1.660", "1.000", "–", "1.700"]
    assert [row[-2:] for row in rows] == [["no", "–"], ["yes", "3"], ["no", "–"]]


def test_grid_flags_are_checked():
    assert script.parse_grid(["0.4", "0.6"], "sigmas") == (0.4, 0.6)
    for bad, message in (
        (["0.4", "0.40"], "given twice"),
        (["-1"], ">= 0"),
        (["x"], "not a number"),
        ([], "no values"),
    ):
        with pytest.raises(script.ChooseError, match=message):
            script.parse_grid(bad, "sigmas")


# --- the script end to end on a tiny real model and one short clip ----------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    params = tfwaveglow.load_params(os.path.join(ROOT, "configs", "tiny.yaml"))
    model = tfwaveglow.WaveGlow.from_params(params, weight_norm=False)
    return tfwaveglow.save_model(model, str(tmp_path_factory.mktemp("model")), params)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, speech_clips):
    root = tmp_path_factory.mktemp("heldout")
    clip = next(path for path in speech_clips if path.endswith("society-mik-v-videt.ogg"))  # 2.3 s
    shutil.copy(clip, root / os.path.basename(clip))
    return str(root)


def run_script(args):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        script.main(["choose_synthesis_defaults.py", *args])
    return stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, model_dir, reference_dir):
    """One pair run, its stored means replaced by marker values, then the grid of two, then again."""
    out = str(tmp_path_factory.mktemp("choice") / "grid.json")
    base = [f"--model={model_dir}", f"--reference_dir={reference_dir}", f"--output={out}", "--denoiser_strengths=0"]
    _, first_log = run_script(base + ["--sigmas=0.5"])
    with open(out) as f:
        first = json.load(f)
    marked = first["results"][0]
    marked["mean"] = {**marked["mean"], "stoi": 0.987654, "dnsmos_ovrl": 4.321}
    with open(out, "w") as f:
        json.dump(first, f)
    second_stdout, second_log = run_script(base + ["--sigmas=0.5,0.7"])
    with open(out) as f:
        second = json.load(f)
    third_stdout, third_log = run_script(base + ["--sigmas=0.7,0.5"])
    with open(out) as f:
        third = json.load(f)
    return {
        "out": out,
        "base": base,
        "first": first,
        "first_log": first_log,
        "second": second,
        "second_log": second_log,
        "second_stdout": second_stdout,
        "third": third,
        "third_log": third_log,
        "third_stdout": third_stdout,
    }


def test_a_rerun_keeps_the_pairs_already_written_and_adds_only_the_missing_ones(resumed, model_dir, reference_dir):
    assert "1 pair on 1 recording: 0 already in" in resumed["first_log"]
    assert "2 pairs on 1 recording: 1 already in" in resumed["second_log"] and "1 to evaluate" in resumed["second_log"]
    second = resumed["second"]
    assert [script.pair_key(e) for e in second["results"]] == [(0.5, 0.0), (0.7, 0.0)]
    kept, added = second["results"]
    assert kept == resumed["first"]["results"][0]  # the marked pair was not recomputed
    assert kept["mean"]["stoi"] == 0.987654
    assert added["num_files"] == 1 and added["num_failed"] == 0
    assert set(added["mean"]) == set(script.METRICS)
    assert all(math.isfinite(added["mean"][name]) and added["files"][name] == 1 for name in script.METRICS)
    # An untrained model's STOI (a mean correlation) can fall just below 0; its range is [-1, 1].
    assert -1 <= added["mean"]["stoi"] <= 1 and 1 <= added["mean"]["dnsmos_ovrl"] <= 5
    assert second["model"] == model_dir and second["reference_dir"] == reference_dir and second["seed"] == 0
    assert len(second["reference_files"]) == 1
    # The marked pair is far ahead on STOI and OVRL: chosen on the rule's main path.
    assert script.pair_key(second["choice"]) == (0.5, 0.0) and not second["choice"]["fallback"]
    assert second["choice"]["grid"] == {"sigmas": [0.5, 0.7], "denoiser_strengths": [0.0]}
    # The third run adds nothing: the results are unchanged.
    assert "2 pairs on 1 recording: 2 already in" in resumed["third_log"] and "0 to evaluate" in resumed["third_log"]
    assert resumed["third"]["results"] == second["results"]
    assert "sigma 0.7, denoiser strength 0:" not in resumed["third_log"]


def test_the_printed_table_and_choice(resumed):
    lines = resumed["third_stdout"].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| sigma |"))
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[header + 2 : header + 4]]
    assert [row[:2] for row in rows] == [["0.7", "0"], ["**0.5**", "**0**"]]  # the grid's order
    assert rows[1][2] == "0.9877" and rows[1][6] == "4.321"
    assert (
        "Chosen: sigma 0.5, denoiser strength 0 [within both tolerances]. Reason: the best STOI is 0.9877"
        in (resumed["third_stdout"])
    )


def test_an_output_for_other_settings_is_refused(resumed, reference_dir):
    before = open(resumed["out"]).read()
    with pytest.raises(SystemExit, match=r"holds results for another seed"):
        run_script(resumed["base"] + ["--sigmas=0.5", "--seed=1"])
    assert open(resumed["out"]).read() == before


def test_write_params_sets_the_export_section_that_load_params_reads(resumed, model_dir, tmp_path):
    target = str(tmp_path / "model")
    shutil.copytree(model_dir, target)
    original = tfwaveglow.load_params(os.path.join(model_dir, "params.yaml"))
    assert (original.export.sigma, original.export.denoiser_strength) == (0.6, 0.0)
    stdout, log = run_script(
        resumed["base"] + ["--sigmas=0.5,0.7", "--ovrl_tolerance=0.03", f"--write_params={target}"]
    )
    assert "2 already in" in log and "0 to evaluate" in log
    written = tfwaveglow.load_params(os.path.join(target, "params.yaml"))
    assert (written.export.sigma, written.export.denoiser_strength) == (0.5, 0.0)
    assert dataclasses.replace(written, export=original.export) == original  # nothing else changed
    assert f"Wrote export.sigma 0.5 and export.denoiser_strength 0 to {target}/params.yaml." in stdout
    assert "is not the evaluated model" in stdout
    assert not [name for name in os.listdir(target) if ".tmp" in name]
    with open(resumed["out"]) as f:
        assert json.load(f)["choice"]["ovrl_tolerance"] == 0.03
    # The evaluated model's directory keeps its params; the weights still load with the new ones.
    assert tfwaveglow.load_params(os.path.join(model_dir, "params.yaml")) == original
    tfwaveglow.load_model(target)
    with pytest.raises(SystemExit, match="holds no params.yaml"):
        run_script(resumed["base"] + ["--sigmas=0.5", f"--write_params={tmp_path}"])
