"""The long run's curve: validation NLL and held-out STOI against training hours, into one PNG.

    python scripts/plot_long_run.py /work/runs/long --out docs/long_run_curve.png --label "run 4" \
        --all62 12000=eval62_step12000/evaluation.json --all62 14000=eval62_step14000/evaluation.json \
        --earlier docs/long_run_points/run3.json --save_points docs/long_run_points/run4.json \
        [--quality_out docs/long_run_quality.png]

Reads ``RUN/metrics.csv`` (its ``valid`` rows: step, validation NLL, training hours) and
``RUN/heldout_curve.jsonl`` (``scripts/long_run.sh``: STOI on the first 12 held-out
utterances, Griffin-Lim's beside). Each ``--all62 STEP=PATH`` adds the WaveGlow STOI of an
``evaluate.py`` report on all 62 held-out utterances at that step, placed at the training
hours ``metrics.csv`` records for the step. Hours are on a log axis, so equal distances are
equal ratios of steps (the gain per doubling is the slope). Prints the plotted points as JSON,
with ``all62_gain_per_doubling``: at each all-62 step N with a full doubling of scored steps
behind it, the least-squares slope of STOI against log2(step) over the steps N/2 to N (the
measure of the run's ending rule, "less than 0.01 STOI per doubling of steps").

``--quality_out PATH`` also draws a second PNG: held-out PESQ-WB and DNSMOS OVRL of the first 12
utterances against training hours, with Griffin-Lim's and the recordings' levels as horizontal
lines where the curve has them. The printed JSON's ``gain_per_doubling`` gives, at the last scored
step N of the first-12 curve, the least-squares slope of STOI and of DNSMOS OVRL against
log2(step) over the scored steps N/2 to N (null without a full doubling of scored steps), and
``ending_rule_met`` the rule of runs with spectral objectives (:func:`ending_rule_met`: at least
20 training hours and both gains under 0.01).
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

# The first-12 curve's figures a summary keeps, each where the curve's line has it (older lines
# of heldout_curve.jsonl have no PESQ-WB or DNSMOS keys; their points keep the first three).
FIRST12_KEYS = ("step", "train_hours", "waveglow_stoi", "waveglow_pesq_wb", "waveglow_dnsmos_ovrl")
# The ending rule of a run with spectral objectives: so many training hours, and both held-out
# STOI and DNSMOS OVRL gaining less than this per doubling of steps (docs/long_run.md).
MIN_TRAIN_HOURS = 20.0
MAX_GAIN_PER_DOUBLING = 0.01
# The second figure's panels: (curve key suffix, axis label).
QUALITY_METRICS = (("pesq_wb", "PESQ-WB"), ("dnsmos_ovrl", "DNSMOS OVRL"))
# The levels drawn beside WaveGlow's curves: the systems whose figures do not change with the step.
BASELINES = (("griffin_lim", "Griffin-Lim", "gray", ":"), ("reference", "recordings", "green", "-."))


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
    """The JSON lines of ``heldout_curve.jsonl`` (empty when the run has none yet), by step.

    A later line of a step wins; a line that is not JSON (cut short by a kill) is skipped.
    """
    path = os.path.join(run_dir, "heldout_curve.jsonl")
    if not os.path.exists(path):
        return []
    points = {}
    with open(path) as f:
        for line in f:
            try:
                point = json.loads(line)
            except ValueError:
                continue  # a blank line, or one cut short by a kill
            points[point["step"]] = point
    return [points[s] for s in sorted(points)]


def all62_points(specs: list[str], valid: dict[int, dict]) -> list[dict]:
    """``STEP=PATH`` specs to ``[{"step", "hours", "stoi", "sigma", "denoiser_strength"}]``.

    The step must have a validation row; ``sigma`` and ``denoiser_strength`` are the report's
    synthesis settings (None where the report does not give them).
    """
    points = []
    for spec in specs:
        step_text, sep, path = spec.partition("=")
        if not sep or not step_text.isdigit():
            raise ValueError(f"--all62 {spec!r}: expected STEP=PATH/evaluation.json")
        step = int(step_text)
        if step not in valid:
            raise ValueError(f"--all62 {spec!r}: metrics.csv has no validation row at step {step}")
        with open(path) as f:
            report = json.load(f)
        points.append(
            {
                "step": step,
                "hours": valid[step]["hours"],
                "stoi": report["average"]["waveglow"]["stoi"]["mean"],
                "sigma": report.get("sigma"),
                "denoiser_strength": report.get("denoiser_strength"),
            }
        )
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
        slope = _slope([math.log2(p["step"]) for p in window], [p["stoi"] for p in window])
        gains.append({"step": end, "gain": slope, "points": len(window)})
    return gains


def _slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ``ys`` against ``xs`` (at least two distinct ``xs``)."""
    x_mean, y_mean = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sum((x - x_mean) ** 2 for x in xs)


