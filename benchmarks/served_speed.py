"""Synthesis speed of a model's exported SavedModel (``synthesize``, batch 1), as TF Serving runs it; prints JSON.

    python benchmarks/served_speed.py --model=DIR [--seconds=10] [--threads=2] [--repeats=3] [--precision=float32]

The model (an inference or run directory) is exported to a temporary directory and
loaded back with ``tf.saved_model.load``; a random log-mel of ``--seconds`` is
synthesised once to warm up, then ``--repeats`` times (median reported) with seed 0.
The JSON line holds the model's parameters and multiply-adds per sample, the median
wall time, the audio kHz per second and the speed relative to real time (audio
seconds per second; > 1 is faster than real time), with the machine's load.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Inference model directory, training run directory or checkpoint.")
flags.DEFINE_float("seconds", 10.0, "Audio length of the request.")
flags.DEFINE_integer("threads", 2, "TensorFlow intra- and inter-op threads.")
flags.DEFINE_integer("repeats", 3, "Timed calls.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "The export's precision.")
flags.mark_flag_as_required("model")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    sys.path.insert(0, ROOT)
    import tfwaveglow
    from tfwaveglow.export import export_saved_model
    from tfwaveglow.model import multiply_adds_per_sample
    from tfwaveglow.model_io import load_model_and_params

    model, params = load_model_and_params(FLAGS.model)
    a = params.audio
    frames = int(round(FLAGS.seconds * a.sampling_rate / a.hop_length))
    mel = np.random.default_rng(0).normal(-6.0, 2.0, (1, frames, a.n_mel_channels)).astype(np.float32)
    args = dict(
        mel=mel,
        mel_lengths=np.array([frames], np.int32),
        sigma=np.array([params.export.sigma], np.float32),
        denoiser_strength=np.zeros(1, np.float32),
        seed=np.zeros(1, np.int64),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = export_saved_model(model, params, os.path.join(tmp, "m", "1"), precision=FLAGS.precision)
        synthesize = tf.saved_model.load(path).signatures["synthesize"]
        synthesize(**args)
        times = []
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            synthesize(**args)["audio"].numpy()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    audio_seconds = frames * a.hop_length / a.sampling_rate
    print(
        json.dumps(
            {
                "model": FLAGS.model,
                "precision": FLAGS.precision,
                "parameters": tfwaveglow.count_parameters(model),
                "multiply_adds_per_sample": round(multiply_adds_per_sample(model)),
                "audio_seconds": round(audio_seconds, 3),
                "threads": FLAGS.threads,
                "median_seconds": round(seconds, 4),
                "khz": round(audio_seconds * a.sampling_rate / seconds / 1000, 2),
                "times_real_time": round(audio_seconds / seconds, 2),
                "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    app.run(main)
