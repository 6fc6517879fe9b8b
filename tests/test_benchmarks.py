"""Each benchmark script runs end to end on a tiny model and prints well-formed JSON (no timing is checked)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def load(name):
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name, capsys, *flags):
    load(name).main([f"{name}.py", "--quick", *flags])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines, f"{name} printed nothing"
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_matmul_peak(capsys):
    (record,) = run("matmul_peak", capsys)
    assert record["benchmark"] == "matmul_peak" and record["cores"] >= 1
    assert record["peak_gmac_per_s"] == max(record["tf_gmac_per_s"], record["torch_gmac_per_s"]) > 0


def test_dilated_conv(capsys):
    records = run("dilated_conv", capsys)
    assert {(r["direction"], r["dilation"]) for r in records} == {
        (d, n) for d in ("forward", "backward") for n in (1, 4)
    }
    for record in records:
        assert set(record["ms"]) == {"tf_shifted_matmul", "tf_time_to_batch", "tf_phase_conv2d", "tf_native", "torch"}
        assert all(v > 0 for v in record["ms"].values())


def test_synthesis_speed(capsys):
    peak, record = run("synthesis_speed", capsys, "--paths=infer,composed,bfloat16,savedmodel,savedmodel_latent")
    assert peak["benchmark"] == "matmul_peak" and record["benchmark"] == "synthesis"
    assert record["model"] == "tiny" and record["batch"] == 1
    for path in ("infer", "composed", "bfloat16", "savedmodel", "savedmodel_latent", "torch"):
        assert record[path]["khz"] > 0 and record[path]["rtf"] > 0
    # The benchmark's own check that both frameworks synthesised the same audio.
    assert record["max_rel_diff_vs_torch"]["infer"] < 1e-4
    assert record["max_rel_diff_vs_torch"]["composed"] < 1e-4
    assert record["max_rel_diff_vs_torch"]["savedmodel"] < 1e-4
    assert record["max_rel_diff_vs_torch"]["savedmodel_latent"] < 1e-4
    assert record["max_rel_diff_vs_torch"]["bfloat16"] < 5e-2
    assert (
        record["macs_per_sample"]["composed"]
        < record["macs_per_sample"]["infer"]
        <= record["macs_per_sample"]["nominal"]
    )


def test_training_speed(capsys):
    (record,) = run("training_speed", capsys)
    assert record["benchmark"] == "training_step" and record["segment"] == 1024
    assert record["tf_graph"]["segments_per_s"] > 0 and record["torch"]["segments_per_s"] > 0
    # Same weights and batch: the first step's loss agrees between the frameworks.
    assert record["first_step_loss"]["tf_graph"] == pytest.approx(
        record["first_step_loss"]["torch"], rel=1e-4, abs=1e-6
    )
