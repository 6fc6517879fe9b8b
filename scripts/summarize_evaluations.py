"""Merges several ``evaluate.py`` reports into one markdown table of mean scores per set.

    python scripts/summarize_evaluations.py --evaluation=en=eval/en --evaluation=fr=eval/fr/evaluation.json \\
        [--output=eval/summary.md] [--note="model runs/ship, step 5500"]

Each ``--evaluation`` is ``LABEL=PATH``, PATH an ``evaluation.json`` or the directory that
holds it; the sets appear in the order given. For every set the table has one row per
system (the recordings themselves and Griffin-Lim where the report scored them, and WaveGlow)
with the number of files evaluated, their seconds of audio, and the mean log-mel distance,
MCD, PESQ-WB, STOI and DNSMOS SIG, BAK, OVRL and P.808 as ``evaluate.py`` averaged them (means
over the files where the metric could be computed; ``(n=k)`` marks a mean over fewer files
than the set has). Reports written before ``evaluate.py`` scored the recordings and DNSMOS
have no such row or columns: their cells read ``–``. The table is printed and, with
``--output``, written there with a JSON twin (``.json`` in place of ``.md``). See docs/evaluation.md.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

SYSTEMS = (("reference", "Recording"), ("waveglow", "WaveGlow"), ("griffin_lim", "Griffin-Lim"))
# What a report without a "systems" list scored (evaluate.py before it listed them).
LEGACY_SYSTEMS = ("waveglow", "griffin_lim")
# (key in evaluation.json, column label, decimals): the decimals of evaluate.py's own tables.
METRICS = (
    ("log_mel_distance", "log-mel dist.", 3),
    ("mcd", "MCD (dB)", 2),
    ("pesq_wb", "PESQ-WB", 2),
    ("stoi", "STOI", 3),
    ("dnsmos_sig", "DNSMOS SIG", 2),
    ("dnsmos_bak", "DNSMOS BAK", 2),
    ("dnsmos_ovrl", "DNSMOS OVRL", 2),
    ("dnsmos_p808", "DNSMOS P.808", 2),
)
# Metrics every report has; the others (DNSMOS) came later and may be absent from a report.
REQUIRED_METRICS = ("log_mel_distance", "mcd", "pesq_wb", "stoi")
# An absent metric's average (a report from before the metric existed).
_ABSENT = {"mean": None, "files": None}
JSON_NAME = "evaluation.json"

FLAGS = flags.FlagValues()
flags.DEFINE_multi_string(
    "evaluation", [], "LABEL=PATH: a set's label and its evaluation.json (or its directory).", flag_values=FLAGS
)
flags.DEFINE_string("output", None, "Markdown file to write (and a .json twin beside it).", flag_values=FLAGS)
flags.DEFINE_string("note", None, "A line printed above the table (e.g. the model and its step).", flag_values=FLAGS)


class SummaryError(ValueError):
    """A report that cannot be read or lacks what the table needs; the message names the file."""


def parse_spec(spec: str) -> tuple[str, str]:
    """Splits ``LABEL=PATH``.

    Args:
      spec: the flag value.

    Returns:
      ``(label, path)``.
    """
    label, sep, path = spec.partition("=")
    if not sep or not label.strip() or not path.strip():
        raise SummaryError(f"--evaluation={spec!r}: expected LABEL=PATH")
    return label.strip(), path.strip()


def load_evaluation(path: str) -> dict:
    """Reads one ``evaluate.py`` report.

    Args:
      path: an ``evaluation.json`` or a directory holding one.

    Returns:
      The report as a dict, checked to have ``num_files``, ``num_failed``,
      ``total_seconds_of_audio`` and ``average[system][metric]`` with ``mean`` and ``files``
      (for the DNSMOS metrics only where the report has them).
    """
    if os.path.isdir(path):
        path = os.path.join(path, JSON_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except FileNotFoundError:
        raise SummaryError(f"{path}: no such file (did the evaluation run?)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SummaryError(f"{path}: cannot read the report: {e}") from None
    try:
        for key in ("num_files", "num_failed", "total_seconds_of_audio"):
            float(result[key])
        for system, _ in report_systems(result):
            for name, _, _ in METRICS:
                averages = result["average"][system]
                if name not in REQUIRED_METRICS and name not in averages:
                    continue
                entry = averages[name]
                int(entry["files"])
                if entry["mean"] is not None:
                    float(entry["mean"])
    except (KeyError, TypeError, ValueError) as e:
        raise SummaryError(f"{path}: not an evaluate.py report (missing or bad {e})") from None
    result["_path"] = path
    return result


def report_systems(result: dict) -> list[tuple[str, str]]:
    """``(system, label)`` of each system a report scored, in table order (``--nogriffin_lim``: WaveGlow alone)."""
    scored = result.get("systems", LEGACY_SYSTEMS)
    return [(system, label) for system, label in SYSTEMS if system in scored]


def summarize(sets: list[tuple[str, dict]]) -> list[dict]:
    """One row per set and system.

    Args:
      sets: ``(label, report)`` pairs, in table order.

    Returns:
      Dicts with ``set``, ``system`` (label), ``files`` (evaluated), ``seconds``, and per metric
      ``{"mean": float or None, "files": int}`` (``files`` None: the report has no such metric).
    """
    rows = []
    for label, result in sets:
        evaluated = int(result["num_files"]) - int(result["num_failed"])
        for system, system_label in report_systems(result):
            row = {"set": label, "system": system_label, "files": evaluated}
            row["seconds"] = float(result["total_seconds_of_audio"])
            for name, _, _ in METRICS:
                entry = result["average"][system].get(name, _ABSENT)
                row[name] = {"mean": entry["mean"], "files": None if entry["files"] is None else int(entry["files"])}
            rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows of :func:`summarize` as a markdown table (set, files and seconds once per set)."""
    header = ["set", "files", "audio (s)", "system"] + [label for _, label, _ in METRICS]
    lines = ["| " + " | ".join(header) + " |", "| --- | ---: | ---: | --- |" + " ---: |" * len(METRICS)]
    previous = None
    for row in rows:
        first = row["set"] != previous
        previous = row["set"]
        cells = [row["set"], str(row["files"]), f"{row['seconds']:.1f}"] if first else ["", "", ""]
        cells.append(row["system"])
        for name, _, digits in METRICS:
            mean, count = row[name]["mean"], row[name]["files"]
            cell = "–" if mean is None else f"{mean:.{digits}f}"
            if count is not None and count != row["files"]:
                cell += f" (n={count})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(sets: list[tuple[str, dict]], note: str | None = None) -> str:
    """The whole markdown text: the note, the settings each set was measured with, the table."""
    lines = []
    if note:
        lines += [note, ""]
    for label, result in sets:
        lines.append(
            f"- {label}: `{result.get('reference_dir', '?')}`, model `{result.get('model', '?')}`, "
            f"sigma {result.get('sigma', '?')}, seed {result.get('seed', '?')}, "
            f"{result['num_failed']} of {result['num_files']} files not evaluated"
        )
    lines += ["", markdown_table(summarize(sets))]
    return "\n".join(lines)


