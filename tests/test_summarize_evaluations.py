"""scripts/summarize_evaluations.py against hand-written reports and hand-written tables."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_ROOT, "scripts", "summarize_evaluations.py")


@pytest.fixture(scope="module")
def summarize():
    spec = importlib.util.spec_from_file_location("summarize_evaluations", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES = ("log_mel_distance", "mcd", "pesq_wb", "stoi")
NATURALNESS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
# The four DNSMOS cells of a report written before evaluate.py computed DNSMOS.
NO_DNSMOS = " – | – | – | – |"


def _report(num_files, num_failed, seconds, waveglow, griffin_lim):
    """An evaluate.py report (without DNSMOS) with the given means; ``(mean, files)`` per metric and system."""
    names = NAMES
    return {
        "reference_dir": "refs",
        "model": "m",
        "sigma": 0.6,
        "seed": 0,
        "num_files": num_files,
        "num_failed": num_failed,
        "total_seconds_of_audio": seconds,
        "files": [],
        "average": {
            "waveglow": {n: {"mean": m, "files": k} for n, (m, k) in zip(names, waveglow)},
            "griffin_lim": {n: {"mean": m, "files": k} for n, (m, k) in zip(names, griffin_lim)},
        },
    }


def _write(directory, name, result):
    path = directory / name
    path.mkdir()
    (path / "evaluation.json").write_text(json.dumps(result))
    return str(path)


def test_table_from_two_reports(summarize, tmp_path):
    # Set "en": 3 files, none failed; WaveGlow's PESQ came out on 2 of them only.
    en = _report(
        3,
        0,
        9.0,
        [(0.41234, 3), (7.9049, 3), (3.1, 2), (0.9504, 3)],
        [(0.2, 3), (6.875, 3), (3.545, 3), (0.925, 3)],
    )
    # Set "heldout": 2 files of which 1 failed; Griffin-Lim's STOI never computed.
    heldout = _report(
        2,
        1,
        1.25,
        [(1.0, 1), (10.0, 1), (1.5, 1), (0.5, 1)],
        [(0.1996, 1), (5.996, 1), (3.214, 1), (None, 0)],
    )
    out = tmp_path / "summary" / "table.md"
    argv = [
        "summarize_evaluations",
        f"--evaluation=en={_write(tmp_path, 'en', en)}",
        f"--evaluation=heldout={_write(tmp_path, 'heldout', heldout)}/evaluation.json",
        f"--output={out}",
        "--note=model X, step 5",
    ]
    summarize.main(argv)
    text = out.read_text()
    expected_table = (
        "| set | files | audio (s) | system | log-mel dist. | MCD (dB) | PESQ-WB | STOI "
        "| DNSMOS SIG | DNSMOS BAK | DNSMOS OVRL | DNSMOS P.808 |\n"
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        "| en | 3 | 9.0 | WaveGlow | 0.412 | 7.90 | 3.10 (n=2) | 0.950 |" + NO_DNSMOS + "\n"
        "|  |  |  | Griffin-Lim | 0.200 | 6.88 | 3.54 | 0.925 |" + NO_DNSMOS + "\n"
        "| heldout | 1 | 1.2 | WaveGlow | 1.000 | 10.00 | 1.50 | 0.500 |" + NO_DNSMOS + "\n"
        "|  |  |  | Griffin-Lim | 0.200 | 6.00 | 3.21 | – (n=0) |" + NO_DNSMOS + "\n"
    )
    assert text.startswith("model X, step 5\n")
    assert text.endswith(expected_table)
    assert "- heldout: `refs`, model `m`, sigma 0.6, seed 0, 1 of 2 files not evaluated" in text

    twin = json.loads((tmp_path / "summary" / "table.json").read_text())
    assert [(r["set"], r["system"], r["files"]) for r in twin["rows"]] == [
        ("en", "WaveGlow", 3),
        ("en", "Griffin-Lim", 3),
        ("heldout", "WaveGlow", 1),
        ("heldout", "Griffin-Lim", 1),
    ]
    assert twin["rows"][0]["pesq_wb"] == {"mean": 3.1, "files": 2}
    assert twin["rows"][3]["stoi"] == {"mean": None, "files": 0}
    assert twin["rows"][3]["dnsmos_ovrl"] == {"mean": None, "files": None}  # not in the report


def test_bad_reports_name_the_file(summarize, tmp_path):
    with pytest.raises(SystemExit, match="missing.*no such file"):
        summarize.main(["s", f"--evaluation=a={tmp_path / 'missing'}"])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit, match="broken.json: cannot read"):
        summarize.main(["s", f"--evaluation=a={broken}"])
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"num_files": 1, "num_failed": 0, "total_seconds_of_audio": 1.0}))
    with pytest.raises(SystemExit, match="partial.json: not an evaluate.py report"):
        summarize.main(["s", f"--evaluation=a={partial}"])
    with pytest.raises(SystemExit, match="expected LABEL=PATH"):
        summarize.main(["s", f"--evaluation={partial}"])


def test_command_line(tmp_path):
    report = _report(1, 0, 2.0, [(0.5, 1), (8.0, 1), (2.0, 1), (0.9, 1)], [(0.25, 1), (6.0, 1), (3.0, 1), (0.95, 1)])
    path = _write(tmp_path, "it", report)
    done = subprocess.run(
        [sys.executable, _SCRIPT, f"--evaluation=Italian, male={path}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "| Italian, male | 1 | 2.0 | WaveGlow | 0.500 | 8.00 | 2.00 | 0.900 |" + NO_DNSMOS + "\n" in done.stdout
    assert "|  |  |  | Griffin-Lim | 0.250 | 6.00 | 3.00 | 0.950 |" + NO_DNSMOS + "\n" in done.stdout


def test_report_without_griffin_lim(summarize, tmp_path):
    # evaluate.py --nogriffin_lim: "systems" names WaveGlow alone and the averages hold only it.
    report = _report(2, 0, 4.0, [(0.5, 2), (8.0, 2), (2.0, 2), (0.9, 2)], [(0.25, 2), (6.0, 2), (3.0, 2), (0.95, 2)])
    del report["average"]["griffin_lim"]
    report["systems"] = ["waveglow"]
    path = _write(tmp_path, "alone", report)
    table = summarize.markdown_table(summarize.summarize([("alone", summarize.load_evaluation(path))]))
    assert table.splitlines()[2:] == ["| alone | 2 | 4.0 | WaveGlow | 0.500 | 8.00 | 2.00 | 0.900 |" + NO_DNSMOS]


def test_report_with_the_recordings_and_dnsmos(summarize, tmp_path):
    """evaluate.py today: a Recording row first, and the DNSMOS columns filled."""
    report = _report(3, 1, 6.5, [(0.8, 2), (30.0, 2), (1.6, 2), (0.75, 2)], [(0.2, 2), (6.0, 2), (3.2, 2), (0.93, 2)])
    report["systems"] = ["reference", "waveglow", "griffin_lim"]
    report["average"]["reference"] = {n: {"mean": m, "files": 2} for n, m in zip(NAMES, (0.0, 0.0, 4.644, 1.0))}
    dnsmos = {
        "reference": (3.123, 2.875, 2.345, 3.01),
        "waveglow": (1.6, 1.55, 1.3, 2.5),
        "griffin_lim": (2.5, 2.5, 1.95, 2.625),
    }
    for system, means in dnsmos.items():
        counts = (2, 2, 2, 1) if system == "waveglow" else (2, 2, 2, 2)
        report["average"][system].update({n: {"mean": m, "files": k} for n, m, k in zip(NATURALNESS, means, counts)})
    path = _write(tmp_path, "with_dnsmos", report)
    table = summarize.markdown_table(summarize.summarize([("cs", summarize.load_evaluation(path))]))
    assert table.splitlines()[2:] == [
        "| cs | 2 | 6.5 | Recording | 0.000 | 0.00 | 4.64 | 1.000 | 3.12 | 2.88 | 2.35 | 3.01 |",
        "|  |  |  | WaveGlow | 0.800 | 30.00 | 1.60 | 0.750 | 1.60 | 1.55 | 1.30 | 2.50 (n=1) |",
        "|  |  |  | Griffin-Lim | 0.200 | 6.00 | 3.20 | 0.930 | 2.50 | 2.50 | 1.95 | 2.62 |",
    ]
    # A DNSMOS entry that is there must be well formed.
    report["average"]["griffin_lim"]["dnsmos_bak"] = {"mean": "high", "files": 2}
    with pytest.raises(summarize.SummaryError, match="not an evaluate.py report"):
        summarize.load_evaluation(_write(tmp_path, "broken_dnsmos", report))
