"""Ships a training run as the bundled model: float16 weights, a model card, listenable samples.

    python scripts/ship_model.py --run_dir=runs/ship [--output_dir=models/fishfillets_cs] \\
        [--checkpoint=PREFIX] [--samples_dir=samples] [--examples_dir=examples] \\
        [--sigma=S] [--denoiser_strength=0.1] [--evaluation_md=FILE] \\
        [--corpus=fishfillets|fishfillets_tuxpaint] [--reproduce_params=CONFIG ...]

1. Loads the run's latest checkpoint (or ``--checkpoint``) with weight norm folded
   and saves it with :func:`tfwaveglow.save_model` in float16 (``params.yaml`` +
   ``weights.npz``) with ``training_state.json`` (the checkpoint's step and training
   clocks, for ``train.py --init_from=... --continue_run``); the run's config is kept,
   except ``export.denoiser_strength``, which is set to ``--denoiser_strength``, and,
   given ``--sigma``, ``export.sigma`` (e.g. the choice of
   ``scripts/choose_synthesis_defaults.py``), so that ``synthesize.py`` and exported
   SavedModels use them by default. Fails if the directory exceeds ``--max_megabytes``.
2. Measures what float16 storage costs: the float16 model against the float32
   checkpoint on the first example, under one latent (SNR in dB).
3. Runs ``python -m tfwaveglow.demo`` with the shipped model on ``--examples_dir``
   into ``--samples_dir`` (replacing an earlier demo output there) and writes
   ``README.md`` there.
4. Writes ``MODEL_CARD.md`` (text: ``scripts/model_card.py``): data (``--corpus``), licence,
   config, steps, training and validation NLL and hours from the run's ``metrics.csv``, the
   example scores, the lineage and how to reproduce it. The lineage follows the runs'
   ``warm_start.json`` records back (:func:`lineage`): a run warm-started from another
   run's ``inference/`` weights is reproduced after that run, back to the first run or to
   the model the first one started from (taken out of git when it is a committed model).
   Within a run, one ``train.py`` call per stage of its ``params_changes.jsonl`` (config
   changes on resume are replayed at their steps); a run carried on from a shipped model,
   ``train.py --init_from --continue_run``, is reproduced through that model: train to its
   step, ship it, carry it on. The hours are each run's training clock, which goes on
   across resumes and ``--continue_run``. The evaluation section is taken from
   ``--evaluation_md`` (e.g. the ``evaluation.md`` written by ``evaluate.py``), else kept
   from the card being replaced, else left as a placeholder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
sys.path.insert(0, ROOT)
sys.path.insert(0, SCRIPTS)

import model_card  # noqa: E402
from absl import flags  # noqa: E402
from model_card import CORPORA, EVALUATION_BEGIN, EVALUATION_END, FISH_FILLETS, Origin, Run  # noqa: E402

from tfwaveglow import cli  # noqa: E402

# The config files (layered in order) the card's reproduction command starts from by default.
REPRODUCE_CONFIGS = ("configs/cpu_convergence.yaml",)

FLAGS = flags.FlagValues()
flags.DEFINE_string("run_dir", None, "Training run dir (params.yaml, checkpoints/, metrics.csv).", flag_values=FLAGS)
flags.DEFINE_string("output_dir", "models/fishfillets_cs", "The model directory to write.", flag_values=FLAGS)
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to ship (default: the run's latest).", flag_values=FLAGS)
flags.DEFINE_string("examples_dir", "examples", "Held-out recordings for the samples.", flag_values=FLAGS)
flags.DEFINE_string("samples_dir", "samples", "Where the demo writes the samples ('' for none).", flag_values=FLAGS)
flags.DEFINE_float("sigma", None, "export.sigma of the shipped params (default: the run's).", flag_values=FLAGS)
flags.DEFINE_float(
    "denoiser_strength", None, "export.denoiser_strength of the shipped params (default: demo's).", flag_values=FLAGS
)
flags.DEFINE_string("evaluation_md", None, "Markdown for the card's evaluation section.", flag_values=FLAGS)
flags.DEFINE_multi_string(
    "reproduce_params",
    list(REPRODUCE_CONFIGS),
    "Config YAMLs (layered in order) that the card's reproduction command starts from; overrides add the rest.",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "corpus",
    FISH_FILLETS.name,
    sorted(CORPORA),
    "The training data the run read (the card's Data section).",
    flag_values=FLAGS,
)
flags.DEFINE_float("max_megabytes", 25.0, "Largest allowed model directory (MB, 10^6 bytes).", flag_values=FLAGS)
flags.mark_flags_as_required(["run_dir"], flag_values=FLAGS)

CARD_NAME = "MODEL_CARD.md"
EVALUATION_PLACEHOLDER = """Not measured yet for this checkpoint. To fill in, on all 62 held-out utterances:

