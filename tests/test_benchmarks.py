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
    assert (
        record["peak_gmac_per_s_bfloat16"]
        == max(record["tf_bfloat16_gmac_per_s"], record["torch_bfloat16_gmac_per_s"])
        > 0
    )


def test_dilated_conv(capsys):
    records = run("dilated_conv", capsys)
    assert {(r["direction"], r["dilation"]) for r in records} == {
        (d, n) for d in ("forward", "backward") for n in (1, 4)
    }
    for record in records:
        # conv1d's own dilation (the comparison form) may be unsupported by this CPU's kernels; ours never.
        assert set(record["unsupported"]) <= {"tf_native"}
        expected = {"tf_shifted_matmul", "tf_time_to_batch", "tf_phase_conv2d", "tf_native", "torch"}
        assert set(record["ms"]) == expected - set(record["unsupported"])
        assert all(v > 0 for v in record["ms"].values())


@pytest.mark.slow  # exports a SavedModel twice and a LiteRT model (about a minute); CI runs it
def test_synthesis_speed(capsys):
    paths = ("infer", "composed", "bfloat16", "savedmodel", "savedmodel_latent", "savedmodel_bfloat16", "litert")
    peak, record = run("synthesis_speed", capsys, "--paths=" + ",".join(paths))
    assert peak["benchmark"] == "matmul_peak" and record["benchmark"] == "synthesis"
    assert record["model"] == "tiny" and record["batch"] == 1
    for path in (*paths, "torch", "torch_bfloat16"):
        assert record[path]["khz"] > 0 and record[path]["rtf"] > 0
    faster_torch = min(record["torch"]["median_s"], record["torch_bfloat16"]["median_s"])
    assert record["infer"]["speedup_vs_faster_torch"] == pytest.approx(
        faster_torch / record["infer"]["median_s"], rel=2e-2, abs=2e-3
    )
    # Against the float32 SavedModel under the same latent: LiteRT is float32 too, bfloat16 is close.
    assert record["snr_db_vs_float32"]["litert"] > 80
    assert 20 < record["snr_db_vs_float32"]["savedmodel_bfloat16"] < 80
    assert record["max_rel_diff_vs_torch"]["litert"] < 1e-4
    assert record["max_rel_diff_vs_torch"]["torch_bfloat16"] < 5e-2
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


@pytest.mark.slow  # about 25 s; CI runs it
def test_training_speed(capsys):
    (record,) = run("training_speed", capsys, "--paths=graph,bfloat16", "--torch_bfloat16")
    assert record["benchmark"] == "training_step" and record["segment"] == 1024
    for name in ("tf_graph", "tf_bfloat16", "torch", "torch_bfloat16"):
        assert record[name]["segments_per_s"] > 0
    # Same weights and batch: the first step's loss agrees between the frameworks (bfloat16 roughly).
    losses = record["first_step_loss"]
    assert losses["tf_graph"] == pytest.approx(losses["torch"], rel=1e-4, abs=1e-6)
    assert losses["tf_bfloat16"] == pytest.approx(losses["torch"], rel=2e-2, abs=1e-2)
    assert losses["torch_bfloat16"] == pytest.approx(losses["torch"], rel=2e-2, abs=1e-2)


def test_profile_synthesis(capsys):
    records = run("profile_synthesis", capsys, "--paths=infer,composed")
    assert [r["path"] for r in records] == ["infer", "composed"]
    for record in records:
        assert record["ops_ms_total"] > 0 and record["top_ops"]
        assert sum(record["groups_share"].values()) == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow  # traces a whole training step (about 20 s); the step itself is covered by test_training_speed
def test_profile_training(capsys):
    (record,) = run("profile_training", capsys)
    assert record["benchmark"] == "training_profile" and record["segment"] == 1024
    assert record["ops_ms_total"] > 0 and record["groups_share"]["matmul"] > 0


def _synthesis_record(model, seconds, khz_by_path, batch=1, threads=2):
    record = {"benchmark": "synthesis", "model": model, "audio_seconds": seconds, "batch": batch, "threads": threads}
    for path, khz in khz_by_path.items():
        record[path] = {"median_s": 1.0, "cpu_median_s": 2.0, "khz": khz, "rtf": 0.5}
        if path != "torch":
            record[path]["speedup_vs_torch"] = 1.5
    return {**record, "load_1min": 1.0, "load_1min_after": 1.5, "cpu": "test CPU"}


def test_plot_and_table(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    lines = [
        _synthesis_record("default", 1.0, {"infer": 10.0, "torch": 7.0}),
        _synthesis_record("default", 10.0, {"infer": 11.0, "torch": 6.0}),
        _synthesis_record("default", 1.0, {"infer": 99.0, "torch": 99.0}, batch=8),  # another batch: not plotted
        {"benchmark": "matmul_peak", "peak_gmac_per_s": 100.0},
    ]
    results.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    output = tmp_path / "plot.png"
    load("plot_throughput").main(["plot_throughput.py", f"--results={results}", f"--output={output}"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["points"] == {"default": {"infer": [[1.0, 10.0], [10.0, 11.0]], "torch": [[1.0, 7.0], [10.0, 6.0]]}}
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    load("results_table").main(["results_table.py", str(results)])
    table = capsys.readouterr().out
    assert "| default | 10 s | 1 | 2 | infer | 1.00 | 2.00 | 11.00 | 0.500 | **1.50** |" in table
    assert table.count("| default |") == 6


@pytest.mark.slow  # exports a SavedModel and a LiteRT model of a tiny model in fresh processes; CI runs it
@pytest.mark.parametrize("export_format, precision", [("saved_model", "float32"), ("tflite", "float16")])
def test_served_speed(tmp_path, export_format, precision):
    import subprocess

    import tfwaveglow

    params = tfwaveglow.load_params(overrides={"model.n_flows": 2, "model.wn.n_layers": 2, "model.wn.n_channels": 8})
    model_dir = tfwaveglow.save_model(tfwaveglow.WaveGlow.from_params(params), str(tmp_path / "m"), params)
    cmd = [sys.executable, os.path.join(BENCHMARKS, "served_speed.py"), f"--model={model_dir}", "--seconds=0.5",
           "--repeats=1", f"--format={export_format}", f"--precision={precision}"]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=600).stdout
    (record,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert record["format"] == export_format and record["precision"] == precision
    assert record["parameters"] == tfwaveglow.count_parameters(tfwaveglow.load_model(model_dir))
    # Audio seconds per wall second, from the same median: the two speed fields agree.
    assert record["times_real_time"] == pytest.approx(record["audio_seconds"] / record["median_seconds"], rel=2e-2)
    assert record["khz"] == pytest.approx(record["times_real_time"] * 22.05, rel=2e-2)
