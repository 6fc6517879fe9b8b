"""Shared pieces of the speed benchmarks: threads, machine facts, interleaved timing, JSON lines.

Every benchmark prints one JSON object per measurement on its own line. Figures
that compare TensorFlow with PyTorch are taken in the same process, the two
interleaved repetition by repetition, so that a change in machine load hits both.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_DIR = os.path.join(REPO_ROOT, "tests", "reference")


def define_run_flags(flag_values, repeats: int, quick_help: str) -> None:
    """The flags every speed benchmark shares: ``threads``, ``repeats``, ``torch``, ``quick``."""
    from absl import flags

    flags.DEFINE_integer("threads", 2, "Threads for TensorFlow and PyTorch.", flag_values=flag_values)
    flags.DEFINE_integer("repeats", repeats, "Timed rounds.", flag_values=flag_values)
    flags.DEFINE_bool("torch", True, "Time the PyTorch reference too.", flag_values=flag_values)
    flags.DEFINE_bool("quick", False, quick_help, flag_values=flag_values)


def start(flag_values, argv: list[str], quick: dict | None = None) -> dict:
    """Parses ``argv``, applies the ``--quick`` overrides, sets the thread pools; returns :func:`machine_info`.

    Args:
      flag_values: a ``FlagValues`` holding :func:`define_run_flags`'s flags.
      argv: the full command line (program name first).
      quick: flag name -> value to set when ``--quick`` is given.
    """
    parse(flag_values, argv)
    if flag_values.quick:
        for name, value in (quick or {}).items():
            setattr(flag_values, name, value)
    setup_threads(flag_values.threads, torch_too=flag_values.torch)
    return machine_info(flag_values.threads)


def setup_threads(threads: int, torch_too: bool = True) -> None:
    """Same thread count for TensorFlow (intra-op; one inter-op thread) and PyTorch.

    Must run before TensorFlow executes its first op.
    """
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # no retracing notes: benchmarks build one function per configuration
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # TensorFlow already ran (the benchmark was called in-process): keep its pools, and say so.
        print(f"note: TensorFlow's thread pools were already set; --threads={threads} not applied", file=sys.stderr)
    if torch_too:
        import torch

        torch.set_num_threads(threads)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict:
    """Machine facts recorded with every measurement (load average at the time included)."""
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "gpu": gpus or None,
        "load_1min": round(os.getloadavg()[0], 2),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "tf": tf.__version__,
    }


def emit(record: dict) -> None:
    """Prints one measurement as a JSON line."""
    print(json.dumps(record, sort_keys=False), flush=True)


def time_interleaved(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Runs each function ``warmup`` times, then ``repeats`` rounds of all of them in turn.

    The order rotates from round to round, so no function always runs right
    after the same neighbour. Each function must block until its result exists.

    Returns:
      name -> ``{"median_s", "min_s", "cpu_median_s", "times_s"}``; wall-clock
      seconds, and the process's CPU seconds (all threads) per call.
    """
    names = list(functions)
    for name in names:
        for _ in range(warmup):
            functions[name]()
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            c0, t0 = time.process_time(), time.perf_counter()
            functions[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {
        name: {
            "median_s": statistics.median(wall[name]),
            "min_s": min(wall[name]),
            "cpu_median_s": statistics.median(cpu[name]),
            "times_s": [round(t, 4) for t in wall[name]],
        }
        for name in names
    }


def import_reference():
    """The PyTorch reference of NVIDIA's WaveGlow (``tests/reference/glow.py``) as module ``glow``."""
    if REFERENCE_DIR not in sys.path:
        sys.path.insert(0, REFERENCE_DIR)
    import glow

    return glow


def torch_reference_from(model, params, weight_norm: bool = False):
    """A PyTorch reference WaveGlow holding ``model``'s weights.

    Args:
      model: a :class:`tfwaveglow.WaveGlow` (any weight-norm state).
      params: its params (``params.model`` fixes the reference's architecture).
      weight_norm: keep PyTorch's weight norm (``g``, ``v``; as NVIDIA trains), else
        remove it (plain weights, as NVIDIA synthesises).

    Returns:
      ``glow.WaveGlow`` in eval mode computing the same function as ``model``.
    """
    import_reference()
    from tfwaveglow_weights import build_reference

    from tfwaveglow.model_io import weights_to_arrays

    return build_reference(params.model, weights_to_arrays(model), weight_norm=weight_norm)


def random_model(params, dilated_conv=None):
    """A folded model with random weights that make every coupling non-trivial (``end`` is not zero)."""
    import numpy as np

    import tfwaveglow

    model = tfwaveglow.WaveGlow.from_params(params, dilated_conv=dilated_conv)
    rng = np.random.default_rng(0)
    for coupling in model.couplings:
        end = coupling.wn.end
        scale = 0.1 / np.sqrt(end.kernel.shape[0])
        end.kernel.assign(rng.normal(0.0, scale, end.kernel.shape).astype(np.float32))
        end.bias.assign(rng.normal(0.0, 0.01, end.bias.shape).astype(np.float32))
    return model


def parse(flag_values, argv: list[str]) -> None:
    """Parses a full command line (program name first) into a benchmark's own ``FlagValues``."""
    flag_values.unparse_flags()
    rest = flag_values(argv, known_only=True)
    if len(rest) > 1:
        raise ValueError(f"unknown arguments: {rest[1:]}")


def run(main: Callable[[list[str]], None]) -> None:
    """Script entry: ``main(sys.argv)`` under absl (benchmarks keep their flags in their own FlagValues)."""
    from absl import app, flags

    app.run(lambda _: main(sys.argv), flags_parser=lambda argv: flags.FLAGS(argv[:1]))
