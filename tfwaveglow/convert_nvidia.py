"""Converts an NVIDIA/waveglow PyTorch checkpoint into a tfwaveglow inference model directory.

    python -m tfwaveglow.convert_nvidia --checkpoint waveglow_256channels.pt --output models/waveglow

The directory (``params.yaml`` + ``weights.npz``) loads with
``tfwaveglow.load_model``. The architecture is inferred from the weights; a
report of what was read and mapped, and of the layer-by-layer check against
PyTorch, is printed. Needs PyTorch installed (not NVIDIA's code).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from tfwaveglow import cli

# This tool's flags live in their own FlagValues so that they cannot clash with another CLI's
# same-named flags (--checkpoint, --output, --params) when both are imported in one process.
_FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "checkpoint", None, "NVIDIA/waveglow checkpoint (.pt): pickled model, state_dict, ...", flag_values=_FLAGS
)
flags.DEFINE_string("output", None, "Directory to write params.yaml and weights.npz to.", flag_values=_FLAGS)
flags.DEFINE_string(
    "params", None, "YAML whose audio/data/train/export sections to keep (defaults if unset).", flag_values=_FLAGS
)
flags.DEFINE_integer(
    "upsample_stride",
    None,
    "Upsampler stride (hop). State dicts do not store it; default: the pickled model's, else the params' "
    "model.upsample_stride.",
    flag_values=_FLAGS,
)
flags.DEFINE_bool(
    "check_layers", True, "Check every converted layer against PyTorch on the source weights.", flag_values=_FLAGS
)
flags.DEFINE_bool("overwrite", False, "Replace an existing model in --output.", flag_values=_FLAGS)
flags.DEFINE_string("report_json", None, "Also write the conversion report as JSON to this file.", flag_values=_FLAGS)


def main(argv):
    """Converts ``--checkpoint`` into ``--output``.

    Args:
      argv: as from :func:`tfwaveglow.cli.parse_flags` (the program name alone), or a full
        command line (program name and flags) when called directly.
    """
    cli.parse_argv(_FLAGS, argv)
    # Imported here so --help answers without loading TensorFlow.
    import tfwaveglow
    from tfwaveglow.convert import ConversionError, convert_checkpoint

    if not _FLAGS.checkpoint or not _FLAGS.output:
        raise app.UsageError("--checkpoint and --output are required")
    existing = [f for f in ("params.yaml", "weights.npz") if os.path.exists(os.path.join(_FLAGS.output, f))]
    if existing and not _FLAGS.overwrite:
        raise ConversionError(f"{_FLAGS.output}: already holds {existing}; pass --overwrite to replace them")
    base = tfwaveglow.load_params(_FLAGS.params)
    result = convert_checkpoint(
        _FLAGS.checkpoint,
        output=_FLAGS.output,
        base_params=base,
        upsample_stride=_FLAGS.upsample_stride,
        check_layers=_FLAGS.check_layers,
    )
    print(result.report.format())
    if _FLAGS.report_json:
        with open(_FLAGS.report_json, "w", encoding="utf-8") as f:
            json.dump(result.report.to_dict(), f, indent=2)


def _run(argv):
    """``app.run`` entry: a conversion or config error is one line on stderr and exit status 1, not a traceback."""
    from tfwaveglow.config import ConfigError
    from tfwaveglow.convert.errors import ConversionError

    try:
        main(argv)
    except (ConversionError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(_run, _FLAGS, __doc__)