def last_doubling_gain(curve: list[dict], key: str) -> float | None:
    """``key`` gained per doubling of steps over the last doubling of a curve, or None.

    ``curve`` is ``[{"step", key, ...}]`` by step (``heldout_curve.jsonl``'s lines); N is its last
    step. The gain is the least-squares slope of ``key`` against ``log2(step)`` over the points of
    steps N/2 to N that have it (not missing, not null). None when the point at N lacks it, when
    the first point that has it is after N/2 (no full doubling of scored steps), or when the window
    holds fewer than two such points.
    """
    if not curve or curve[-1].get(key) is None:
        return None
    end = curve[-1]["step"]
    having = [p for p in curve if p.get(key) is not None]
    if 2 * having[0]["step"] > end:
        return None
    window = [p for p in having if 2 * p["step"] >= end]
    if len(window) < 2:
        return None
    return _slope([math.log2(p["step"]) for p in window], [p[key] for p in window])


def ending_rule_met(
    train_hours: float | None,
    stoi_gain: float | None,
    ovrl_gain: float | None,
    min_hours: float = MIN_TRAIN_HOURS,
    max_gain: float = MAX_GAIN_PER_DOUBLING,
) -> bool:
    """The ending rule of a run with spectral objectives, at its last scored step.

    True when the run has at least ``min_hours`` training hours behind it and both its held-out
    STOI and its DNSMOS OVRL gain less than ``max_gain`` per doubling of steps over the last
    doubling (:func:`last_doubling_gain` of the first-12 curve). A gain of None (no full doubling
    of scored steps yet, or a metric the last line lacks) never meets it, nor do unknown hours.
    """
    if train_hours is None or train_hours < min_hours:
        return False
    return all(gain is not None and gain < max_gain for gain in (stoi_gain, ovrl_gain))


def first12_rule(curve: list[dict]) -> dict:
    """``{"step", "train_hours", "stoi", "dnsmos_ovrl"}`` at the curve's last step: the gains per doubling.

    ``curve`` is ``heldout_curve.jsonl``'s lines by step (the first 12 held-out utterances); the
    gains are :func:`last_doubling_gain` of ``waveglow_stoi`` and ``waveglow_dnsmos_ovrl``.
    """
    last = curve[-1] if curve else {}
    return {
        "step": last.get("step"),
        "train_hours": last.get("train_hours"),
        "stoi": last_doubling_gain(curve, "waveglow_stoi"),
        "dnsmos_ovrl": last_doubling_gain(curve, "waveglow_dnsmos_ovrl"),
    }


def baseline_levels(curve: list[dict], metric: str) -> dict:
    """``{system: value}``: the last figure of ``metric`` for Griffin-Lim and the recordings the curve has."""
    levels = {}
    for system, *_ in BASELINES:
        values = [p[f"{system}_{metric}"] for p in curve if p.get(f"{system}_{metric}") is not None]
        if values:
            levels[system] = values[-1]
    return levels


