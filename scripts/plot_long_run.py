"""The long run's curve: validation NLL and held-out STOI against training hours, into one PNG.

    python scripts/plot_long_run.py /work/runs/long --out docs/long_run_curve.png \
        --all62 6000=eval62_step6000/evaluation.json --all62 10000=eval62_step10000/evaluation.json

Reads ``RUN/metrics.csv`` (its ``valid`` rows: step, validation NLL, training hours) and
``RUN/heldout_curve.jsonl`` (``scripts/long_run.sh``: STOI on the first 12 held-out
utterances, Griffin-Lim's beside). Each ``--all62 STEP=PATH`` adds the WaveGlow STOI of an
``evaluate.py`` report on all 62 held-out utterances at that step, placed at the training
hours ``metrics.csv`` records for the step. Hours are on a log axis, so equal distances are
equal ratios of steps (the gain per doubling is the slope). Prints the plotted points as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
from plot_convergence import read_metrics  # noqa: E402


def validation_rows(run_dir: str) -> dict[int, dict]:
    """``{step: {"nll": float, "hours": float}}`` from the ``valid`` rows of ``metrics.csv``.

    Read by :func:`plot_convergence.read_metrics` (a later row of a step wins, a line cut short
    by a kill is skipped); the hours are the run's own ``train_hours`` column.
    """
    rows = {
        step: {"nll": float(row["loss/total"]), "hours": float(row["train_hours"])}
        for step, _, row in read_metrics(run_dir)["valid"]
        if row.get("train_hours")
    }
    if not rows:
        raise ValueError(f"{run_dir}/metrics.csv: no validation rows with training hours")
    return rows


def heldout_curve(run_dir: str) -> list[dict]:
    """The JSON lines of ``heldout_curve.jsonl`` (empty when the run has none yet), by step."""
    path = os.path.join(run_dir, "heldout_curve.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        points = {p["step"]: p for p in (json.loads(line) for line in f if line.strip())}
    return [points[s] for s in sorted(points)]


def all62_points(specs: list[str], valid: dict[int, dict]) -> list[dict]:
    """``STEP=PATH`` specs to ``[{"step", "hours", "stoi"}]``; the step must have a validation row."""
    points = []
    for spec in specs:
        step_text, sep, path = spec.partition("=")
        if not sep or not step_text.isdigit():
            raise ValueError(f"--all62 {spec!r}: expected STEP=PATH/evaluation.json")
        step = int(step_text)
        if step not in valid:
            raise ValueError(f"--all62 {spec!r}: metrics.csv has no validation row at step {step}")
        with open(path) as f:
            stoi = json.load(f)["average"]["waveglow"]["stoi"]["mean"]
        points.append({"step": step, "hours": valid[step]["hours"], "stoi": stoi})
    return sorted(points, key=lambda p: p["step"])


def plot(valid: dict[int, dict], first12: list[dict], all62: list[dict], out: str, target_stoi: float) -> None:
    """Left: validation NLL; right: STOI (first 12, all 62, Griffin-Lim, target); both against hours."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot([v["hours"] for v in valid.values()], [v["nll"] for v in valid.values()], "o-", ms=3)
    left.set(xscale="log", xlabel="training hours (log)", ylabel="validation NLL", title="Validation NLL")
    if first12:
        right.plot([p["train_hours"] for p in first12], [p["waveglow_stoi"] for p in first12], "o-", label="first 12")
        right.axhline(first12[-1]["griffin_lim_stoi"], color="gray", ls=":", label="Griffin-Lim, first 12")
    if all62:
        right.plot([p["hours"] for p in all62], [p["stoi"] for p in all62], "s-", label="all 62, denoiser 0.1")
    right.axhline(target_stoi, color="red", ls="--", label=f"target {target_stoi:g}")
    right.set(xscale="log", xlabel="training hours (log)", ylabel="STOI", title="Held-out STOI")
    right.legend(fontsize=8, loc="lower right")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))  # one tick per doubling
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default="docs/long_run_curve.png")
    parser.add_argument("--all62", action="append", default=[], metavar="STEP=PATH")
    parser.add_argument("--target_stoi", type=float, default=0.90)
    args = parser.parse_args(argv)
    try:
        valid = validation_rows(args.run_dir)
        first12 = heldout_curve(args.run_dir)
        all62 = all62_points(args.all62, valid)
    except (OSError, ValueError, KeyError) as e:
        print(f"plot_long_run: {e}", file=sys.stderr)
        return 1
    plot(valid, first12, all62, args.out, args.target_stoi)
    keys = ("step", "train_hours", "waveglow_stoi")
    summary = {
        "validation": [{"step": s, **v} for s, v in valid.items()],
        "first12": [{k: p[k] for k in keys} for p in first12],
        "all62": all62,
        "out": args.out,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
