"""Flag plumbing shared by the command-line tools.

Every tool keeps its flags in its own ``flags.FlagValues`` rather than absl's
global ``FLAGS``, so tools that share flag names (``--params``, ``--model``) can
be imported into one process (tests call their ``main(argv)`` directly).
"""

from __future__ import annotations

import sys

from absl import app, flags

_HELP = ("-h", "-help", "--help", "--helpshort", "--helpfull", "-?")


def parse_flags(flag_values: flags.FlagValues, argv: list[str], doc: str = "") -> list[str]:
    """``app.run``'s flag parser: the tool's own flags, then absl's (``--verbosity``, ...)."""
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


def parse_argv(flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
    """For ``main(argv)`` called from Python with a full command line: (re)parses the flags.

    Returns what is left of ``argv`` (the program name alone when all was parsed);
    anything else left is a usage error.
    """
    if any(arg.startswith("-") for arg in argv[1:]):
        flag_values.unparse_flags()
        argv = flag_values(list(argv))
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    return argv


def run(main, flag_values: flags.FlagValues, doc: str = "") -> None:
    """``app.run(main)`` with the tool's own flags."""
    app.run(main, flags_parser=lambda argv: parse_flags(flag_values, argv, doc))