```bash
scripts/link_heldout.sh "$PWD/corpus" out/valid 0     # all of corpus/valid.txt
python evaluate.py --reference_dir=out/valid --model=models/fishfillets_cs --output_dir=out/eval
python scripts/ship_model.py --run_dir=RUN_DIR --evaluation_md=out/eval/evaluation.md
```"""
# Train rows (one per summary interval) averaged for the reported training NLL.
TRAIN_ROWS_AVERAGED = 10


class ShipError(RuntimeError):
    """The run cannot be shipped; the message says why."""


def latest_checkpoint(run_dir: str) -> str:
    import tensorflow as tf

    from tfwaveglow.model_io import CHECKPOINT_SUBDIR

    prefix = tf.train.latest_checkpoint(os.path.join(run_dir, CHECKPOINT_SUBDIR))
    if prefix is None:
        raise ShipError(f"{run_dir}: no checkpoint in {CHECKPOINT_SUBDIR}/")
    return prefix


def checkpoint_scalar(prefix: str, slot: str) -> float | None:
    """The value of the scalar slot ``slot`` saved in the checkpoint ``prefix`` (None if it has none)."""
    import tensorflow as tf

    try:
        return float(tf.train.load_variable(prefix, f"{slot}/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError):
        return None


def checkpoint_step(prefix: str) -> int:
    """The training step stored in a checkpoint (its ``step`` slot, else the ``-N`` of its name)."""
    step = checkpoint_scalar(prefix, "step")
    if step is not None:
        return int(step)
    match = re.search(r"-(\d+)$", prefix)
    if match is None:
        raise ShipError(f"{prefix}: the checkpoint records no step")
    return int(match.group(1))


def checkpoint_clocks(prefix: str) -> tuple[float, float]:
    """The run's training wall-clock and CPU seconds saved in the checkpoint ``prefix``."""
    clocks = tuple(checkpoint_scalar(prefix, slot) for slot in ("train_seconds", "cpu_seconds"))
    if None in clocks:
        raise ShipError(f"{prefix}: the checkpoint records no training clocks")
    return clocks


def checkpoint_continued_from(prefix: str) -> int:
    """The step at which the checkpoint's run carried on a shipped model's run (0: it did not).

    That is the checkpoint's ``lr_step_offset`` (``train.py --init_from --continue_run``: the
    step of the shipped model whose run goes on, where Adam restarted); a checkpoint written
    before that slot existed is of a run that started afresh.
    """
    return int(checkpoint_scalar(prefix, "lr_step_offset") or 0)


def _nll(row: dict) -> float:
    """A metrics row's NLL: its ``loss/nll`` column (``loss/total`` may hold other terms too), else ``loss/total``."""
    return float(row.get("loss/nll") or row["loss/total"])


def training_record(run_dir: str, step: int) -> dict:
    """Validation and training NLL and hours of training up to ``step``, from the run's ``metrics.csv``.

    The NLL is the ``loss/nll`` column, or ``loss/total`` in a file written before that column
    existed (when the NLL was the whole loss).

    The hours are the run's own training clock (the ``train_hours`` column, which goes on
    across resumes and ``--continue_run``) at the last row up to ``step``; a ``metrics.csv``
    written before that column existed gives them from its rows' wall times, stops left out.
    """
    from plot_convergence import read_metrics, training_hours

    splits = read_metrics(run_dir)
    clock = max(
        ((s, float(row["train_hours"])) for rows in splits.values() for s, _, row in rows
         if s <= step and row.get("train_hours")),
        default=None,
    )  # fmt: skip
    valid = [(s, _nll(row)) for s, _, row in splits["valid"] if s <= step]
    train = [(s, _nll(row)) for s, _, row in splits["train"] if s <= step]
    stamps = [t for rows in splits.values() for s, t, _ in rows if s <= step]
    if not train:
        raise ShipError(f"{run_dir}/metrics.csv: no training rows up to step {step}")
    recent = train[-TRAIN_ROWS_AVERAGED:]
    return {
        "valid_step": valid[-1][0] if valid else None,
        "valid_nll": valid[-1][1] if valid else None,
        "valid_best": min(valid, key=lambda v: v[1]) if valid else None,
        "train_nll": sum(v for _, v in recent) / len(recent),
        "train_steps": (recent[0][0], recent[-1][0]),
        "hours": clock[1] if clock else training_hours(splits)[max(stamps)],
    }


