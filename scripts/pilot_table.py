"""The pilot table (docs/pilots.md) from pilot run directories and their evaluations; prints markdown.

    python scripts/pilot_table.py RUNS_DIR EVAL_DIR

For each run directory in RUNS_DIR (``params.yaml``, ``metrics.csv``): parameters and
multiply-adds per sample of its model, steps and CPU hours at its last training row,
audio samples trained per CPU-second, its last validation NLL; from EVAL_DIR (what
``scripts/evaluate_pilots.sh`` writes): STOI / PESQ-WB / log-mel distance of WaveGlow and
Griffin-Lim on the held-out files, and the served synthesis speed.
"""

from __future__ import annotations

import csv
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def last_rows(metrics_path: str) -> tuple[dict, dict]:
    """The last ``train`` and the last ``valid`` row of a run's ``metrics.csv``."""
    train, valid = {}, {}
    with open(metrics_path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] == "train":
                train = row
            elif row["split"] == "valid":
                valid = row
    return train, valid


def describe_run(run_dir: str, eval_dir: str) -> dict:
    sys.path.insert(0, ROOT)
    import tfwaveglow
    from tfwaveglow.model import multiply_adds_per_sample

    params = tfwaveglow.load_params(os.path.join(run_dir, "params.yaml"))
    model = tfwaveglow.WaveGlow.from_params(params)
    train, valid = last_rows(os.path.join(run_dir, "metrics.csv"))
    name = os.path.basename(os.path.normpath(run_dir))
    step, cpu_hours = int(train["step"]), float(train["cpu_hours"])
    samples = step * params.train.batch_size * params.data.segment_length
    row = {
        "run": name,
        "parameters": tfwaveglow.count_parameters(model),
        "macs_per_sample": multiply_adds_per_sample(model),
        "steps": step,
        "cpu_hours": cpu_hours,
        "samples_per_cpu_second": samples / (cpu_hours * 3600) if cpu_hours else None,
        "valid_nll": float(valid["loss/total"]) if valid else None,
        "valid_step": int(valid["step"]) if valid else None,
    }
    evaluation = os.path.join(eval_dir, name, "evaluation.json")
    if os.path.isfile(evaluation):
        with open(evaluation, encoding="utf-8") as f:
            result = json.load(f)
        for system in ("waveglow", "griffin_lim"):
            for metric in ("stoi", "pesq_wb", "log_mel_distance"):
                row[f"{system}_{metric}"] = result["average"][system][metric]["mean"]
        row["files"] = result["num_files"] - result["num_failed"]
    speed = os.path.join(eval_dir, f"{name}.speed.json")
    if os.path.isfile(speed) and os.path.getsize(speed):
        with open(speed, encoding="utf-8") as f:
            row["times_real_time"] = json.loads(f.read().strip().splitlines()[-1])["times_real_time"]
    return row


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(rows: list[dict]) -> str:
    head = (
        "| pilot | parameters | multiply-adds / sample | steps | CPU hours | samples / CPU-s | validation NLL "
        "| STOI | PESQ-WB | log-mel dist. | served speed (x real time) |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['parameters'] / 1e6:.2f} M | {r['macs_per_sample'] / 1e3:.0f} k | {r['steps']} "
            f"| {r['cpu_hours']:.2f} | {_fmt(r['samples_per_cpu_second'], ',.0f')} | {_fmt(r['valid_nll'], '.3f')} "
            f"| {_fmt(r.get('waveglow_stoi'), '.3f')} | {_fmt(r.get('waveglow_pesq_wb'), '.2f')} "
            f"| {_fmt(r.get('waveglow_log_mel_distance'), '.3f')} | {_fmt(r.get('times_real_time'), '.1f')} |"
        )
    gl = next((r for r in rows if r.get("griffin_lim_stoi") is not None), None)
    if gl:
        lines.append(
            f"| Griffin-Lim, 60 iterations (same mels) | – | – | – | – | – | – | {gl['griffin_lim_stoi']:.3f} "
            f"| {gl['griffin_lim_pesq_wb']:.2f} | {gl['griffin_lim_log_mel_distance']:.3f} | – |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    runs, eval_dir = argv[1], argv[2]
    rows = [
        describe_run(os.path.join(runs, name), eval_dir)
        for name in sorted(os.listdir(runs))
        if os.path.isfile(os.path.join(runs, name, "metrics.csv"))
    ]
    print(markdown(rows), end="")
    with open(os.path.join(eval_dir, "pilots.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
