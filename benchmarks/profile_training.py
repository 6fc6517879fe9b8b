"""Where a training step's time goes: TensorFlow profiler trace of one compiled step, per op type; prints JSON.

    PYTHONPATH=. python benchmarks/profile_training.py [--models=default] [--batch=1] [--segment=16000]
        [--threads=2] [--dilated_conv=MODE]

The step is ``training_speed.py``'s (forward, NVIDIA's loss, gradients, Adam,
weight norm on). Two warm-up steps, then one under ``tf.profiler``; op events
summed per type and grouped as in ``profile_synthesis.py``. One JSON line per model.
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_list("models", ["default"], "default, small or tiny.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "Segments per step.", flag_values=FLAGS)
flags.DEFINE_integer("segment", 16000, "Audio samples per segment.", flag_values=FLAGS)
flags.DEFINE_string("dilated_conv", None, "Override model.wn.dilated_conv.", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 1, "Smoke run: a tiny model, 1024-sample segment.")


def main(argv):
    info = bench_common.start(FLAGS, argv, quick={"models": ["tiny"], "segment": 1024, "torch": False})
    import numpy as np
    import tensorflow as tf
    from profile_synthesis import group_of, op_times
    from synthesis_speed import load_model_params, random_model
    from training_speed import _tf_step

    for model_name in FLAGS.models:
        params = load_model_params(model_name)
        step = _tf_step(params, random_model(params, FLAGS.dilated_conv), FLAGS.dilated_conv, jit_compile=False)
        frames = -(-FLAGS.segment // params.model.upsample_stride)
        rng = np.random.default_rng(0)
        mel = tf.constant(rng.normal(-5.0, 2.0, (FLAGS.batch, frames, params.model.n_mel_channels)).astype(np.float32))
        audio = tf.constant(rng.uniform(-0.5, 0.5, (FLAGS.batch, FLAGS.segment)).astype(np.float32))
        for _ in range(2):
            float(step(mel, audio))
        logdir = tempfile.mkdtemp(prefix="profile_training_")
        tf.profiler.experimental.start(logdir)
        t0 = time.perf_counter()
        float(step(mel, audio))
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
                "benchmark": "training_profile",
                "model": model_name,
                "dilated_conv": FLAGS.dilated_conv or params.model.wn.dilated_conv,
                "batch": FLAGS.batch,
                "segment": FLAGS.segment,
                "wall_ms_profiled_step": round(wall * 1e3, 1),
                "ops_ms_total": round(total, 1),
                "groups_share": {k: round(v / total, 3) for k, v in groups.most_common()},
                "top_ops": {t: {"count": c, "ms": round(ms, 1), "share": round(ms / total, 3)} for t, (c, ms) in top},
                **info,
            }
        )


if __name__ == "__main__":
    bench_common.run(main)
