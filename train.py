"""Trains WaveGlow on a preprocessed corpus, resuming from the run directory's last checkpoint.

    python train.py --filelist=corpus/train.txt --wave_dir=corpus/wavs --lc_dir=corpus/mels \\
        --model_dir=runs/exp1 [--params=params.yaml ...] [--params_override=train.batch_size=8 ...] \\
        [--init_from=DIR [--continue_run]] [--strategy=default|mirrored|multi_worker] \\
        [--valid_filelist=corpus/valid.txt]

The config is ``--params`` if given (several are layered, later keys winning), else the
``params.yaml`` of an existing run in ``--model_dir``, else the built-in defaults; ``--params_override`` entries
(``section.key=value``, repeatable) apply on top.
"""

from __future__ import annotations

import os

from absl import app, flags, logging

from tfwaveglow import cli

# The tool's own flag set (tfwaveglow.cli), so it imports beside the other tools.
FLAGS = flags.FlagValues()
flags.DEFINE_string("filelist", None, "Training utterance ids, one per line.", flag_values=FLAGS)
flags.DEFINE_string("wave_dir", None, "Directory of the wav files.", flag_values=FLAGS)
flags.DEFINE_string("lc_dir", None, "Directory of the mel spectrograms (local conditions).", flag_values=FLAGS)
flags.DEFINE_string(
    "model_dir", None, "Run directory: params.yaml, checkpoints/, inference/, summaries.", flag_values=FLAGS
)
flags.DEFINE_multi_string(
    "params",
    None,
    "YAML config; repeat to layer files, later keys winning (default: the run's params.yaml, else the "
    "built-in defaults).",
    flag_values=FLAGS,
)
flags.DEFINE_multi_string(
    "params_override", [], "section.key=value, e.g. train.batch_size=8 (repeatable).", flag_values=FLAGS
)
flags.DEFINE_string(
    "init_from", None, "Warm-start a new run from this model or run directory (weights only).", flag_values=FLAGS
)
flags.DEFINE_bool(
    "continue_run",
    False,
    "With --init_from: carry on the run that model was shipped from (its training_state.json): step, "
    "data order, learning-rate decay and training clocks go on from there; Adam starts anew with a warm-up.",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "strategy", "default", ["default", "mirrored", "multi_worker"], "tf.distribute strategy.", flag_values=FLAGS
)
flags.DEFINE_string(
    "valid_filelist", None, "Validation utterance ids (default: train.valid_filelist).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "steps",
    None,
    "Stop at this step this time (default: train.steps); the run's params keep their train.steps.",
    flag_values=FLAGS,
)
flags.mark_flags_as_required(["filelist", "wave_dir", "lc_dir", "model_dir"], flag_values=FLAGS)


def parse_overrides(entries: list[str]) -> dict:
    """``["train.batch_size=8", ...]`` -> ``{"train.batch_size": "8"}`` (values parsed by load_params)."""
    overrides = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise app.UsageError(f"--params_override expects section.key=value, got {entry!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def resolve_params(params_paths: list[str] | None, model_dir: str, overrides: dict):
    import tfwaveglow

    if not params_paths:
        saved = os.path.join(model_dir, "params.yaml")
        params_paths = [saved] if os.path.isfile(saved) else None
    logging.info("params: %s", ", ".join(params_paths) if params_paths else "built-in defaults")
    return tfwaveglow.load_params(params_paths, overrides=overrides)


def main(argv):
    """Trains; ``argv`` may carry the flags when called from Python (``main(["train.py", "--model_dir=..."])``)."""
    cli.parse_argv(FLAGS, argv)
    if FLAGS.continue_run and not FLAGS.init_from:
        raise app.UsageError("--continue_run needs --init_from: the shipped model whose run goes on")
    import tfwaveglow
    from tfwaveglow import training
    from tfwaveglow.run_lock import RunDirectoryBusyError

    # The multi-worker strategy must exist before TensorFlow runs anything else.
    strategy = training.create_strategy(FLAGS.strategy)
    try:
        params = resolve_params(FLAGS.params, FLAGS.model_dir, parse_overrides(FLAGS.params_override))
        summary = training.train(
            params,
            FLAGS.filelist,
            FLAGS.wave_dir,
            FLAGS.lc_dir,
            FLAGS.model_dir,
            init_from=FLAGS.init_from,
            continue_run=FLAGS.continue_run,
            strategy=strategy,
            valid_filelist=FLAGS.valid_filelist,
            steps=FLAGS.steps,
        )
    except (
        training.NonFiniteTrainingError,
        RunDirectoryBusyError,
        tfwaveglow.ConfigError,
        tfwaveglow.ModelLoadError,
        FileNotFoundError,
    ) as e:
        logging.error("%s", e)
        return 1
    logging.info("finished at step %d: %s", summary["step"], summary)
    return 0


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
