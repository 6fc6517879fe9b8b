"""Synthesis speed of a model's export (batch 1), as TF Serving or a device runs it; prints JSON.

    python benchmarks/served_speed.py --model=DIR [--seconds=10] [--threads=2] [--repeats=3]
        [--format=saved_model|tflite] [--precision=float32]

The model (an inference or run directory) is exported to a temporary directory and
loaded back: a SavedModel with ``tf.saved_model.load`` (signature ``synthesize``, seed 0),
or a LiteRT model (``--format=tflite``, float32 or float16 weights) in ``ai-edge-litert``'s
interpreter with ``--threads`` threads (signature ``synthesize_from_latent``, a fixed
standard-normal latent). A random log-mel of ``--seconds`` is synthesised once to warm up,
then ``--repeats`` times (median reported).
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
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"], "The export's format.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16", "float16"], "The export's precision.")
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
        if FLAGS.format == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            from tfwaveglow.export_litert import LITERT_SIGNATURE, export_litert

            path = export_litert(model, params, os.path.join(tmp, "m.tflite"), precision=FLAGS.precision)
            runner = Interpreter(model_path=path, num_threads=FLAGS.threads).get_signature_runner(LITERT_SIGNATURE)
            z = np.random.default_rng(1).standard_normal((1, frames * a.hop_length // model.n_group, model.n_group))
            inputs = dict(mel=mel, z=z.astype(np.float32), sigma=args["sigma"])

            def synthesize():
                return runner(**inputs)["audio"]
        else:
            path = export_saved_model(model, params, os.path.join(tmp, "m", "1"), precision=FLAGS.precision)
            signature = tf.saved_model.load(path).signatures["synthesize"]

            def synthesize():
                return signature(**args)["audio"].numpy()

        synthesize()
        times = []
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            synthesize()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    audio_seconds = frames * a.hop_length / a.sampling_rate
    print(
        json.dumps(
            {
                "model": FLAGS.model,
                "format": FLAGS.format,
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