def directory_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))


def float16_snr_db(full, shipped, params, example: str) -> float:
    """SNR (dB) of the float16 model's output against the float32 one's on ``example``, one latent."""
    import numpy as np
    import tensorflow as tf

    from tfwaveglow import audio as audio_lib

    mel = audio_lib.mel_spectrogram(audio_lib.load_audio(example, params.audio.sampling_rate), params.audio)
    mel = tf.constant(mel[None])
    z = tf.random.stateless_normal(full.latent_shape(mel), seed=[0, 0])
    reference = full.infer(mel, params.export.sigma, z=z).numpy().astype(np.float64)
    error = shipped.infer(mel, params.export.sigma, z=z).numpy() - reference
    return float(10.0 * np.log10(np.sum(reference**2) / max(np.sum(error**2), 1e-30)))


def run_samples(model_dir: str, examples_dir: str, samples_dir: str) -> dict:
    """The demo with the shipped model on the examples, into a fresh ``samples_dir``."""
    from tfwaveglow import demo

    if os.path.isdir(samples_dir):
        if os.listdir(samples_dir) and not os.path.isfile(os.path.join(samples_dir, demo.SUMMARY_NAME)):
            raise ShipError(f"{samples_dir} exists and is not a demo output; not replacing it")
        shutil.rmtree(samples_dir)
    demo.main(["demo", f"--model={model_dir}", f"--input_dir={examples_dir}", f"--output_dir={samples_dir}"])
    with open(os.path.join(samples_dir, demo.SUMMARY_NAME), encoding="utf-8") as f:
        return json.load(f)


def _evaluation_section(card_path: str, evaluation_md: str | None) -> str:
    if evaluation_md:
        with open(evaluation_md, encoding="utf-8") as f:
            text = f.read().strip()
        # evaluate.py's report starts with its own top-level title.
        return re.sub(r"^# .*\n+", "", text)
    if os.path.isfile(card_path):
        with open(card_path, encoding="utf-8") as f:
            old = f.read()
        match = re.search(re.escape(EVALUATION_BEGIN) + r"\n(.*?)\n" + re.escape(EVALUATION_END), old, re.S)
        if match and match.group(1).strip():
            return match.group(1).strip()
    return EVALUATION_PLACEHOLDER


def _git(*args: str, text: bool = True):
    """The standard output of ``git -C ROOT ARGS`` (str, or bytes with ``text=False``); None if git fails."""
    result = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=text, check=False)
    return result.stdout if result.returncode == 0 else None


def git_commit_holding(path: str, weights_sha256: str | None = None) -> tuple[str, str] | None:
    """``(commit, path in the repository)`` of a commit of this repository that holds the model at ``path``.

    With ``weights_sha256`` (the warm-start record's), the newest commit whose ``weights.npz``
    there has that sha256, so the model is found even after it was replaced in the working tree;
    without, the last commit that changed the directory, if the working tree still holds it
    unchanged. None when ``path`` is outside the repository or no commit holds those weights.
    """
    import hashlib

    from tfwaveglow.model_io import WEIGHTS_FILE

    path = os.path.abspath(path)
    if os.path.commonpath([path, ROOT]) != ROOT:
        return None
    relative = os.path.relpath(path, ROOT)
    if weights_sha256:
        weights = f"{relative}/{WEIGHTS_FILE}"
        for commit in (_git("log", "--format=%h", "--", weights) or "").split():
            blob = _git("show", f"{commit}:{weights}", text=False)
            if blob is not None and hashlib.sha256(blob).hexdigest() == weights_sha256:
                return commit, relative
        return None
    commit = (_git("log", "-1", "--format=%h", "--", relative) or "").strip()
    if not commit or (_git("status", "--porcelain", "--", relative) or "").strip():
        return None
    return commit, relative


