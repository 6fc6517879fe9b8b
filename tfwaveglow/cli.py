"""Flag plumbing shared by the command-line tools.

Every tool keeps its flags in its own ``flags.FlagValues`` rather than absl's
global ``FLAGS``, so tools that share flag names (``--params``, ``--model``) can
be imported into one process (tests call their ``main(argv)`` directly).

Every tool also gets ``--verbose_tf_logs``: :func:`run` imports TensorFlow once
the flags are parsed, before the tool's ``main``, without TensorFlow's C++
start-up log lines unless that flag (or ``TFWAVEGLOW_VERBOSE_TF=1``, or a
``TF_CPP_MIN_LOG_LEVEL`` of the user's) asks for them; see
:mod:`tfwaveglow.quiet_import`.

A tool that loads a model reports a model it cannot load in one line and exits
with status 1 (:func:`exit_on_error`).
"""

from __future__ import annotations

import contextlib
import sys

from absl import app, flags

from tfwaveglow import quiet_import

_HELP = ("-h", "-help", "--help", "--helpshort", "--helpfull", "-?")


def _define_common_flags(flag_values: flags.FlagValues) -> None:
    """The flags every tool has, added to its own ``FlagValues`` once."""
    if quiet_import.VERBOSE_FLAG not in flag_values:
        flags.DEFINE_bool(
            quiet_import.VERBOSE_FLAG,
            False,
            "Show TensorFlow's C++ start-up log lines (oneDNN, CUDA, CPU instructions), which are "
            f"otherwise held back; also {quiet_import.VERBOSE_ENV}=1. A TF_CPP_MIN_LOG_LEVEL set in the "
            "environment is always respected.",
            flag_values=flag_values,
        )


def parse_flags(flag_values: flags.FlagValues, argv: list[str], doc: str = "") -> list[str]:
    """``app.run``'s flag parser: the tool's own flags, then absl's (``--verbosity``, ...)."""
    _define_common_flags(flag_values)
    if any(arg in _HELP for arg in argv[1:]):
        if doc:
            print(doc)
        print(flag_values.get_help())
        sys.exit(0)
    try:
        rest = flag_values(argv, known_only=True)
        return flags.FLAGS(rest)
    except flags.Error as e:
        print(f"error: {e}\nPass --help for usage.", file=sys.stderr)
        sys.exit(2)


def parse_argv(flag_values: flags.FlagValues, argv: list[str], positional: bool = False) -> list[str]:
    """For ``main(argv)`` called from Python with a full command line: (re)parses the flags.

    Returns what is left of ``argv`` (the program name alone when all was parsed,
    followed by the positional arguments); positional arguments are a usage
    error unless ``positional``.
    """
    _define_common_flags(flag_values)
    if any(arg.startswith("-") for arg in argv[1:]):
        flag_values.unparse_flags()
        argv = flag_values(list(argv))
    if len(argv) > 1 and not positional:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    return argv


def run(main, flag_values: flags.FlagValues, doc: str = "", tensorflow: bool = True) -> None:
    """``app.run(main)`` with the tool's own flags.

    Args:
      main: the tool's ``main(argv)``.
      flag_values: the tool's flags.
      doc: printed above the flags by ``--help``.
      tensorflow: import TensorFlow (quietly, see the module docstring) after the
        flags are parsed; False for a tool that never loads it.
    """

    def parse(argv: list[str]) -> list[str]:
        rest = parse_flags(flag_values, argv, doc)
        if tensorflow:
            flag = flag_values[quiet_import.VERBOSE_FLAG]
            quiet_import.import_tensorflow(verbose=flag.value if flag.present else None)
        return rest

    app.run(main, flags_parser=parse)


@contextlib.contextmanager
def exit_on_error(
    tool: str, *errors: type[BaseException], template: str = "{tool}: error: {error}", not_found_hint: str = ""
):
    """A tool's "load a model, report the error, exit 1": a one-line message instead of a traceback.

    Around the block that loads a model (and whatever the tool does with it): no
    model or file at a path (``FileNotFoundError``), params that fail their checks
    (:class:`tfwaveglow.ConfigError`), weights that do not fit them
    (:class:`tfwaveglow.ModelLoadError`), or one of ``errors``, raised inside, is
    printed to stderr as ``template`` and the process exits with status 1
    (``SystemExit``, which a test calling the tool's ``main`` sees too).

    Args:
      tool: the tool's name, the message's ``{tool}``.
      errors: the tool's own error types, reported the same way.
      template: the message, with ``{tool}`` and ``{error}``.
      not_found_hint: appended to the message of a ``FileNotFoundError``.
    """
    from tfwaveglow.config import ConfigError
    from tfwaveglow.model_io import ModelLoadError

    try:
        yield
    except (FileNotFoundError, ConfigError, ModelLoadError, *errors) as e:
        message = template.format(tool=tool, error=e)
        if isinstance(e, FileNotFoundError):
            message += not_found_hint
        sys.exit(message)
