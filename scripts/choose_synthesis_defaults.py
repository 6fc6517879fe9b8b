"""Chooses a model's recommended sigma and denoiser strength on held-out recordings.

    python scripts/choose_synthesis_defaults.py --model=MODEL --reference_dir=HELDOUT --output=OUT.json \\
        [--sigmas=0.4,0.5,0.6,0.7,0.8] [--denoiser_strengths=0,0.02,0.05,0.1] [--seed=0] \\
        [--stoi_tolerance=0.005] [--ovrl_tolerance=0.02] [--log_mel_ratio=1.5] [--write_params=MODEL_DIR]

1. Loads the model once and scores the copy synthesis of every recording under
   ``--reference_dir`` for every (sigma, denoiser strength) pair of the grid: one
   ``tfwaveglow.evaluation.evaluate_directory`` call per pair (WaveGlow alone, no audio
   written, the same ``--seed`` for every pair, so the pairs differ only in their settings).
2. After each pair, writes ``--output`` (atomically): the settings, fingerprints of the
   model (weights and its audio and model params) and of the recordings, the metric
   packages' versions, and per pair every metric's mean over the files with its count.
   A rerun skips the pairs already there, so an interrupted or extended grid goes on where
   it stopped; an output written for another model, recordings, seed or metric packages is
   an error rather than mixed in.
3. Picks the recommended pair with :func:`choose_pair` (naturalness and STOI together; the
   rule is in its docstring and in docs/demo.md), writes it to the output's ``choice``
   and prints a markdown table of the grid and the choice with its reason.
4. With ``--write_params=MODEL_DIR``: writes the chosen pair into ``MODEL_DIR/params.yaml``'s
   ``export`` section (``tfwaveglow.config.load_params`` / ``save_params``, atomic).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
from importlib import metadata

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
sys.path.insert(0, ROOT)

from absl import flags  # noqa: E402

from tfwaveglow import cli  # noqa: E402

DEFAULT_SIGMAS = ("0.4", "0.5", "0.6", "0.7", "0.8")
DEFAULT_STRENGTHS = ("0", "0.02", "0.05", "0.1")
DEFAULT_STOI_TOLERANCE = 0.005
DEFAULT_OVRL_TOLERANCE = 0.02
# A pair takes part only if its mean log-mel distance is at most this times the grid's lowest.
DEFAULT_LOG_MEL_RATIO = 1.5
# Ranked by the rule among the pairs within both tolerances (all higher is better) ...
RANKED = ("stoi", "pesq_wb", "dnsmos_ovrl")
# ... and, when no pair is within both, among all pairs.
FALLBACK_RANKED = ("stoi", "dnsmos_ovrl")
# The metrics every pair's entry holds: evaluation.METRICS (kept here so the rule needs no TensorFlow).
METRICS = ("log_mel_distance", "mcd", "pesq_wb", "stoi", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
LABELS = {"stoi": "STOI", "pesq_wb": "PESQ-WB", "dnsmos_ovrl": "OVRL", "log_mel_distance": "log-mel distance"}
# (key, column, decimals) of the printed table: STOI and OVRL one decimal finer than evaluate.py's
# tables, as the tolerances work at that precision.
TABLE = (
    ("stoi", "STOI ↑", 4),
    ("pesq_wb", "PESQ-WB ↑", 3),
    ("log_mel_distance", "log-mel ↓", 3),
    ("mcd", "MCD ↓", 2),
    ("dnsmos_ovrl", "OVRL ↑", 3),
    ("dnsmos_sig", "SIG ↑", 2),
    ("dnsmos_bak", "BAK ↑", 2),
)
# What must match for a rerun to add to an existing output.
HEADER_KEYS = ("model_fingerprint", "reference_fingerprint", "seed", "packages")
METRIC_PACKAGES = ("pesq", "pystoi", "speechmos", "onnxruntime")
# Float slack of the tolerance comparisons (0.780 - 0.005 is not exactly 0.775).
_SLACK = 1e-12

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "model", None, "Inference model dir (params.yaml + weights.npz), training run dir or checkpoint.", flag_values=FLAGS
)
flags.DEFINE_string("reference_dir", None, "Held-out recordings (.wav, .flac, .ogg, recursively).", flag_values=FLAGS)
flags.DEFINE_string("output", None, "JSON of every pair's mean scores and the choice (resumable).", flag_values=FLAGS)
flags.DEFINE_list("sigmas", list(DEFAULT_SIGMAS), "Latent standard deviations to try.", flag_values=FLAGS)
flags.DEFINE_list(
    "denoiser_strengths", list(DEFAULT_STRENGTHS), "Bias denoiser strengths to try (0: none).", flag_values=FLAGS
)
flags.DEFINE_integer("seed", 0, "Seed of every file's latent, the same for every pair.", flag_values=FLAGS)
flags.DEFINE_float(
    "stoi_tolerance", DEFAULT_STOI_TOLERANCE, "A pair is eligible within this of the best mean STOI.", flag_values=FLAGS
)
flags.DEFINE_float(
    "ovrl_tolerance",
    DEFAULT_OVRL_TOLERANCE,
    "... and within this of the best mean DNSMOS OVRL.",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "log_mel_ratio",
    DEFAULT_LOG_MEL_RATIO,
    "A pair takes part only with a mean log-mel distance at most this times the grid's lowest.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "write_params", None, "Model directory whose params.yaml export section gets the chosen pair.", flag_values=FLAGS
)
flags.mark_flags_as_required(["model", "reference_dir", "output"], flag_values=FLAGS)


class ChooseError(RuntimeError):
    """The grid cannot be run or no pair can be chosen; the message says why."""


def parse_grid(values, name: str) -> tuple[float, ...]:
    """``["0.4", "0.5"]`` (a flag's list) -> ``(0.4, 0.5)``: finite, >= 0, no repeats, at least one."""
    grid = []
    for text in values:
        try:
            value = float(text)
        except ValueError:
            raise ChooseError(f"--{name}: {text!r} is not a number") from None
        if not (math.isfinite(value) and value >= 0):
            raise ChooseError(f"--{name}: {text!r} must be finite and >= 0")
        if value in grid:
            raise ChooseError(f"--{name}: {value:g} is given twice")
        grid.append(value)
    if not grid:
        raise ChooseError(f"--{name}: no values")
    return tuple(grid)


def pair_key(entry) -> tuple[float, float]:
    """``(sigma, denoiser_strength)`` of a result entry or a choice."""
    return float(entry["sigma"]), float(entry["denoiser_strength"])


def pair_entry(result: dict) -> dict:
    """A pair's entry in the output, from its ``evaluate_directory`` report: settings, counts, means."""
    average = result["average"]["waveglow"]
    return {
        "sigma": result["sigma"],
        "denoiser_strength": result["denoiser_strength"],
        "num_files": result["num_files"],
        "num_failed": result["num_failed"],
        "total_seconds_of_audio": result["total_seconds_of_audio"],
        "elapsed_seconds": result["elapsed_seconds"],
        "mean": {name: average[name]["mean"] for name in METRICS},
        "files": {name: average[name]["files"] for name in METRICS},
    }


def ranks(values) -> list[float]:
    """Ranks of ``values``, 1 for the highest; tied values share the mean of their places; None ranks last.

    ``[0.7, 0.9, 0.7, None]`` -> ``[2.5, 1.0, 2.5, 4.0]``.
    """
    order = sorted(range(len(values)), key=lambda i: (values[i] is None, -(values[i] or 0.0)))
    result = [0.0] * len(values)
    place = 0
    while place < len(order):
        end = place
        while end + 1 < len(order) and values[order[end + 1]] == values[order[place]]:
            end += 1
        for i in order[place : end + 1]:
            result[i] = (place + end) / 2 + 1
        place = end + 1
    return result


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _pair_text(entry) -> str:
    return f"sigma {entry['sigma']:g}, denoiser strength {entry['denoiser_strength']:g}"


def _log_mel(entry) -> float:
    value = entry["mean"].get("log_mel_distance")
    return math.inf if value is None else value


def choose_pair(
    results: list[dict],
    stoi_tolerance: float = DEFAULT_STOI_TOLERANCE,
    ovrl_tolerance: float = DEFAULT_OVRL_TOLERANCE,
    log_mel_ratio: float = DEFAULT_LOG_MEL_RATIO,
) -> dict:
    """The recommended (sigma, denoiser strength) of a grid, by naturalness and STOI together.

    The rule:

    1. Only pairs with a mean STOI and a mean DNSMOS OVRL take part (the others are listed
       under ``excluded``), and of those only the pairs whose mean log-mel distance is at most
       ``log_mel_ratio`` times the lowest of the grid (the others, e.g. a denoiser that empties
       the quiet bins and so multiplies the spectral distance, are listed under
       ``over_log_mel``): spectral fidelity is not traded for the measures below. A pair without
       a log-mel distance is not held back by this step.
    2. **Eligible** are the pairs whose STOI is within ``stoi_tolerance`` of the best STOI
       *and* whose OVRL is within ``ovrl_tolerance`` of the best OVRL of the pairs taking part: neither
       measure is given up for the other beyond its tolerance.
    3. Among the eligible pairs, each of STOI, PESQ-WB and OVRL ranks them (1 = best; tied values
       share the mean of their places; a missing PESQ-WB ranks last); the pair with the lowest
       sum of its three ranks is chosen. Equal sums: the lower mean log-mel distance wins, then the
       smaller denoiser strength, then the smaller sigma.
    4. **Fallback**: when no pair is within both tolerances (the best-STOI pairs sound clearly
       worse to DNSMOS and the most natural ones are clearly less intelligible), all pairs are
       ranked by STOI and OVRL alone and the lowest sum of the two ranks wins, with the same
       tie-breaks; ``fallback`` is True and the reason says so.

    A rank sum counts places, not sizes: a pair cannot buy a large loss on one measure with a
    large gain on another; the tolerances bound how far from the best either may be.

    Args:
      results: one entry per pair: ``sigma``, ``denoiser_strength`` and ``mean``, a dict of the
        metrics' means (``stoi``, ``pesq_wb``, ``dnsmos_ovrl``, ``log_mel_distance``; None where
        not computed).
      stoi_tolerance: how far below the best mean STOI an eligible pair may be.
      ovrl_tolerance: how far below the best mean DNSMOS OVRL an eligible pair may be.
      log_mel_ratio: how many times the grid's lowest mean log-mel distance a pair may have.

    Returns:
      ``{"sigma", "denoiser_strength", "fallback", "ranked_by", "best_stoi", "best_ovrl",
      "stoi_tolerance", "ovrl_tolerance", "eligible" [[sigma, strength], ...],
      "ranking" [{"sigma", "denoiser_strength", "ranks", "rank_sum"}, best first],
      "excluded" [[sigma, strength], ...], "log_mel_ratio", "over_log_mel" [[sigma, strength], ...],
      "reason"}``.

    Raises:
      ChooseError: no pair has both a mean STOI and a mean OVRL, a tolerance is negative or the
        log-mel ratio is under 1.
    """
    if not (stoi_tolerance >= 0 and ovrl_tolerance >= 0):
        raise ChooseError(f"the tolerances must be >= 0, got {stoi_tolerance} and {ovrl_tolerance}")
    if not log_mel_ratio >= 1:
        raise ChooseError(f"the log-mel ratio must be >= 1, got {log_mel_ratio}")
    scored = [r for r in results if r["mean"].get("stoi") is not None and r["mean"].get("dnsmos_ovrl") is not None]
    excluded = [list(pair_key(r)) for r in results if r not in scored]
    if not scored:
        raise ChooseError(
            "no pair has both a mean STOI and a mean DNSMOS OVRL (they need the `eval` extra and recordings of at "
            "least 1 s): nothing to choose from"
        )
    distances = [r["mean"].get("log_mel_distance") for r in scored]
    lowest = min((d for d in distances if d is not None), default=None)
    over = [r for r, d in zip(scored, distances) if lowest is not None and d is not None and d > log_mel_ratio * lowest]
    scored = [r for r in scored if r not in over]
    best_stoi = max(r["mean"]["stoi"] for r in scored)
    best_ovrl = max(r["mean"]["dnsmos_ovrl"] for r in scored)
    eligible = [
        r
        for r in scored
        if r["mean"]["stoi"] >= best_stoi - stoi_tolerance - _SLACK
        and r["mean"]["dnsmos_ovrl"] >= best_ovrl - ovrl_tolerance - _SLACK
    ]
    fallback = not eligible
    pool, measures = (scored, FALLBACK_RANKED) if fallback else (eligible, RANKED)
    per_measure = {name: ranks([r["mean"].get(name) for r in pool]) for name in measures}
    ranking = []
    for i, entry in enumerate(pool):
        pair_ranks = {name: per_measure[name][i] for name in measures}
        ranking.append({"entry": entry, "ranks": pair_ranks, "rank_sum": sum(pair_ranks.values())})
    ranking.sort(
        key=lambda row: (
            row["rank_sum"],
            _log_mel(row["entry"]),
            row["entry"]["denoiser_strength"],
            row["entry"]["sigma"],
        )
    )
    chosen = ranking[0]["entry"]
    best_stoi_entry = next(r for r in scored if r["mean"]["stoi"] == best_stoi)
    best_ovrl_entry = next(r for r in scored if r["mean"]["dnsmos_ovrl"] == best_ovrl)
    bests = (
        f"the best STOI is {best_stoi:.4f} ({_pair_text(best_stoi_entry)}), the best DNSMOS OVRL "
        f"{best_ovrl:.3f} ({_pair_text(best_ovrl_entry)})"
    )
    labels = ", ".join(LABELS[name] for name in measures)
    if fallback:
        reason = (
            f"fallback: no pair is within {stoi_tolerance:g} of the best STOI and {ovrl_tolerance:g} of the best "
            f"OVRL at once ({bests}), so STOI and naturalness disagree on this grid; of all {len(pool)} pairs, "
            f"{_pair_text(chosen)} has the lowest rank sum over {labels} ({ranking[0]['rank_sum']:g})"
        )
    else:
        reason = (
            f"{bests}; {len(eligible)} of {len(scored)} pairs {'is' if len(eligible) == 1 else 'are'} within "
            f"{stoi_tolerance:g} of that STOI and "
            f"{ovrl_tolerance:g} of that OVRL, and of those {_pair_text(chosen)} has the lowest rank sum over "
            f"{labels} ({ranking[0]['rank_sum']:g} of at best {len(measures)})"
        )
    over_text = ""
    if over:
        over_text = (
            f"; {len(over)} pair{'s' if len(over) > 1 else ''} took no part, with a log-mel distance over "
            f"{log_mel_ratio:g} times the grid's lowest ({lowest:.3f}): "
            + "; ".join(f"{_pair_text(r)}, {_log_mel(r):.3f}" for r in over)
        )
    tied = [row["entry"] for row in ranking[1:] if row["rank_sum"] == ranking[0]["rank_sum"]]
    if tied:
        others = "; ".join(f"{_pair_text(e)}, {_log_mel(e):.3f}" for e in tied)
        reason += (
            f", tied with {len(tied)} other pair{'s' if len(tied) > 1 else ''} and ahead on the lower log-mel "
            f"distance ({_log_mel(chosen):.3f}; {others})"
        )
        if any(_log_mel(e) == _log_mel(chosen) for e in tied):
            reason += ", then on the smaller denoiser strength and sigma"
    return {
        "sigma": chosen["sigma"],
        "denoiser_strength": chosen["denoiser_strength"],
        "fallback": fallback,
        "ranked_by": list(measures),
        "best_stoi": best_stoi,
        "best_ovrl": best_ovrl,
        "stoi_tolerance": stoi_tolerance,
        "ovrl_tolerance": ovrl_tolerance,
        "eligible": [list(pair_key(r)) for r in eligible],
        "ranking": [
            {
                **dict(zip(("sigma", "denoiser_strength"), pair_key(row["entry"]))),
                **{k: row[k] for k in ("ranks", "rank_sum")},
            }
            for row in ranking
        ],
        "excluded": excluded,
        "log_mel_ratio": log_mel_ratio,
        "over_log_mel": [list(pair_key(r)) for r in over],
        "reason": reason + over_text + ".",
    }


def _cell(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(results: list[dict], choice: dict | None) -> str:
    """The grid as markdown: one row per pair (in the order given), the means, eligibility and rank sum."""
    eligible = {tuple(p) for p in choice["eligible"]} if choice else set()
    over = {tuple(p) for p in choice.get("over_log_mel", ())} if choice else set()
    rank_sums = {pair_key(row): row["rank_sum"] for row in choice["ranking"]} if choice else {}
    chosen = pair_key(choice) if choice else None
    header = ["sigma", "denoiser"] + [label for _, label, _ in TABLE] + ["within both tol.", "rank sum"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---:"] * len(header)) + " |"]
    for entry in results:
        key = pair_key(entry)
        settings = [f"{entry['sigma']:g}", f"{entry['denoiser_strength']:g}"]
        if key == chosen:
            settings = [f"**{cell}**" for cell in settings]
        cells = settings + [_cell(entry["mean"].get(name), digits) for name, _, digits in TABLE]
        cells.append("yes" if key in eligible else ("log-mel" if key in over else "no"))
        cells.append(f"{rank_sums[key]:g}" if key in rank_sums else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choice_text(choice: dict) -> str:
    """The choice in one paragraph: the pair, the path of the rule taken, and why."""
    path = "FALLBACK (no pair within both tolerances)" if choice["fallback"] else "within both tolerances"
    return (
        f"Chosen: sigma {choice['sigma']:g}, denoiser strength {choice['denoiser_strength']:g} "
        f"[{path}]. Reason: {choice['reason']}"
    )


def model_fingerprint(model, params) -> str:
    """sha256 of the model's weights and its ``audio`` and ``model`` params (not ``export``, which this sets)."""
    digest = hashlib.sha256()
    config = {section: params.to_dict()[section] for section in ("audio", "model")}
    digest.update(json.dumps(config, sort_keys=True).encode())
    for variable in model.weights:
        digest.update(variable.name.encode())
        digest.update(variable.numpy().tobytes())
    return digest.hexdigest()


def reference_fingerprint(reference_dir: str, rel_paths: list[str]) -> str:
    """sha256 of the recordings: each file's path under the directory and its bytes."""
    digest = hashlib.sha256()
    for rel_path in rel_paths:
        digest.update(rel_path.encode() + b"\0")
        with open(os.path.join(reference_dir, rel_path), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_output(path: str, header: dict) -> list[dict]:
    """The pair entries already in ``path`` (none if it does not exist), after checking its header.

    Raises:
      ChooseError: the file is not such an output, or was written for another model,
        recordings, seed or metric package versions.
    """
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ChooseError(f"{path}: cannot read it as JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ChooseError(f"{path}: not an output of choose_synthesis_defaults.py (no results list)")
    for key in HEADER_KEYS:
        if data.get(key) != header[key]:
            raise ChooseError(
                f"{path} holds results for another {key.replace('_', ' ')} ({data.get(key)!r}, now {header[key]!r}); "
                "pass another --output or remove that file"
            )
    return data["results"]


def write_output(path: str, data: dict) -> None:
    """Writes the output JSON atomically (a temporary file beside it, then a rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_export(model_dir: str, sigma: float, denoiser_strength: float) -> str:
    """Sets ``export.sigma`` and ``export.denoiser_strength`` of ``model_dir/params.yaml``; returns its path.

    The file is read with ``tfwaveglow.config.load_params`` and written back whole with
    ``save_params`` (atomically; every key at its resolved value, only the two export keys changed).
    """
    from tfwaveglow.config import load_params, save_params
    from tfwaveglow.model_io import PARAMS_FILE

    path = os.path.join(model_dir, PARAMS_FILE)
    if not os.path.isfile(path):
        raise ChooseError(f"--write_params: {model_dir} holds no {PARAMS_FILE}")
    params = load_params(path)
    export = dataclasses.replace(params.export, sigma=float(sigma), denoiser_strength=float(denoiser_strength))
    save_params(dataclasses.replace(params, export=export).validate(), path)
    return path


def choose(
    model_path: str,
    reference_dir: str,
    output: str,
    *,
    sigmas: tuple[float, ...],
    strengths: tuple[float, ...],
    seed: int = 0,
    stoi_tolerance: float = DEFAULT_STOI_TOLERANCE,
    ovrl_tolerance: float = DEFAULT_OVRL_TOLERANCE,
    log_mel_ratio: float = DEFAULT_LOG_MEL_RATIO,
    log=print,
) -> tuple[dict, list[dict]]:
    """Steps 1-3 of the module docstring.

    Returns:
      ``(data, in_grid)``: what was written to ``output`` (``choice`` included) and the grid's
      pair entries in grid order.
    """
    from tfwaveglow import evaluation

    rel_paths = evaluation.copy_synthesis_inputs(
        reference_dir, sigma=sigmas[0], griffin_lim_iterations=0, role="reference"
    )
    model, params = evaluation.load_model_and_params(model_path)
    header = {
        "model": os.fspath(model_path),
        "model_fingerprint": model_fingerprint(model, params),
        "reference_dir": os.fspath(reference_dir),
        "reference_files": rel_paths,
        "reference_fingerprint": reference_fingerprint(reference_dir, rel_paths),
        "seed": int(seed),
        "packages": {name: _package_version(name) for name in METRIC_PACKAGES},
    }
    results = read_output(output, header)
    done = {pair_key(entry) for entry in results}
    grid = [(sigma, strength) for sigma in sigmas for strength in strengths]
    todo = [pair for pair in grid if pair not in done]
    log(
        f"{_count(len(grid), 'pair')} on {_count(len(rel_paths), 'recording')}: {len(grid) - len(todo)} already "
        f"in {output}, {len(todo)} to evaluate"
    )
    data = {**header, "results": results}
    for sigma, strength in todo:
        result = evaluation.evaluate_directory(
            model,
            params,
            reference_dir,
            sigma=sigma,
            denoiser_strength=strength,
            seed=seed,
            save_audio=False,
            model_path=os.fspath(model_path),
            with_griffin_lim=False,
        )
        entry = pair_entry(result)
        results.append(entry)
        data.pop("choice", None)  # a choice from an earlier run covers fewer pairs
        write_output(output, data)
        mean = entry["mean"]
        log(
            f"  sigma {sigma:g}, denoiser strength {strength:g}: STOI {_cell(mean['stoi'], 4)}, "
            f"PESQ-WB {_cell(mean['pesq_wb'], 3)}, OVRL {_cell(mean['dnsmos_ovrl'], 3)} "
            f"({entry['elapsed_seconds']:.0f} s)"
        )
    by_pair = {pair_key(entry): entry for entry in results}
    in_grid = [by_pair[pair] for pair in grid]
    choice = choose_pair(in_grid, stoi_tolerance, ovrl_tolerance, log_mel_ratio)
    data["choice"] = {**choice, "grid": {"sigmas": list(sigmas), "denoiser_strengths": list(strengths)}}
    write_output(output, data)
    return data, in_grid


def main(argv) -> None:
    """Runs the grid and prints the table and the choice; ``argv`` may carry the flags when called from Python."""
    cli.parse_argv(FLAGS, argv)
    from tfwaveglow import evaluation

    with cli.exit_on_error("choose_synthesis_defaults", ChooseError, evaluation.EvaluationError):
        sigmas = parse_grid(FLAGS.sigmas, "sigmas")
        strengths = parse_grid(FLAGS.denoiser_strengths, "denoiser_strengths")
        data, in_grid = choose(
            FLAGS.model,
            FLAGS.reference_dir,
            FLAGS.output,
            sigmas=sigmas,
            strengths=strengths,
            seed=FLAGS.seed,
            stoi_tolerance=FLAGS.stoi_tolerance,
            ovrl_tolerance=FLAGS.ovrl_tolerance,
            log_mel_ratio=FLAGS.log_mel_ratio,
            log=lambda line: print(line, file=sys.stderr),
        )
        choice = data["choice"]
        others = len(data["results"]) - len(in_grid)
        note = f" ({others} other pairs in {FLAGS.output} are outside this grid and not considered)" if others else ""
        print(
            f"Copy synthesis of {_count(len(data['reference_files']), 'recording')} in `{FLAGS.reference_dir}` "
            f"by `{FLAGS.model}`, "
            f"seed {data['seed']}; means over the files{note}. Taking part: a log-mel distance at most "
            f"{choice['log_mel_ratio']:g} times the lowest; eligible among those: STOI within "
            f"{choice['stoi_tolerance']:g} of the best and DNSMOS OVRL within {choice['ovrl_tolerance']:g} "
            "of the best.\n"
        )
        print(markdown_table(in_grid, choice))
        print()
        print(choice_text(choice))
        if FLAGS.write_params:
            path = write_export(FLAGS.write_params, choice["sigma"], choice["denoiser_strength"])
            print(
                f"\nWrote export.sigma {choice['sigma']:g} and export.denoiser_strength "
                f"{choice['denoiser_strength']:g} to {path}."
            )
            if os.path.abspath(FLAGS.write_params) != os.path.abspath(FLAGS.model):
                print(f"Note: {FLAGS.write_params} is not the evaluated model ({FLAGS.model}).")
            if os.path.isfile(os.path.join(FLAGS.write_params, "MODEL_CARD.md")):
                print(
                    "Note: its MODEL_CARD.md and samples still show the settings they were made with. Re-shipping "
                    "with scripts/ship_model.py sets export.denoiser_strength from its --denoiser_strength (default "
                    "0.1) and keeps the training run's export.sigma: pass the chosen strength, set the sigma there."
                )


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
