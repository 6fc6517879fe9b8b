"""Prepares a speech corpus for training.

    python preprocess_data.py --wave_dir=corpus/wavs --mel_dir=corpus/mels --data_dir=corpus \\
        [--params params.yaml] [--num_workers N] [--valid_fraction F]

Writes ``<data_dir>/audio/<id>.wav`` (train with ``--wave_dir=<data_dir>/audio``),
``<mel_dir>/<id>.npy``, ``<data_dir>/train.txt``, ``<data_dir>/valid.txt`` and
``<data_dir>/preprocess_report.json``; a second run redoes only what changed.
See docs/data.md.
"""

from __future__ import annotations

import sys

from absl import flags

from tfwaveglow import cli

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "wave_dir", None, "Directory searched recursively for .wav, .flac and .ogg files.", flag_values=FLAGS
)
flags.DEFINE_string(
    "mel_dir", None, "Output directory for the mels (float32 .npy), mirroring wave_dir.", flag_values=FLAGS
)
flags.DEFINE_string(
    "data_dir", None, "Output directory for audio/, train.txt, valid.txt and the report.", flag_values=FLAGS
)
flags.DEFINE_string("params", None, "YAML params file (defaults: NVIDIA's values).", flag_values=FLAGS)
flags.DEFINE_integer(
    "num_workers", None, "Worker processes (default: every core; 1 runs in-process).", flag_values=FLAGS
)
flags.DEFINE_float(
    "valid_fraction", None, "Held-out share per speaker (default: data.valid_fraction).", flag_values=FLAGS
)
flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=FLAGS)
flags.mark_flags_as_required(["wave_dir", "mel_dir", "data_dir"], flag_values=FLAGS)


def main(argv):
    """Runs preprocessing; ``argv`` may carry the flags when called from Python."""
    cli.parse_argv(FLAGS, argv)
    import tfwaveglow
    from tfwaveglow import preprocess

    params = tfwaveglow.load_params(FLAGS.params)
    try:
        report = preprocess.preprocess_corpus(
            FLAGS.wave_dir,
            FLAGS.mel_dir,
            FLAGS.data_dir,
            params,
            num_workers=FLAGS.num_workers,
            valid_fraction=FLAGS.valid_fraction,
            progress=FLAGS.progress,
        )
    except preprocess.PreprocessError as e:
        sys.exit(f"preprocess_data: error: {e}")
    print(preprocess.summarize(report))


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__, tensorflow=False)  # audio and numpy only
