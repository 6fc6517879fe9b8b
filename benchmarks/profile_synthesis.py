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

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402
import op_profile  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_list("models", ["default"], "default, small, tiny or params YAML paths.", flag_values=FLAGS)
flags.DEFINE_float("seconds", 1.0, "Audio to synthesise.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "Batch size.", flag_values=FLAGS)
flags.DEFINE_list("paths", ["infer", "composed"], "infer, composed, bfloat16.", flag_values=FLAGS)
flags.DEFINE_string("dilated_conv", None, "Override model.wn.dilated_conv.", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 1, "Smoke run: a tiny model, 0.1 s.")


def main(argv):
    info = bench_common.start(FLAGS, argv, quick={"models": ["tiny"], "seconds": 0.1, "torch": False})
    import numpy as np
    import tensorflow as tf
    from synthesis_speed import load_model_params

    for model_name in FLAGS.models:
        params = load_model_params(model_name)
        model = bench_common.random_model(params, FLAGS.dilated_conv)
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
            profile = op_profile.profile_once(lambda fn=fn, mel=path_mel, z=z: fn(mel, 0.6, z).numpy())
            bench_common.emit(
                {
                    "benchmark": "synthesis_profile",
                    "model": model_name,
                    "path": path,
                    "dilated_conv": model.couplings[0].wn.dilated_conv,
                    "audio_seconds": round(frames * hop / 22050, 3),
                    "batch": FLAGS.batch,
                    "wall_ms_profiled_call": profile.pop("wall_ms"),
                    **profile,
                    **info,
                }
            )


if __name__ == "__main__":
    bench_common.run(main)
