"""Plots synthesis throughput (kHz of audio per second) against input length from synthesis_speed.py's JSON lines.

    python benchmarks/plot_throughput.py --results=benchmarks/results/*.jsonl \
        --output=docs/throughput_vs_length.png [--batch=1] [--threads=2]

One panel per model (default, small); one line per path (TensorFlow's
``infer``, ``composed``, ``savedmodel`` and PyTorch), each point the median of
one measurement at that length. Lines of ``benchmark: synthesis`` with another
batch size or thread count are left out; where a (model, length) was measured
more than once, the last line wins.
"""

from __future__ import annotations

import glob
import json
import sys

from absl import app, flags

FLAGS = flags.FlagValues()
flags.DEFINE_list("results", ["benchmarks/results/*.jsonl"], "JSON-lines files (globs allowed).", flag_values=FLAGS)
flags.DEFINE_string("output", "docs/throughput_vs_length.png", "PNG to write.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "Batch size to plot.", flag_values=FLAGS)
flags.DEFINE_integer("threads", 2, "Thread count to plot.", flag_values=FLAGS)
flags.DEFINE_list("paths", ["infer", "composed", "savedmodel", "torch"], "Paths to draw.", flag_values=FLAGS)

LABELS = {
    "infer": "TF model.infer_fn (float32)",
    "composed": "TF composed conditioning (float32)",
    "savedmodel": "TF SavedModel `synthesize`",
    "savedmodel_latent": "TF SavedModel `synthesize_from_latent`",
    "bfloat16": "TF bfloat16 mixed precision",
    "torch": "PyTorch reference (NVIDIA)",
}


def read_records(patterns: list[str]) -> list[dict]:
    """Every ``benchmark: synthesis`` record in the files matching ``patterns``, in file order."""
    records = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line.startswith("{"):
                        record = json.loads(line)
                        if record.get("benchmark") == "synthesis":
                            records.append(record)
    return records


def series(records: list[dict], batch: int, threads: int, paths: list[str]) -> dict:
    """model -> path -> sorted [(audio seconds, kHz)]."""
    points: dict = {}
    for record in records:
        if record["batch"] != batch or record["threads"] != threads:
            continue
        for path in paths:
            if path in record:
                points.setdefault(record["model"], {}).setdefault(path, {})[record["audio_seconds"]] = record[path][
                    "khz"
                ]
    return {model: {path: sorted(by.items()) for path, by in paths_.items()} for model, paths_ in points.items()}


def plot(data: dict, output: str, batch: int, threads: int, cpu: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in ("default", "small") if m in data] + [m for m in data if m not in ("default", "small")]
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        for path, points in data[model].items():
            xs, ys = zip(*points)
            style = "--" if path == "torch" else "-"
            ax.plot(xs, ys, style, marker="o", label=LABELS.get(path, path))
        ax.set_xscale("log")
        ax.set_xlabel("input length (seconds of audio)")
        ax.set_ylabel("kHz of audio per second")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{model} model, batch {batch}, {threads} threads")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Synthesis throughput vs input length ({cpu}, CPU)", fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main(argv):
    FLAGS(argv)
    records = read_records(FLAGS.results)
    data = series(records, FLAGS.batch, FLAGS.threads, FLAGS.paths)
    if not data:
        raise SystemExit(
            f"no synthesis records with batch {FLAGS.batch} and {FLAGS.threads} threads in {FLAGS.results}"
        )
    plot(data, FLAGS.output, FLAGS.batch, FLAGS.threads, records[-1].get("cpu", "unknown CPU"))
    print(json.dumps({"output": FLAGS.output, "points": data}))


if __name__ == "__main__":
    app.run(lambda _: main(sys.argv), flags_parser=lambda argv: flags.FLAGS(argv[:1]))
