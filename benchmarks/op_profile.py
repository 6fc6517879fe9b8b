"""Per-op-type timing of one call under TensorFlow's profiler, shared by the profile benchmarks."""

from __future__ import annotations

import collections
import glob
import os
import tempfile
import time
from collections.abc import Callable

GROUPS = {
    # Contractions: products, convolutions, and the convolutions' gradients (the upsampler's transposed conv is one).
    "matmul": ("MatMul", "BatchMatMul", "Conv2D", "Einsum"),
    "gate": ("Tanh", "Sigmoid"),
    "data_movement": ("Concat", "Split", "Pad", "Transpose", "Slice", "Reshape", "Pack", "Tile", "Gather"),
}


def group_of(op_type: str) -> str:
    for group, names in GROUPS.items():
        if any(name in op_type for name in names):
            return group
    return "elementwise_other"


def op_times(logdir: str) -> dict[str, list[float]]:
    """Op type -> [count, milliseconds] from the profiler's XSpace files under ``logdir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals = collections.defaultdict(lambda: [0, 0.0])
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            metadata = plane.event_metadata
            for line in plane.lines:
                for event in line.events:
                    name = metadata[event.metadata_id].name
                    # Op events are "op_name:OpType"; "A::B" are runtime internals, "__inference" the function itself.
                    if ":" not in name or "::" in name:
                        continue
                    op_type = name.rsplit(":", 1)[1].strip()
                    if not op_type or op_type.startswith("__inference") or " " in name:
                        continue
                    totals[op_type][0] += 1
                    totals[op_type][1] += event.duration_ps / 1e9
    return dict(totals)


def profile_once(call: Callable[[], object], top: int = 15) -> dict:
    """Runs ``call()`` once under the profiler and sums its ops' time by type.

    Returns:
      ``{"wall_ms", "ops_ms_total", "groups_share", "top_ops"}``: the call's wall time, the summed op
      time, each group's share of it, and the ``top`` most expensive op types (count, ms, share).
    """
    import tensorflow as tf

    logdir = tempfile.mkdtemp(prefix="op_profile_")
    tf.profiler.experimental.start(logdir)
    t0 = time.perf_counter()
    call()
    wall = time.perf_counter() - t0
    tf.profiler.experimental.stop()
    ops = op_times(logdir)
    total = sum(ms for _, ms in ops.values())
    groups = collections.Counter()
    for op_type, (_, ms) in ops.items():
        groups[group_of(op_type)] += ms
    ranked = sorted(ops.items(), key=lambda item: -item[1][1])[:top]
    return {
        "wall_ms": round(wall * 1e3, 1),
        "ops_ms_total": round(total, 1),
        "groups_share": {k: round(v / total, 3) for k, v in groups.most_common()},
        "top_ops": {t: {"count": c, "ms": round(ms, 1), "share": round(ms / total, 3)} for t, (c, ms) in ranked},
    }
