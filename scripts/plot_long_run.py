"""The long run's curve: validation NLL and held-out STOI against training hours, into one PNG.

    python scripts/plot_long_run.py /work/runs/long --out docs/long_run_curve.png --label "run 4" \
        --all62 12000=eval62_step12000/evaluation.json --all62 14000=eval62_step14000/evaluation.json \
        --earlier docs/long_run_points/run3.json --save_points docs/long_run_points/run4.json

Reads ``RUN/metrics.csv`` (its ``valid`` rows: step, validation NLL, training hours) and
``RUN/heldout_curve.jsonl`` (``scripts/long_run.sh``: STOI on the first 12 held-out
utterances, Griffin-Lim's beside). Each ``--all62 STEP=PATH`` adds the WaveGlow STOI of an
``evaluate.py`` report on all 62 held-out utterances at that step, placed at the training
hours ``metrics.csv`` records for the step. Hours are on a log axis, so equal distances are
equal ratios of steps (the gain per doubling is the slope). Prints the plotted points as JSON,
with ``all62_gain_per_doubling``: at each all-62 step N with a full doubling of scored steps
behind it, the least-squares slope of STOI against log2(step) over the steps N/2 to N (the
measure of the run's ending rule, "less than 0.01 STOI per doubling of steps").
"""

from __future__ import annotations

import argparse
import json
import math
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


def gain_per_doubling(all62: list[dict], min_points: int = 3) -> list[dict]:
    """``[{"step", "gain", "points"}]``: STOI gained per doubling of steps over the last doubling.

    For each point N of ``all62`` (``[{"step", "stoi", ...}]``, by step) whose first point is at
    step N/2 or earlier, ``gain`` is the least-squares slope of ``stoi`` against ``log2(step)``
    over the ``points`` steps from N/2 to N (at least ``min_points`` of them; fewer give no entry).
    """
    if not all62:
        return []
    first = all62[0]["step"]
    gains = []
    for point in all62:
        end = point["step"]
        if 2 * first > end:
            continue
        window = [p for p in all62 if 2 * p["step"] >= end and p["step"] <= end]
        if len(window) < min_points:
            continue
        xs = [math.log2(p["step"]) for p in window]
        ys = [p["stoi"] for p in window]
        x_mean, y_mean = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sum((x - x_mean) ** 2 for x in xs)
        gains.append({"step": end, "gain": slope, "points": len(window)})
    return gains


def earlier_run(path: str) -> dict:
    """A points file (this script's JSON summary): ``{"label", "validation", "first12", "all62"}``."""
    with open(path) as f:
        points = json.load(f)
    missing = [k for k in ("validation", "first12", "all62") if k not in points]
    if missing:
        raise ValueError(f"--earlier {path}: no {', '.join(missing)} in it")
    points.setdefault("label", os.path.splitext(os.path.basename(path))[0])
    return points


def _draw_run(left, right, summary: dict, earlier: bool) -> None:
    """One run's NLL (left) and STOI curves (right); an earlier run in gray, thinner."""
    style = {"color": "0.6", "lw": 1, "ms": 2} if earlier else {"ms": 3}
    name = summary["label"]
    valid = summary["validation"]
    left.plot([v["hours"] for v in valid], [v["nll"] for v in valid], "o-", label=name, **style)
    first12, all62 = summary["first12"], summary["all62"]
    if first12:
        hours = [p["train_hours"] for p in first12]
        right.plot(hours, [p["waveglow_stoi"] for p in first12], "o--", label=f"{name}, first 12", **style)
    if all62:
        hours = [p["hours"] for p in all62]
        label = f"{name}, all 62, denoiser 0.1"
        gains = summary.get("all62_gain_per_doubling")
        if gains:
            label += f" ({gains[-1]['gain']:+.3f} per doubling, last doubling)"
        right.plot(hours, [p["stoi"] for p in all62], "s-", label=label, **style)


def plot(summary: dict, earlier: list[dict], griffin_lim_stoi: float | None, out: str, target_stoi: float) -> None:
    """Left: validation NLL; right: STOI (first 12, all 62, Griffin-Lim, target); both against hours.

    ``summary`` is this run's points (as printed), ``earlier`` those of earlier runs.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in earlier:
        _draw_run(left, right, run, earlier=True)
    _draw_run(left, right, summary, earlier=False)
    left.set(xscale="log", xlabel="training hours (log)", ylabel="validation NLL", title="Validation NLL")
    left.legend(fontsize=8, loc="upper right")
    if griffin_lim_stoi is not None:
        right.axhline(griffin_lim_stoi, color="gray", ls=":", label="Griffin-Lim, first 12")
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
    parser.add_argument("--label", default="this run", help="the run's name in the legend and the points")
    parser.add_argument("--earlier", action="append", default=[], metavar="POINTS_JSON")
    parser.add_argument("--save_points", default="", metavar="POINTS_JSON")
    args = parser.parse_args(argv)
    try:
        valid = validation_rows(args.run_dir)
        first12 = heldout_curve(args.run_dir)
        all62 = all62_points(args.all62, valid)
        earlier = [earlier_run(path) for path in args.earlier]
    except (OSError, ValueError, KeyError) as e:
        print(f"plot_long_run: {e}", file=sys.stderr)
        return 1
    keys = ("step", "train_hours", "waveglow_stoi")
    summary = {
        "label": args.label,
        "validation": [{"step": s, **v} for s, v in valid.items()],
        "first12": [{k: p[k] for k in keys} for p in first12],
        "all62": all62,
        "all62_gain_per_doubling": gain_per_doubling(all62),
    }
    griffin_lim_stoi = first12[-1]["griffin_lim_stoi"] if first12 else None
    plot(summary, earlier, griffin_lim_stoi, args.out, args.target_stoi)
    if args.save_points:
        with open(args.save_points, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps({**summary, "out": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
