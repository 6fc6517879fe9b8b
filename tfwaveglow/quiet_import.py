"""Imports TensorFlow without its C++ start-up log lines, for the command-line tools.

TensorFlow writes a handful of lines to stderr as it loads and finds its devices
(oneDNN notices, "Could not find cuda drivers", a failed ``cuInit``, the CPU
instructions it was not built for, absl's "All log messages before
absl::InitializeLog() is called are written to STDERR"). Some come before absl's
logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not hide them all.
:func:`import_tensorflow` points file descriptor 2 at a temporary file while
TensorFlow loads and lists its physical devices, then writes to stderr every
captured line that is not such a notice (all of them if the import fails).

Nothing is held back when the user asks for TensorFlow's logging: with
``TF_CPP_MIN_LOG_LEVEL`` (or ``TF_CPP_MAX_VLOG_LEVEL``, ``TF_CPP_VMODULE``) set
in the environment, with ``TFWAVEGLOW_VERBOSE_TF=1``, or with a tool's
``--verbose_tf_logs`` flag. This module imports only the standard library, and
``import tfwaveglow`` does not load TensorFlow, so a tool can call it first.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

__all__ = ["VERBOSE_ENV", "VERBOSE_FLAG", "import_tensorflow", "is_startup_noise", "verbose_requested"]

VERBOSE_FLAG = "verbose_tf_logs"
VERBOSE_ENV = "TFWAVEGLOW_VERBOSE_TF"
# Set by a user who wants TensorFlow's C++ logging as configured: then nothing is held back.
USER_LOG_SETTINGS = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE")

# Lines TensorFlow and its CUDA plugins print on every start, whatever the program does.
# C++ log lines start "I0000 00:00:1700000000.000000   12345 file.cc:31] " (or, in older
# builds, "2024-01-01 00:00:00.000000: I tensorflow/.../file.cc:31] "), hence the "] ".
_STARTUP_NOISE = re.compile(
    "|".join(
        [
            r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
            r"\] oneDNN custom operations are on\.",
            r"\] Could not find cuda drivers on your machine, GPU will not be used\.",
            r"\] failed call to cuInit: ",
            r"cuda_diagnostics\.cc:\d+\] ",  # host details printed after a failed cuInit
            r"\] This TensorFlow binary is optimized to use available CPU instructions",
            r"^To enable the following instructions: .*, in other operations, rebuild TensorFlow with the "
            r"appropriate compiler flags\.$",
            r"\] Unable to register cu(DNN|FFT|BLAS) factory: ",
            r"\] computation placer already registered\.",
            r"TF-TRT Warning: Could not find TensorRT$",
            r"\] successful NUMA node read from SysFS had negative value",
            r"\] Your kernel may have been built without NUMA support\.",
        ]
    )
)
_TRUE = ("1", "true", "t", "yes", "y")


def is_startup_noise(line: str) -> bool:
    """Whether ``line`` (without its newline) is one of TensorFlow's start-up notices."""
    return _STARTUP_NOISE.search(line.rstrip("\r\n")) is not None


def verbose_requested(argv: list[str] | None = None) -> bool:
    """Whether ``TFWAVEGLOW_VERBOSE_TF`` or ``--[no]verbose_tf_logs`` in ``argv`` asks for TensorFlow's logs.

    For a tool that imports TensorFlow before its flags are parsed; the last flag
    on the command line wins, and a flag overrides the environment variable.
    """
    verbose = os.environ.get(VERBOSE_ENV, "").strip().lower() in _TRUE
    for arg in argv or ():
        if arg == "--":  # the end of the flags
            break
        if not arg.startswith("-"):
            continue
        name, _, value = arg.lstrip("-").partition("=")
        if name == VERBOSE_FLAG:
            verbose = not value or value.lower() in _TRUE
        elif name == "no" + VERBOSE_FLAG:
            verbose = False
    return verbose


def _user_configured_logging() -> bool:
    return any(name in os.environ for name in USER_LOG_SETTINGS)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def import_tensorflow(verbose: bool | None = None):
    """``import tensorflow``, with its start-up log lines held back (see the module docstring).

    Args:
      verbose: show every line; ``None`` reads ``TFWAVEGLOW_VERBOSE_TF``.

    Returns:
      The ``tensorflow`` module. When it is already imported, or the user set
      ``TF_CPP_MIN_LOG_LEVEL`` (or asked for verbose logs), this is a plain import.
    """
    if verbose is None:
        verbose = verbose_requested()
    if "tensorflow" in sys.modules or verbose or _user_configured_logging():
        import tensorflow

        return tensorflow
    try:
        sys.stderr.flush()
        capture = tempfile.TemporaryFile()
    except (OSError, ValueError, AttributeError):  # no stderr, or nowhere to hold its lines
        import tensorflow

        return tensorflow
    succeeded = False
    with capture:
        try:
            saved = os.dup(2)
        except OSError:  # file descriptor 2 is closed: nothing to keep clean
            import tensorflow

            return tensorflow
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow

            # The failed cuInit (no GPU driver) is logged when the devices are first listed.
            try:
                tensorflow.config.list_physical_devices()
            except Exception:  # noqa: BLE001 - the tool meets any real device problem itself
                pass
            succeeded = True
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().splitlines(keepends=True)
            if succeeded:
                lines = [line for line in lines if not is_startup_noise(line.decode("utf-8", "replace"))]
            _write_all(2, b"".join(lines))
    return tensorflow
