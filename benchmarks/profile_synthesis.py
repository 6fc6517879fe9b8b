"""Where synthesis time goes: TensorFlow profiler trace of one compiled call, summed per op type; prints JSON.

    PYTHONPATH=. python benchmarks/profile_synthesis.py [--models=default] [--seconds=1] [--batch=1]
        [--paths=infer,composed] [--threads=2] [--dilated_conv=MODE]

Each path is called twice to warm up (trace, oneDNN's per-shape kernels), then
once under ``tf.profiler``. The trace's op events (``name:Type`` on the host
plane) are summed per op type; with one inter-op thread the ops run one after
another, so their sum is the call's time and each type's share is its part of
it. Types are also grouped: contractions (``MatMul``, ``BatchMatMul``,
``Conv2D`` and its gradients, the upsampler's transposed conv, ``Einsum``), the gate
(``Tanh``, ``Sigmoid``), data movement (concat, split, pad, transpose, slice,
reshape) and the rest. One JSON line per path.
"""

from __future__ import annotations

import collections
import glob
import os
import sys
import tempfile
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_list("models", ["default"], "default, small or tiny.", flag_values=FLAGS)
flags.DEFINE_float("seconds", 1.0, "Audio to synthesise.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "Batch size.", flag_values=FLAGS)
flags.DEFINE_list("paths", ["infer", "composed"], "infer, composed, bfloat16.", flag_values=FLAGS)
flags.DEFINE_string("dilated_conv", None, "Override model.wn.dilated_conv.", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 1, "Smoke run: a tiny model, 0.1 s.")

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


def main(argv):
    info = bench_common.start(FLAGS, argv, quick={"models": ["tiny"], "seconds": 0.1, "torch": False})
    import numpy as np
    import tensorflow as tf
    from synthesis_speed import load_model_params, random_model

    for model_name in FLAGS.models:
        params = load_model_params(model_name)
        model = random_model(params, FLAGS.dilated_conv)
        hop, g = model.hop_length, model.n_group
        frames = max(1, round(FLAGS.seconds * 22050 / hop))
        rng = np.random.default_rng(0)
        mel = tf.constant(rng.normal(-5.0, 2.0, (FLAGS.batch, frames, model.n_mel_channels)).astype(np.float32))
        z = tf.constant(rng.standard_normal((FLAGS.batch, frames * hop // g, g)).astype(np.float32))
        for path in FLAGS.paths:
            if path == "infer":
                fn, path_mel = model.infer_fn, mel
            elif path == "composed":
                fn, path_mel = model.infer_function(conditioning=model.compose_conditioning()), mel
            elif path == "bfloat16":
                fn, path_mel = model.infer_function(mel_dtype=tf.bfloat16), tf.cast(mel, tf.bfloat16)
            else:
                raise ValueError(f"unknown path {path!r}")
            for _ in range(2):
                fn(path_mel, 0.6, z).numpy()
            logdir = tempfile.mkdtemp(prefix="profile_synthesis_")
            tf.profiler.experimental.start(logdir)
            t0 = time.perf_counter()
            fn(path_mel, 0.6, z).numpy()
            wall = time.perf_counter() - t0
            tf.profiler.experimental.stop()
            ops = op_times(logdir)
            total = sum(ms for _, ms in ops.values())
            groups = collections.Counter()
            for op_type, (_, ms) in ops.items():
                groups[group_of(op_type)] += ms
            top = sorted(ops.items(), key=lambda item: -item[1][1])[:15]
            bench_common.emit(
                {
                    "benchmark": "synthesis_profile",
                    "model": model_name,
                    "path": path,
                    "dilated_conv": model.couplings[0].wn.dilated_conv,
                    "audio_seconds": round(frames * hop / 22050, 3),
                    "batch": FLAGS.batch,
                    "wall_ms_profiled_call": round(wall * 1e3, 1),
                    "ops_ms_total": round(total, 1),
                    "groups_share": {k: round(v / total, 3) for k, v in groups.most_common()},
                    "top_ops": {
                        t: {"count": c, "ms": round(ms, 1), "share": round(ms / total, 3)} for t, (c, ms) in top
                    },
                    **info,
                }
            )


if __name__ == "__main__":
    bench_common.run(main)
