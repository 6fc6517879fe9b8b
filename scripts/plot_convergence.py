"""Loss curves of training runs, from their ``metrics.csv``, into one PNG (and a JSON summary).

    python scripts/plot_convergence.py runs/conv_time_to_batch runs/conv_native [--out docs/convergence.png]
    python scripts/plot_convergence.py runs/parity_tf runs/parity_torch --labels=tfwaveglow,"PyTorch reference" \
        --difference --out docs/convergence_torch_vs_tf.png

Left: the training loss (the mean over each summary interval) and the validation
NLL against the step. Right: the validation NLL against hours of training
(wall clock; a gap of more than 10 minutes between two rows, a run stopped and
resumed later, is left out); with ``--difference`` instead: each later run's
validation NLL minus the first run's, at the steps both validated, with the
``--tolerance`` band. A row that a resumed run wrote again for the same
step replaces the earlier one. Prints, per run, the last step, the validation
NLL at the first and last validations and its best, and the mean steps/s
(with ``--difference``, also the per-step differences to the first run).

``--mel_images`` also writes, for each run, the newest validation mel image from
its TensorBoard events (the synthesised audio's mel left, the ground truth
right) as ``<out without .png>_mel_<run dir name>.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

# A gap longer than this between two rows is a stop (kill, restart), not training time.
_STOP_GAP_S = 600.0


def read_metrics(run_dir: str) -> dict:
    """``{"train": [(step, time, row)], "valid": [...]}`` sorted by step, last write per step kept."""
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no metrics (is {run_dir} a training run directory?)")
    by_key = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                step, stamp = int(row["step"]), float(row["time"])
                float(row["loss/total"])
            except (KeyError, TypeError, ValueError):
                continue  # a line cut short by a kill
            by_key[(row["split"], step)] = (step, stamp, row)
    splits = {"train": [], "valid": []}
    for (split, _), value in by_key.items():
        splits.setdefault(split, []).append(value)
    for rows in splits.values():
        rows.sort(key=lambda r: r[0])
    return splits


def training_hours(rows_by_split: dict) -> dict:
    """Maps each row's wall time to hours of training since the first row, leaving out stops."""
    stamps = sorted({stamp for rows in rows_by_split.values() for _, stamp, _ in rows})
    hours, elapsed, previous = {}, 0.0, None
    for stamp in stamps:
        if previous is not None:
            gap = stamp - previous
            elapsed += gap if gap < _STOP_GAP_S else 0.0
        hours[stamp] = elapsed / 3600.0
        previous = stamp
    return hours


def run_label(run_dir: str) -> str:
    params = os.path.join(run_dir, "params.yaml")
    name = os.path.basename(os.path.normpath(run_dir))
    if os.path.isfile(params):
        with open(params, encoding="utf-8") as f:
            mode = (yaml.safe_load(f) or {}).get("model", {}).get("wn", {}).get("dilated_conv")
        if mode:
            return f"{mode} ({name})"
    return name


def valid_curve(splits: dict) -> dict:
    """``{step: validation NLL}``."""
    return {s: float(r["loss/total"]) for s, _, r in splits["valid"]}


def summarize(run_dir: str, splits: dict, label: str | None = None) -> dict:
    valid = [(s, float(r["loss/total"])) for s, _, r in splits["valid"]]
    rates = [float(r["steps_per_sec"]) for _, _, r in splits["train"] if r.get("steps_per_sec")]
    hours = training_hours(splits)
    last_stamp = max((t for rows in splits.values() for _, t, _ in rows), default=None)
    return {
        "run_dir": run_dir,
        "label": label or run_label(run_dir),
        "last_step": max((s for rows in splits.values() for s, _, _ in rows), default=0),
        "training_hours": round(hours[last_stamp], 3) if last_stamp is not None else 0.0,
        "valid_first": valid[0] if valid else None,
        "valid_last": valid[-1] if valid else None,
        "valid_best": min(valid, key=lambda v: v[1]) if valid else None,
        "train_last": float(splits["train"][-1][2]["loss/total"]) if splits["train"] else None,
        "mean_steps_per_sec": round(sum(rates) / len(rates), 3) if rates else None,
    }


