"""Where a training step's time goes: TensorFlow profiler trace of one compiled step, per op type; prints JSON.

    PYTHONPATH=. python benchmarks/profile_training.py [--models=default] [--batch=1] [--segment=16000]
        [--threads=2] [--dilated_conv=MODE]

The step is ``training_speed.py``'s (forward, NVIDIA's loss, gradients, Adam,
weight norm on). Two warm-up steps, then one under ``tf.profiler``; op events
summed per type and grouped as in ``op_profile.py``. One JSON line per model.
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402
import op_profile  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_list("models", ["default"], "default, small, tiny or params YAML paths.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "Segments per step.", flag_values=FLAGS)
flags.DEFINE_integer("segment", 16000, "Audio samples per segment.", flag_values=FLAGS)
flags.DEFINE_string("dilated_conv", None, "Override model.wn.dilated_conv.", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 1, "Smoke run: a tiny model, 1024-sample segment.")


def main(argv):
    info = bench_common.start(FLAGS, argv, quick={"models": ["tiny"], "segment": 1024, "torch": False})
    import numpy as np
    import tensorflow as tf
    from synthesis_speed import load_model_params
    from training_speed import _tf_step

    for model_name in FLAGS.models:
        params = load_model_params(model_name)
        step = _tf_step(
            params, bench_common.random_model(params, FLAGS.dilated_conv), FLAGS.dilated_conv, jit_compile=False
        )
        frames = -(-FLAGS.segment // params.model.upsample_stride)
        rng = np.random.default_rng(0)
        mel = tf.constant(rng.normal(-5.0, 2.0, (FLAGS.batch, frames, params.model.n_mel_channels)).astype(np.float32))
        audio = tf.constant(rng.uniform(-0.5, 0.5, (FLAGS.batch, FLAGS.segment)).astype(np.float32))
        for _ in range(2):
            float(step(mel, audio))
        profile = op_profile.profile_once(lambda step=step, mel=mel, audio=audio: float(step(mel, audio)))
        bench_common.emit(
            {
                "benchmark": "training_profile",
                "model": model_name,
                "dilated_conv": FLAGS.dilated_conv or params.model.wn.dilated_conv,
                "batch": FLAGS.batch,
                "segment": FLAGS.segment,
                "wall_ms_profiled_step": profile.pop("wall_ms"),
                **profile,
                **info,
            }
        )


if __name__ == "__main__":
    bench_common.run(main)