def origin_of(record: dict) -> Origin:
    """The model a warm-start record names, with its commit and training hours where they are known.

    The hours come from the directory's ``training_state.json`` while it still holds the very
    weights (the record has no sha256, or it matches), else from the committed model's.
    """
    from tfwaveglow.model_io import TRAINING_STATE_FILE, load_training_state, weights_sha256

    source = record["init_from"]
    commit, relative = git_commit_holding(source, record["weights_sha256"]) or (None, None)
    hours = None
    if record["weights_sha256"] in (None, weights_sha256(source)):
        try:
            hours = load_training_state(source)["train_seconds"] / 3600.0
        except (ValueError, OSError):
            pass
    elif commit:
        state = _git("show", f"{commit}:{relative}/{TRAINING_STATE_FILE}")
        try:
            hours = float(json.loads(state)["train_seconds"]) / 3600.0
        except (TypeError, ValueError, KeyError):
            pass
    return Origin(source, record["step"], hours, commit, relative)


def inference_run(path: str) -> str | None:
    """The run directory whose weights ``path`` is (the run itself or its ``inference/``), else None."""
    from tfwaveglow.model_io import CHECKPOINT_SUBDIR
    from tfwaveglow.training import INFERENCE_SUBDIR

    path = os.path.abspath(path)
    for candidate in (path, os.path.dirname(path) if os.path.basename(path) == INFERENCE_SUBDIR else None):
        if candidate and os.path.isdir(os.path.join(candidate, CHECKPOINT_SUBDIR)):
            return candidate
    return None


def lineage(run_dir: str) -> tuple[Origin | None, list[Run]]:
    """Where ``run_dir``'s first weights came from: the origin model and the runs before it, oldest first.

    Follows each run's ``warm_start.json`` back: an earlier run is taken at its latest
    checkpoint (whose weights its ``inference/`` holds); the walk ends at a run that started
    from fresh weights, or carried on its own shipped model (``--continue_run``: reproduced
    by the card's continued-run commands), or at a model that is not a run (the origin).
    """
    import tfwaveglow
    from tfwaveglow.model_io import PARAMS_FILE
    from tfwaveglow.training import read_params_changes, read_warm_start

    runs, origin, seen = [], None, {os.path.abspath(run_dir)}
    current = run_dir
    while True:
        try:
            record = read_warm_start(current)
        except ValueError as e:
            raise ShipError(str(e)) from None
        if record is None or record["continue_run"]:
            break
        earlier = inference_run(record["init_from"])
        if earlier is None:
            origin = origin_of(record)
            break
        if earlier in seen:
            raise ShipError(f"{current}: its warm-start records go round in a circle through {earlier}")
        seen.add(earlier)
        prefix = latest_checkpoint(earlier)
        steps = checkpoint_step(prefix)
        try:
            changes = tuple(read_params_changes(earlier))
        except ValueError as e:
            raise ShipError(str(e)) from None
        params = tfwaveglow.load_params(os.path.join(earlier, PARAMS_FILE))
        hours = training_record(earlier, steps)["hours"]
        runs.insert(0, Run(params, steps, hours, changes, checkpoint_continued_from(prefix)))
        current = earlier
    return origin, runs


