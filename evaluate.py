"""Objective copy-synthesis evaluation of a WaveGlow model against Griffin-Lim.

    python evaluate.py --reference_dir=DIR --model=MODEL_DIR [--output_dir=OUT] [--sigma=0.6] \\
        [--denoiser_strength=0.0] [--seed=0] [--params=params.yaml] [--griffin_lim_iterations=60] \\
        [--nogriffin_lim]

Resynthesises every ``.wav``/``.flac``/``.ogg`` under ``reference_dir`` from its mel with the
model and with the Griffin-Lim baseline, and prints a markdown table of log-mel spectral
distance, mel-cepstral distortion, wideband PESQ, STOI and DNSMOS naturalness (SIG / BAK /
OVRL / P.808, no reference needed) per file and on average, for the model, Griffin-Lim and the
recordings themselves. With ``--output_dir``: ``evaluation.json``, ``evaluation.md`` and the
synthesised audio (``waveglow/``, ``griffin_lim/``) are written there. ``--nogriffin_lim``
scores the model alone (the scores of the baseline and of the recordings do not depend on it).
See docs/evaluation.md.
"""

from __future__ import annotations

import sys

from absl import flags

from tfwaveglow import cli

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "reference_dir", None, "Directory searched recursively for reference .wav, .flac and .ogg files.", flag_values=FLAGS
)
flags.DEFINE_string(
    "model", None, "Inference model dir (params.yaml + weights.npz), training run dir or checkpoint.", flag_values=FLAGS
)
flags.DEFINE_string(
    "output_dir", None, "Where to write evaluation.json, evaluation.md and the synthesised audio.", flag_values=FLAGS
)
flags.DEFINE_float(
    "sigma", None, "WaveGlow latent standard deviation (default: export.sigma of the params, 0.6).", flag_values=FLAGS
)
flags.DEFINE_float(
    "denoiser_strength",
    None,
    "Bias denoiser strength, 0 for none (default: export.denoiser_strength).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("seed", 0, "Seed of every file's latent and Griffin-Lim initial phase.", flag_values=FLAGS)
flags.DEFINE_string(
    "params", None, "YAML params file to use instead of the params.yaml beside the model.", flag_values=FLAGS
)
flags.DEFINE_integer("griffin_lim_iterations", 60, "Iterations of the Griffin-Lim baseline.", flag_values=FLAGS)
flags.DEFINE_bool(
    "griffin_lim",
    True,
    "Also run and score the Griffin-Lim baseline and the recordings themselves (--nogriffin_lim leaves both out: "
    "their scores do not depend on the model, so scoring many checkpoints on the same references needs them once).",
    flag_values=FLAGS,
)
flags.DEFINE_bool("save_audio", True, "With --output_dir, also write the synthesised audio.", flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=FLAGS)
flags.mark_flags_as_required(["reference_dir", "model"], flag_values=FLAGS)


def main(argv):
    """Runs the evaluation; ``argv`` may carry the flags when called from Python."""
    cli.parse_argv(FLAGS, argv)
    from tfwaveglow import evaluation

    with cli.exit_on_error("evaluate", evaluation.EvaluationError):
        model, params = evaluation.load_model_and_params(FLAGS.model, FLAGS.params)
        result = evaluation.evaluate_directory(
            model,
            params,
            FLAGS.reference_dir,
            sigma=FLAGS.sigma,
            denoiser_strength=FLAGS.denoiser_strength,
            seed=FLAGS.seed,
            griffin_lim_iterations=FLAGS.griffin_lim_iterations,
            output_dir=FLAGS.output_dir,
            save_audio=FLAGS.save_audio,
            model_path=FLAGS.model,
            progress=FLAGS.progress,
            with_griffin_lim=FLAGS.griffin_lim,
        )
    print(evaluation.markdown_report(result))
    if result["num_failed"] == result["num_files"]:
        sys.exit(f"evaluate: error: none of the {result['num_files']} reference files could be evaluated")


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
