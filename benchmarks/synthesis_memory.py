"""Peak memory and time of windowed synthesis with the default (NVIDIA-size) WaveGlow.

Random weights (the couplings made non-trivial), a random log-mel of the given
length, synthesised by :class:`tfwaveglow.synthesis.Synthesizer`. Each length
runs in a fresh process so its peak RSS is its own; prints one JSON object per
length (and a list at the end). The engine runs the plain conditioning path
unless ``--conditioning`` says otherwise (composed conditioning adds its fixed
``ComposedConditioning.size_bytes``: 2.0 GB for this model).

    python benchmarks/synthesis_memory.py --seconds 10,60,120 --window_frames 512
    python benchmarks/synthesis_memory.py --seconds 10 --one_shot    # one infer call, for contrast
    python benchmarks/synthesis_memory.py --seconds 600 --conditioning composed
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

flags.DEFINE_string("seconds", "10", "Comma-separated audio lengths in seconds; each runs in its own process.")
flags.DEFINE_integer("window_frames", 512, "Synthesizer window in mel frames.")
flags.DEFINE_integer("batch_size", 1, "Windows per model call.")
flags.DEFINE_bool("one_shot", False, "One infer call on the whole mel instead of windows.")
flags.DEFINE_string("params", None, "Params YAML (default: the repository's params.yaml).")
flags.DEFINE_enum(
    "conditioning", "plain", ["plain", "composed", "auto"], "ModelEngine conditioning (composed adds its fixed memory)."
)
flags.DEFINE_bool("child", False, "Internal: run one length in this process.")
FLAGS = flags.FLAGS

ROOT = bench_common.REPO_ROOT


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(seconds: float) -> dict:
    import numpy as np

    sys.path.insert(0, ROOT)
    import tfwaveglow
    from tfwaveglow.synthesis import ModelEngine, Synthesizer, plan_windows

    params = tfwaveglow.load_params(FLAGS.params or os.path.join(ROOT, "params.yaml"))
    model = bench_common.random_model(params)
    rng = np.random.default_rng(0)
    hop = params.audio.hop_length
    frames = int(round(seconds * params.audio.sampling_rate / hop))
    mel = rng.normal(-6.0, 2.0, (frames, params.audio.n_mel_channels)).astype(np.float32)
    engine = ModelEngine(model, params, conditioning=FLAGS.conditioning)
    synth = Synthesizer(engine, window_frames=FLAGS.window_frames, batch_size=FLAGS.batch_size)
    rss_before = current_rss_mib()
    peak_before = peak_rss_mib()
    start = time.perf_counter()
    if FLAGS.one_shot:
        z = synth.latent(0, frames)
        audio = engine.infer(mel[None], z[None], np.array([0.6], np.float32))[0]
    else:
        audio = synth.synthesize([mel], sigma=0.6, seeds=[0])[0]
    wall = time.perf_counter() - start
    return {
        "audio_seconds": frames * hop / params.audio.sampling_rate,
        "frames": frames,
        "mode": "one_shot" if FLAGS.one_shot else "windowed",
        "conditioning": engine.conditioning,
        "window_frames": None if FLAGS.one_shot else FLAGS.window_frames,
        "windows": 1 if FLAGS.one_shot else len(plan_windows(frames, FLAGS.window_frames, *synth.context)),
        "batch_size": FLAGS.batch_size,
        "parameters": tfwaveglow.count_parameters(model),
        "rss_after_model_mib": round(rss_before, 1),
        "peak_rss_before_synthesis_mib": round(peak_before, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "output_mib": round(audio.nbytes / 2**20, 1),
        "wall_seconds": round(wall, 2),
        "real_time_factor": round(wall / (frames * hop / params.audio.sampling_rate), 2),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv):
    del argv
    if FLAGS.child:
        print(json.dumps(run_one(float(FLAGS.seconds))), flush=True)
        return
    results = []
    for seconds in FLAGS.seconds.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", f"--seconds={seconds}"]
        cmd += [f"--window_frames={FLAGS.window_frames}", f"--batch_size={FLAGS.batch_size}"]
        cmd += ["--one_shot" if FLAGS.one_shot else "--noone_shot", f"--conditioning={FLAGS.conditioning}"]
        if FLAGS.params:
            cmd.append(f"--params={FLAGS.params}")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        result = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