def earlier_run(path: str) -> dict:
    """A points file (this script's JSON summary): ``{"label", "validation", "first12", "all62"}``."""
    with open(path) as f:
        points = json.load(f)
    missing = [k for k in ("validation", "first12", "all62") if k not in points]
    if missing:
        raise ValueError(f"--earlier {path}: no {', '.join(missing)} in it")
    points.setdefault("label", os.path.splitext(os.path.basename(path))[0])
    return points


def synthesis_settings(points: list[dict]) -> str:
    """``", sigma 0.2, no denoiser"`` when every point gives the same settings, else ``""``.

    Points files written before the settings were recorded carry neither key and get no suffix.
    """
    settings = {(p.get("sigma"), p.get("denoiser_strength")) for p in points}
    if len(settings) != 1 or None in next(iter(settings)):
        return ""
    sigma, strength = settings.pop()
    return f", sigma {sigma:g}, " + (f"denoiser {strength:g}" if strength else "no denoiser")


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
        label = f"{name}, all 62{synthesis_settings(all62)}"
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
        _hours_axis(ax)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _hours_axis(ax) -> None:
    """A grid, and one tick per doubling of training hours."""
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_quality(summary: dict, earlier: list[dict], levels: dict, out: str) -> None:
    """Held-out PESQ-WB (left) and DNSMOS OVRL (right) of the first 12 utterances against training hours.

    ``summary`` and ``earlier`` as for :func:`plot` (a run whose points have no such figures, an
    older curve, draws nothing); ``levels`` is ``{metric: {system: value}}`` (:func:`baseline_levels`),
    drawn as horizontal lines.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (metric, label) in zip(axes, QUALITY_METRICS):
        for run, is_earlier in [*((r, True) for r in earlier), (summary, False)]:
            style = {"color": "0.6", "lw": 1, "ms": 2} if is_earlier else {"ms": 3}
            points = [p for p in run["first12"] if p.get(f"waveglow_{metric}") is not None]
            if points:
                hours, values = [p["train_hours"] for p in points], [p[f"waveglow_{metric}"] for p in points]
                name = f"{run['label']}, first 12"
                gain = (run.get("gain_per_doubling") or {}).get(metric)
                if not is_earlier and gain is not None:
                    name += f" ({gain:+.3f} per doubling, last doubling)"
                ax.plot(hours, values, "o--", label=name, **style)
        for system, system_name, color, line in BASELINES:
            if system in levels.get(metric, {}):
                ax.axhline(levels[metric][system], color=color, ls=line, label=f"{system_name}, first 12")
        ax.set(xscale="log", xlabel="training hours (log)", ylabel=label, title=f"Held-out {label}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        _hours_axis(ax)
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
    parser.add_argument(
        "--quality_out", default="", metavar="PNG", help="also draw held-out PESQ-WB and DNSMOS OVRL into this PNG"
    )
    args = parser.parse_args(argv)
    try:
        valid = validation_rows(args.run_dir)
        first12 = heldout_curve(args.run_dir)
        all62 = all62_points(args.all62, valid)
        earlier = [earlier_run(path) for path in args.earlier]
    except (OSError, ValueError, KeyError) as e:
        print(f"plot_long_run: {e}", file=sys.stderr)
        return 1
    gains = first12_rule(first12)
    summary = {
        "label": args.label,
        "validation": [{"step": s, **v} for s, v in valid.items()],
        "first12": [{k: p[k] for k in FIRST12_KEYS if k in p} for p in first12],
        "all62": all62,
        "all62_gain_per_doubling": gain_per_doubling(all62),
        "gain_per_doubling": gains,
        "ending_rule_met": ending_rule_met(gains["train_hours"], gains["stoi"], gains["dnsmos_ovrl"]),
    }
    griffin_lim_stoi = baseline_levels(first12, "stoi").get("griffin_lim")
    plot(summary, earlier, griffin_lim_stoi, args.out, args.target_stoi)
    if args.quality_out:
        levels = {metric: baseline_levels(first12, metric) for metric, _ in QUALITY_METRICS}
        plot_quality(summary, earlier, levels, args.quality_out)
    if args.save_points:
        with open(args.save_points, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps({**summary, "out": args.out, "quality_out": args.quality_out or None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