def ship(
    run_dir: str,
    output_dir: str,
    *,
    checkpoint: str | None = None,
    examples_dir: str = "examples",
    samples_dir: str = "samples",
    denoiser_strength: float | None = None,
    sigma: float | None = None,
    evaluation_md: str | None = None,
    max_megabytes: float = 25.0,
    reproduce_params: tuple[str, ...] = REPRODUCE_CONFIGS,
    corpus: str = FISH_FILLETS.name,
) -> dict:
    """Steps 1-4 of the module docstring; returns what the card reports."""
    import tfwaveglow
    from tfwaveglow import demo, preprocess
    from tfwaveglow.model_io import PARAMS_FILE, WEIGHTS_FILE, load_model, save_training_state
    from tfwaveglow.training import read_params_changes

    if not os.path.isdir(run_dir):
        raise ShipError(f"run directory {run_dir} does not exist")
    prefix = checkpoint or latest_checkpoint(run_dir)
    step = checkpoint_step(prefix)
    # Before anything is written: the lineage may start at the model being replaced (found in git).
    origin, earlier_runs = lineage(run_dir)
    params = tfwaveglow.load_params(os.path.join(run_dir, PARAMS_FILE))
    strength = demo.DEFAULT_DENOISER_STRENGTH if denoiser_strength is None else float(denoiser_strength)
    export = dataclasses.replace(params.export, denoiser_strength=strength)
    if sigma is not None:
        if not sigma > 0:
            raise ShipError(f"--sigma must be positive, got {sigma:g}")
        export = dataclasses.replace(export, sigma=float(sigma))
    params = dataclasses.replace(params, export=export)
    record = training_record(run_dir, step)
    full = load_model(prefix, params=params)

    tfwaveglow.save_model(full, output_dir, params, weights_dtype="float16")
    save_training_state(output_dir, step, *checkpoint_clocks(prefix))
    size = sum(os.path.getsize(os.path.join(output_dir, name)) for name in (PARAMS_FILE, WEIGHTS_FILE))
    if size > max_megabytes * 1e6:
        raise ShipError(f"{output_dir} is {size / 1e6:.1f} MB, more than --max_megabytes={max_megabytes:g}")
    shipped = load_model(output_dir)
    examples = preprocess.find_audio_files(examples_dir) if os.path.isdir(examples_dir) else []
    if not examples:
        raise ShipError(f"{examples_dir}: no example recordings")
    info = {
        "model_dir": output_dir,
        "examples_dir": examples_dir,
        "samples_dir": samples_dir,
        "checkpoint_name": os.path.basename(prefix),
        "megabytes": size / 1e6,
        "steps": step,
        "continued_from": checkpoint_continued_from(prefix),
        "parameters": tfwaveglow.count_parameters(full),
        "snr_example": examples[0],
        "snr_db": float16_snr_db(full, shipped, params, os.path.join(examples_dir, examples[0])),
    }
    summary = None
    if samples_dir:
        summary = run_samples(output_dir, examples_dir, samples_dir)
        with open(os.path.join(samples_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(model_card.samples_readme(summary, info))
    card_path = os.path.join(output_dir, CARD_NAME)
    evaluation = _evaluation_section(card_path, evaluation_md)
    try:
        changes = read_params_changes(run_dir)
    except ValueError as e:
        raise ShipError(str(e)) from None
    card = model_card.model_card(
        info, params, record, summary, evaluation, list(reproduce_params), changes,
        origin=origin, earlier_runs=tuple(earlier_runs), corpus=CORPORA[corpus],
    )  # fmt: skip
    with open(card_path, "w", encoding="utf-8") as f:
        f.write(card)
    size = directory_bytes(output_dir)
    if size > max_megabytes * 1e6:
        raise ShipError(f"{output_dir} is {size / 1e6:.1f} MB, more than --max_megabytes={max_megabytes:g}")
    return {**info, **record}


def main(argv) -> None:
    """Ships the run; ``argv`` may carry the flags when called from Python."""
    cli.parse_argv(FLAGS, argv)
    with cli.exit_on_error("ship_model", ShipError):
        result = ship(
            FLAGS.run_dir,
            FLAGS.output_dir,
            checkpoint=FLAGS.checkpoint,
            examples_dir=FLAGS.examples_dir,
            samples_dir=FLAGS.samples_dir,
            denoiser_strength=FLAGS.denoiser_strength,
            sigma=FLAGS.sigma,
            evaluation_md=FLAGS.evaluation_md,
            max_megabytes=FLAGS.max_megabytes,
            reproduce_params=FLAGS.reproduce_params,
            corpus=FLAGS.corpus,
        )
    print(
        f"shipped step {result['steps']} to {FLAGS.output_dir} ({result['megabytes']:.1f} MB, "
        f"float16 SNR {result['snr_db']:.1f} dB, valid NLL {result['valid_nll']})"
    )


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
