"""Peak memory of the exported SavedModel's ``synthesize`` on long mels, in fresh processes.

The model (random weights with non-trivial couplings; NVIDIA's configuration unless
``--params`` says otherwise) is exported once; then each length runs in its own
``python -I`` process in which tfwaveglow cannot be imported, as under TF Serving:
it loads the SavedModel, calls ``synthesize`` on a random log-mel of that length and
reports its peak RSS (and the RSS before the call). Before the timed lengths, the same
kind of process checks on a short mel that ``synthesize`` with seed ``s`` equals
``synthesize_from_latent`` with ``z = stateless_normal([1, frames * hop / g, g],
seed=[s, 0], alg="philox")`` after the documented clipping. One JSON object per
process on stdout, then a summary list.

    python benchmarks/serving_memory.py --seconds 120,600
    python benchmarks/serving_memory.py --params configs/small.yaml --seconds 10,600
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

flags.DEFINE_string("seconds", "120,600", "Comma-separated request lengths in seconds; each in its own process.")
flags.DEFINE_string("params", None, "Params YAML (default: the repository's params.yaml, NVIDIA's model).")
flags.DEFINE_integer("window_frames", 512, "The export's synthesis window in mel frames.")
flags.DEFINE_integer("threads", 2, "TensorFlow threads in the serving process.")
flags.DEFINE_string("export_dir", None, "Where to export (default: a temporary directory).")
FLAGS = flags.FLAGS

ROOT = bench_common.REPO_ROOT

# Run with python -I: no tfwaveglow, only TensorFlow and NumPy.
SERVE = textwrap.dedent(
    """
    import json, os, resource, sys, time
    sys.modules["tfwaveglow"] = None
    import numpy as np
    import tensorflow as tf

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    path, mode, seconds, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    served = tf.saved_model.load(path)
    sig = served.signatures
    import yaml
    with open(served.params_file.asset_path.numpy().decode()) as f:
        params = yaml.safe_load(f)
    hop, rate = params["audio"]["hop_length"], params["audio"]["sampling_rate"]
    n_mel, n_group = params["model"]["n_mel_channels"], params["model"]["n_group"]
    frames = int(round(seconds * rate / hop))
    mel = np.random.default_rng(0).normal(-6.0, 2.0, (1, frames, n_mel)).astype(np.float32)
    seed = 11
    args = dict(mel=mel, mel_lengths=np.array([frames], np.int32), sigma=np.array([0.6], np.float32),
                denoiser_strength=np.zeros(1, np.float32), seed=np.array([seed], np.int64))
    result = {"mode": mode, "audio_seconds": frames * hop / rate, "frames": frames,
              "window_frames": int(served.window_frames.numpy()), "threads": threads}
    if mode == "seed_check":
        seeded = sig["synthesize"](**args)["audio"].numpy()
        z = tf.random.stateless_normal([1, frames * hop // n_group, n_group], seed=[seed, 0], alg="philox")
        latent = sig["synthesize_from_latent"](mel=mel, z=z, sigma=args["sigma"])["audio"].numpy()
        latent = np.clip(latent, -1.0, 1.0)
        result["max_relative_difference"] = float(np.max(np.abs(seeded - latent)) / np.max(np.abs(latent)))
    else:
        result["rss_before_call_mib"] = round(rss_mib(), 1)
        start = time.perf_counter()
        audio = sig["synthesize"](**args)["audio"]
        result["wall_seconds"] = round(time.perf_counter() - start, 2)
        result["real_time_factor"] = round(result["wall_seconds"] / result["audio_seconds"], 2)
        result["output_samples"] = int(audio.shape[1])
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    result["load_avg_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result), flush=True)
    """
)


def export(directory: str) -> str:
    sys.path.insert(0, ROOT)
    import tfwaveglow
    from tfwaveglow.export import export_saved_model

    params = tfwaveglow.load_params(FLAGS.params or os.path.join(ROOT, "params.yaml"))
    model = bench_common.random_model(params)
    return export_saved_model(
        model, params, os.path.join(directory, "waveglow", "1"), window_frames=FLAGS.window_frames
    )


def serve(path: str, mode: str, seconds: float, workdir: str) -> dict:
    script = os.path.join(workdir, "serve.py")
    with open(script, "w") as f:
        f.write(SERVE)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": workdir, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-I", script, path, mode, str(seconds), str(FLAGS.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=workdir).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        directory = FLAGS.export_dir or tmp
        path = export(directory)
        results = [serve(path, "seed_check", 5.0, tmp)]
        print(json.dumps(results[-1]), flush=True)
        for seconds in FLAGS.seconds.split(","):
            results.append(serve(path, "synthesize", float(seconds), tmp))
            print(json.dumps(results[-1]), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
