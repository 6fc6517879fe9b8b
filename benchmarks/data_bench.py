"""Throughput of corpus preprocessing and of the training input pipeline; prints JSON.

    python benchmarks/data_bench.py --wave_dir=corpus/wavs --num_workers=1,2 \\
        [--pipeline_batches=200] [--batch_size=12]

Each worker count preprocesses the whole ``wave_dir`` from scratch into a fresh
temporary directory (so nothing is up to date) and reports files/s and seconds
of audio per second. The pipeline part then times ``make_dataset`` batches read
from the last of those outputs (after a warm-up of 10 batches).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app, flags
from bench_common import cpu_model

FLAGS = flags.FLAGS
flags.DEFINE_string("wave_dir", "corpus/wavs", "Corpus to preprocess.")
flags.DEFINE_list("num_workers", ["1", "2"], "Worker counts to time.")
flags.DEFINE_integer("pipeline_batches", 200, "Batches to time from the input pipeline (0: skip).")
flags.DEFINE_integer("batch_size", 12, "Batch size for the pipeline timing.")
flags.DEFINE_string("params", None, "YAML params (default: params.yaml defaults).")


def main(argv):
    del argv
    import tfwaveglow
    from tfwaveglow import data, preprocess

    params = tfwaveglow.load_params(FLAGS.params)
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in FLAGS.num_workers):
            out = os.path.join(tmp, f"w{workers}")
            start = time.perf_counter()
            report = preprocess.preprocess_corpus(
                FLAGS.wave_dir, os.path.join(out, "mels"), out, params, num_workers=workers, progress=False
            )
            seconds = time.perf_counter() - start
            result["runs"].append(
                {
                    "num_workers": workers,
                    "files": report["counts"]["found"],
                    "usable": report["counts"]["usable"],
                    "audio_minutes": round(report["total_duration_s"] / 60, 2),
                    "seconds": round(seconds, 2),
                    "files_per_s": round(report["counts"]["found"] / seconds, 1),
                    "audio_seconds_per_s": round(report["total_duration_s"] / seconds, 1),
                }
            )
        if FLAGS.pipeline_batches > 0:
            ids = data.read_filelist(os.path.join(out, "train.txt"))
            dataset = data.make_dataset(
                ids, os.path.join(out, "audio"), os.path.join(out, "mels"), params, batch_size=FLAGS.batch_size, seed=0
            )
            iterator = iter(dataset)
            for _ in range(10):
                next(iterator)
            start = time.perf_counter()
            for _ in range(FLAGS.pipeline_batches):
                next(iterator)
            seconds = time.perf_counter() - start
            result["pipeline"] = {
                "batch_size": FLAGS.batch_size,
                "segment_length": params.data.segment_length,
                "batches": FLAGS.pipeline_batches,
                "batches_per_s": round(FLAGS.pipeline_batches / seconds, 1),
                "examples_per_s": round(FLAGS.pipeline_batches * FLAGS.batch_size / seconds, 1),
            }
    result["load_average_1min_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
