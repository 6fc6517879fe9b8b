"""Markdown tables from the benchmarks' JSON lines (synthesis, training step, dilated conv).

    python benchmarks/results_table.py benchmarks/results/*.jsonl

Prints one table per benchmark kind, one row per measurement and path, as
docs/benchmarks.md shows them. Figures are copied from the records, rounded.
"""

from __future__ import annotations

import json
import sys

SYNTHESIS_PATHS = ("torch", "infer", "composed", "bfloat16", "savedmodel", "savedmodel_latent")


def read(paths: list[str]) -> list[dict]:
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.strip().startswith("{")]
    return records


def load(record: dict) -> str:
    return f"{record['load_1min']:.1f} → {record.get('load_1min_after', record['load_1min']):.1f}"


def synthesis_rows(records: list[dict]) -> list[str]:
    rows = [
        "| model | audio | batch | threads | path | median s | CPU s | kHz | RTF | × PyTorch "
        "| peak fraction executed / nominal | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        for path in SYNTHESIS_PATHS:
            if path not in r:
                continue
            e = r[path]
            ratio = f"**{e['speedup_vs_torch']:.2f}**" if "speedup_vs_torch" in e else "1.00"
            fraction = (
                f"{e['peak_fraction_executed']:.2f} / {e['peak_fraction_nominal']:.2f}"
                if "peak_fraction_nominal" in e
                else "–"
            )
            rows.append(
                f"| {r['model']} | {r['audio_seconds']:g} s | {r['batch']} | {r['threads']} | {path} | "
                f"{e['median_s']:.2f} | {e['cpu_median_s']:.2f} | {e['khz']:.2f} | {e['rtf']:.3f} | {ratio} | "
                f"{fraction} | {load(r)} |"
            )
    return rows


def training_rows(records: list[dict]) -> list[str]:
    rows = [
        "| model | batch × segment | threads | step | median s | CPU s | segments/s | kHz | × PyTorch | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        for name in [k for k, v in r.items() if k.startswith("tf_") and isinstance(v, dict)] + ["torch"]:
            if name not in r:
                continue
            e = r[name]
            ratio = f"**{e['speedup_vs_torch']:.2f}**" if "speedup_vs_torch" in e else "1.00"
            rows.append(
                f"| {r['model']} | {r['batch']} × {r['segment']} | {r['threads']} | {name} | {e['median_s']:.2f} | "
                f"{e['cpu_median_s']:.2f} | {e['segments_per_s']:.3f} | {e['khz']:.2f} | {ratio} | {load(r)} |"
            )
    return rows


def dilated_rows(records: list[dict]) -> list[str]:
    names = list(records[0]["ms"])
    rows = [
        "| direction | dilation | " + " | ".join(f"{n} ms" for n in names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for r in sorted(records, key=lambda r: (r["direction"] != "forward", r["dilation"])):
        best = min(r["ms"].values())
        cells = [f"**{r['ms'][n]:.1f}**" if r["ms"][n] == best else f"{r['ms'][n]:.1f}" for n in names]
        rows.append(f"| {r['direction']} | {r['dilation']} | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str]) -> None:
    records = read(argv[1:])
    by_kind = {}
    for r in records:
        by_kind.setdefault(r["benchmark"], []).append(r)
    for kind, render in (
        ("synthesis", synthesis_rows),
        ("training_step", training_rows),
        ("dilated_conv", dilated_rows),
    ):
        if kind in by_kind:
            print(f"\n{kind}:\n")
            print("\n".join(render(by_kind[kind])))


if __name__ == "__main__":
    main(sys.argv)