def plot(
    run_dirs: list[str],
    out: str,
    labels: list[str] | None = None,
    difference: bool = False,
    tolerance: float = 0.05,
) -> list[dict]:
    """Draws the figure; returns one :func:`summarize` dict per run.

    Args:
      run_dirs: training run directories (each with ``metrics.csv``).
      out: the PNG to write.
      labels: legend names, one per run (default: the dilated-conv mode and the directory name).
      difference: right panel = validation NLL minus the first run's at shared steps
        (instead of validation NLL against hours); the summaries gain ``valid_difference``.
      tolerance: half-width of the band drawn around 0 in the difference panel.
    """
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} runs")
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(13, 4.8))
    summaries = []
    first_curve = None
    for index, run_dir in enumerate(run_dirs):
        splits = read_metrics(run_dir)
        color = f"C{index}"
        label = labels[index] if labels else run_label(run_dir)
        hours = training_hours(splits)
        curve = valid_curve(splits)
        summary = summarize(run_dir, splits, label)
        if splits["train"]:
            steps = [s for s, _, _ in splits["train"]]
            by_step.plot(steps, [float(r["loss/total"]) for _, _, r in splits["train"]], color=color, alpha=0.35, lw=1)
        if splits["valid"]:
            steps = [s for s, _, _ in splits["valid"]]
            values = [float(r["loss/total"]) for _, _, r in splits["valid"]]
            by_step.plot(steps, values, "o-", color=color, lw=2, ms=4, label=f"{label}: validation")
            if not difference:
                hours_valid = [hours[t] for _, t, _ in splits["valid"]]
                by_time.plot(hours_valid, values, "o-", color=color, lw=2, ms=4, label=label)
        if difference:
            if first_curve is None:
                first_curve, first_label = curve, label
            else:
                shared = sorted(set(first_curve) & set(curve))
                diffs = [curve[s] - first_curve[s] for s in shared]
                by_time.plot(shared, diffs, "o-", color=color, lw=2, ms=4, label=f"{label} − {first_label}")
                summary["valid_difference"] = [(s, round(d, 6)) for s, d in zip(shared, diffs)]
        summaries.append(summary)
    by_step.plot([], [], color="grey", alpha=0.5, label="training loss (faint)")
    by_step.set(xlabel="step", ylabel="NLL per sample (no Gaussian constant)", title="Loss against steps")
    if difference:
        by_time.axhspan(-tolerance, tolerance, color="grey", alpha=0.15, label=f"±{tolerance:g}")
        by_time.axhline(0.0, color="grey", lw=0.8)
        by_time.set(xlabel="step", ylabel="validation NLL difference", title="Validation NLL minus the first run's")
    else:
        by_time.set(
            xlabel="hours of training (wall clock)", ylabel="validation NLL", title="Validation NLL against time"
        )
    for axis in (by_step, by_time):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return summaries


def export_mel_image(run_dir: str, out_prefix: str, tag: str = "mel_0/generated_vs_ground_truth") -> str | None:
    """Writes the newest ``tag`` image of the run's ``valid/`` events as a PNG; returns its path."""
    import glob

    import tensorflow as tf

    newest = None
    for path in sorted(glob.glob(os.path.join(run_dir, "valid", "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag and (newest is None or event.step >= newest[0]):
                    newest = (event.step, tf.make_ndarray(value.tensor)[2])
    if newest is None:
        return None
    out = f"{out_prefix}_mel_{os.path.basename(os.path.normpath(run_dir))}.png"
    with open(out, "wb") as f:
        f.write(newest[1])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="training run directories (each with metrics.csv)")
    parser.add_argument("--out", default="docs/convergence.png")
    parser.add_argument("--mel_images", action="store_true", help="also export each run's newest mel image")
    parser.add_argument("--labels", help="comma-separated legend names, one per run")
    parser.add_argument(
        "--difference", action="store_true", help="right panel: validation NLL minus the first run's, by step"
    )
    parser.add_argument("--tolerance", type=float, default=0.05, help="band drawn in the difference panel")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    try:
        summaries = plot(args.run_dirs, args.out, labels, args.difference, args.tolerance)
    except (FileNotFoundError, ValueError) as e:
        print(f"plot_convergence: error: {e}", file=sys.stderr)
        return 1
    report = {"figure": args.out, "runs": summaries}
    if args.mel_images:
        prefix = os.path.splitext(args.out)[0]
        report["mel_images"] = [export_mel_image(run_dir, prefix) for run_dir in args.run_dirs]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