def main(argv):
    """Reads the reports, prints the table and writes it with ``--output``."""
    if any(arg.startswith("-") for arg in argv[1:]):
        FLAGS.unparse_flags()
        argv = FLAGS(list(argv))
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.evaluation:
        sys.exit("summarize_evaluations: error: give at least one --evaluation=LABEL=PATH")
    try:
        sets = [(label, load_evaluation(path)) for label, path in map(parse_spec, FLAGS.evaluation)]
    except SummaryError as e:
        sys.exit(f"summarize_evaluations: error: {e}")
    text = report(sets, FLAGS.note)
    print(text)
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            f.write(text)
        twin = os.path.splitext(FLAGS.output)[0] + ".json"
        summary = {"note": FLAGS.note, "sets": {label: r["_path"] for label, r in sets}, "rows": summarize(sets)}
        with open(twin, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")


def _parse_flags(argv: list[str]) -> list[str]:
    if any(arg in ("-h", "--help", "-help", "--helpfull") for arg in argv[1:]):
        print(__doc__)
        print(FLAGS.get_help())
        sys.exit(0)
    try:
        rest = FLAGS(argv, known_only=True)
        return flags.FLAGS(rest)  # absl's own (--verbosity, ...); app.run wants them parsed
    except flags.Error as e:
        print(f"error: {e}\nPass --help for usage.", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    # Only json and absl: the table is made without loading the package (and TensorFlow).
    app.run(main, flags_parser=_parse_flags)
