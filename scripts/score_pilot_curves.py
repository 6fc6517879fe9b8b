"""Scores pilot runs along their curves, at equal CPU times, and writes the pilot table.

    python scripts/score_pilot_curves.py RUNS_DIR REFERENCE_DIR OUT_DIR [--every_cpu_minutes 15]
        [--sigma 0.6] [--baseline] [--start_model MODEL]

For every run directory in RUNS_DIR (``params.yaml``, ``metrics.csv``, ``checkpoints/``), the
checkpoints first reached after each multiple of ``--every_cpu_minutes`` of training CPU time
(and the last one) are scored by copy synthesis of the recordings in REFERENCE_DIR
(:func:`tfwaveglow.evaluation.evaluate_directory`: STOI, PESQ-WB, log-mel distance, MCD and
DNSMOS SIG / BAK / OVRL / P.808) at ``--sigma``, no denoiser, seed 0. A point already in
``OUT_DIR/<run>.curve.jsonl`` is not scored again, so the script can follow runs that are
still training. With ``--baseline``, Griffin-Lim (60 iterations) and the recordings themselves
are scored once into ``OUT_DIR/baseline.json``, and with ``--start_model`` the model every arm
started from, once, as its ``start`` entry.

Then prints the markdown table (also ``OUT_DIR/pilots.md``): per run, CPU seconds per step
(the median of its training rows), and per scored point the step, CPU minutes and every score;
Griffin-Lim and the recordings below.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

METRICS = ("stoi", "pesq_wb", "log_mel_distance", "mcd", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")


def training_rows(run_dir: str, splits=("train",)) -> list[dict]:
    """``{step, cpu_seconds}`` of each row of the run's ``metrics.csv`` whose split is in ``splits``."""
    rows = []
    with open(os.path.join(run_dir, "metrics.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] in splits and row["cpu_hours"]:
                rows.append({"step": int(row["step"]), "cpu_seconds": float(row["cpu_hours"]) * 3600})
    return rows


def checkpoints(run_dir: str) -> dict[int, str]:
    """``{step: prefix}`` of the checkpoints in ``run_dir/checkpoints``."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    paths = list(state.all_model_checkpoint_paths) if state else []
    return {int(p.rsplit("-", 1)[1]): p for p in paths}


def points_to_score(rows: list[dict], saved: dict[int, str], every_seconds: float) -> list[tuple[int, float]]:
    """``(step, cpu_seconds)`` of the first checkpoint at or past each multiple of ``every_seconds``, and the last."""
    cpu_at = {r["step"]: r["cpu_seconds"] for r in rows}
    timed = sorted((step, cpu_at[step]) for step in saved if step in cpu_at)
    chosen, mark = [], every_seconds
    for step, seconds in timed:
        if seconds >= mark:
            chosen.append((step, seconds))
            while mark <= seconds:
                mark += every_seconds
    if timed and (not chosen or chosen[-1][0] != timed[-1][0]):
        chosen.append(timed[-1])
    return chosen


def score(model_path: str, reference_dir: str, sigma: float, with_griffin_lim: bool) -> dict:
    from tfwaveglow import evaluation

    model, params = evaluation.load_model_and_params(model_path)
    report = evaluation.evaluate_directory(
        model,
        params,
        reference_dir,
        sigma=sigma,
        denoiser_strength=0.0,
        save_audio=False,
        with_griffin_lim=with_griffin_lim,
    )
    return {
        system: {m: values[m]["mean"] for m in METRICS if m in values} for system, values in report["average"].items()
    }


def read_jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def follow_run(run_dir: str, reference_dir: str, out_dir: str, every_seconds: float, sigma: float) -> None:
    name = os.path.basename(os.path.normpath(run_dir))
    curve_path = os.path.join(out_dir, f"{name}.curve.jsonl")
    done = {p["step"] for p in read_jsonl(curve_path)}
    saved = checkpoints(run_dir)
    # Validation rows too: the run's last checkpoint (its budget's end) may fall between two training rows.
    timed = training_rows(run_dir, splits=("train", "valid"))
    for step, seconds in points_to_score(timed, saved, every_seconds):
        if step in done:
            continue
        scores = score(saved[step], reference_dir, sigma, with_griffin_lim=False)["waveglow"]
        with open(curve_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "cpu_seconds": seconds, "sigma": sigma, **scores}) + "\n")
        print(f"{name} step {step} ({seconds / 60:.0f} CPU-min): {scores}", file=sys.stderr, flush=True)


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def table(runs_dir: str, out_dir: str) -> str:
    lines = [
        "| arm | CPU-s / step | step | CPU-min | STOI | PESQ-WB | log-mel | MCD | DNSMOS SIG / BAK / OVRL | P.808 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]

    def cells(p):
        return (
            f"{_fmt(p.get('stoi'), '.3f')} | {_fmt(p.get('pesq_wb'), '.2f')} | "
            f"{_fmt(p.get('log_mel_distance'), '.3f')} | {_fmt(p.get('mcd'), '.1f')} | "
            f"{_fmt(p.get('dnsmos_sig'), '.2f')} / {_fmt(p.get('dnsmos_bak'), '.2f')} / "
            f"{_fmt(p.get('dnsmos_ovrl'), '.2f')} | {_fmt(p.get('dnsmos_p808'), '.2f')}"
        )

    for name in sorted(os.listdir(runs_dir)):
        run_dir = os.path.join(runs_dir, name)
        if not os.path.isfile(os.path.join(run_dir, "metrics.csv")):
            continue
        rows = training_rows(run_dir)
        per_step = [
            (b["cpu_seconds"] - a["cpu_seconds"]) / (b["step"] - a["step"])
            for a, b in zip(rows, rows[1:])
            if b["step"] > a["step"] and b["cpu_seconds"] > a["cpu_seconds"]
        ]
        cost = statistics.median(per_step) if per_step else None
        for i, p in enumerate(read_jsonl(os.path.join(out_dir, f"{name}.curve.jsonl"))):
            label = f"{name}" if i == 0 else ""
            lines.append(
                f"| {label} | {_fmt(cost, '.2f') if i == 0 else ''} | {p['step']} | {p['cpu_seconds'] / 60:.0f} | "
                f"{cells(p)} |"
            )
    baseline = os.path.join(out_dir, "baseline.json")
    if os.path.isfile(baseline):
        with open(baseline, encoding="utf-8") as f:
            base = json.load(f)
        for system, label in (
            ("start", "the starting model"),
            ("griffin_lim", "Griffin-Lim, 60 iterations"),
            ("reference", "the recordings"),
        ):
            if system in base:
                lines.append(f"| {label} | | | | {cells(base[system])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir")
    parser.add_argument("reference_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--every_cpu_minutes", type=float, default=15.0)
    parser.add_argument("--sigma", type=float, default=0.6)
    parser.add_argument("--baseline", action="store_true", help="also score Griffin-Lim and the recordings")
    parser.add_argument("--start_model", default=None, help="with --baseline: the model the arms started from")
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    runs = [
        os.path.join(args.runs_dir, n)
        for n in sorted(os.listdir(args.runs_dir))
        if os.path.isfile(os.path.join(args.runs_dir, n, "metrics.csv"))
    ]
    baseline = os.path.join(args.out_dir, "baseline.json")
    if args.baseline and runs and not os.path.isfile(baseline):
        saved = checkpoints(runs[0])
        scores = score(saved[max(saved)], args.reference_dir, args.sigma, with_griffin_lim=True)
        base = {k: v for k, v in scores.items() if k != "waveglow"}
        if args.start_model:
            base["start"] = score(args.start_model, args.reference_dir, args.sigma, with_griffin_lim=False)["waveglow"]
        with open(baseline, "w", encoding="utf-8") as f:
            json.dump(base, f, indent=2)
    for run_dir in runs:
        follow_run(run_dir, args.reference_dir, args.out_dir, args.every_cpu_minutes * 60, args.sigma)
    text = table(args.runs_dir, args.out_dir)
    with open(os.path.join(args.out_dir, "pilots.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
