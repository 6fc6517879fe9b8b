"""Synthesis and training step of this checkout against an older revision of tfwaveglow, same process; JSON.

    PYTHONPATH=. python benchmarks/compare_revisions.py --before=ab5b8e8 [--model=default] [--seconds=1]
        [--segment=16000] [--threads=2] [--repeats=3] [--parts=synthesis,training]

The older revision's ``tfwaveglow`` is extracted with ``git archive`` into a
temporary directory under another package name, so both load side by side.
Both models get the same weights (copied by layer path); both synthesise
through a ``tf.function`` with a pinned signature; the training step is
forward + loss + gradients + Adam with weight norm on.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tempfile

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_string("before", "ab5b8e8", "Git revision to compare with.", flag_values=FLAGS)
flags.DEFINE_string("model", "default", "default, small or tiny.", flag_values=FLAGS)
flags.DEFINE_float("seconds", 1.0, "Audio to synthesise.", flag_values=FLAGS)
flags.DEFINE_integer("segment", 16000, "Training segment (samples), batch 1.", flag_values=FLAGS)
flags.DEFINE_list("parts", ["synthesis", "training"], "What to compare.", flag_values=FLAGS)
flags.DEFINE_integer("threads", 2, "TensorFlow threads.", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 3, "Timed rounds.", flag_values=FLAGS)
flags.DEFINE_bool("quick", False, "Smoke run: tiny model, 0.1 s, 1024-sample segment, one round.", flag_values=FLAGS)


def import_revision(revision: str, directory: str):
    """``tfwaveglow`` as of ``revision``, importable as ``tfwaveglow_<revision>``."""
    name = "tfwaveglow_" + re.sub(r"\W", "_", revision)
    archive = os.path.join(directory, "src.tar")
    subprocess.run(["git", "-C", bench_common.REPO_ROOT, "archive", "-o", archive, revision, "tfwaveglow"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    os.rename(os.path.join(directory, "tfwaveglow"), os.path.join(directory, name))
    for root, _, files in os.walk(os.path.join(directory, name)):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(root, file)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                with open(path, "w", encoding="utf-8") as f:
                    f.write(re.sub(r"\btfwaveglow\b", name, text))
    sys.path.insert(0, directory)
    return __import__(name)


def main(argv):
    bench_common.parse(FLAGS, argv)
    if FLAGS.quick:
        FLAGS.model, FLAGS.seconds, FLAGS.segment, FLAGS.repeats = "tiny", 0.1, 1024, 1
    bench_common.setup_threads(FLAGS.threads, torch_too=False)
    import numpy as np
    import tensorflow as tf
    from synthesis_speed import load_model_params

    import tfwaveglow

    info = bench_common.machine_info(FLAGS.threads)
    params = load_model_params(FLAGS.model)
    with tempfile.TemporaryDirectory() as tmp:
        old = import_revision(FLAGS.before, tmp)
        current = bench_common.random_model(params)
        old_params = old.load_params(None, overrides=_flat_model(params))
        models = {
            "before": lambda wn: _copy(old.WaveGlow.from_params(old_params, weight_norm=wn), current),
            "after": lambda wn: _copy(tfwaveglow.WaveGlow.from_params(params, weight_norm=wn), current),
        }
        hop, g = params.model.upsample_stride, params.model.n_group
        rng = np.random.default_rng(0)
        if "synthesis" in FLAGS.parts:
            frames = max(1, round(FLAGS.seconds * params.audio.sampling_rate / hop))
            mel = tf.constant(rng.normal(-5.0, 2.0, (1, frames, 80)).astype(np.float32))
            z = tf.constant(rng.standard_normal((1, frames * hop // g, g)).astype(np.float32))
            functions, outputs = {}, {}
            for name, build in models.items():
                functions[name] = _synthesis(build(False), mel, z, outputs, name)
            timings = bench_common.time_interleaved(functions, FLAGS.repeats, warmup=1)
            bench_common.emit(
                {
                    "benchmark": "compare_revisions",
                    "part": "synthesis",
                    "before_revision": FLAGS.before,
                    "model": FLAGS.model,
                    "audio_seconds": frames * hop / params.audio.sampling_rate,
                    **_summary(timings, frames * hop, "khz"),
                    "max_abs_diff": float(np.max(np.abs(outputs["before"] - outputs["after"]))),
                    **info,
                }
            )
        if "training" in FLAGS.parts:
            frames = -(-FLAGS.segment // hop)
            mel = tf.constant(rng.normal(-5.0, 2.0, (1, frames, 80)).astype(np.float32))
            audio = tf.constant(rng.uniform(-0.5, 0.5, (1, FLAGS.segment)).astype(np.float32))
            losses = {}
            functions = {
                name: _training(build(True), nll, mel, audio, losses, name)
                for (name, build), nll in zip(models.items(), (old.nll_loss, tfwaveglow.nll_loss))
            }
            timings = bench_common.time_interleaved(functions, FLAGS.repeats, warmup=1)
            bench_common.emit(
                {
                    "benchmark": "compare_revisions",
                    "part": "training_step",
                    "before_revision": FLAGS.before,
                    "model": FLAGS.model,
                    "segment": FLAGS.segment,
                    **_summary(timings, FLAGS.segment, "khz"),
                    **info,
                }
            )


def _flat_model(params) -> dict:
    m = params.model
    flat = {f"model.{k}": getattr(m, k) for k in ("n_flows", "n_group", "n_early_every", "n_early_size")}
    flat.update({f"model.wn.{k}": getattr(m.wn, k) for k in ("n_layers", "n_channels", "kernel_size")})
    flat["model.wn.dilated_conv"] = "time_to_batch"
    return flat


def _copy(model, source):
    for name, layer in model.named_layers().items():
        src = source.named_layers()[name]
        if hasattr(layer, "assign_kernel"):
            layer.assign_kernel(src.effective_kernel(), src.bias)
        else:
            for dst, value in zip(layer.weights, src.weights, strict=True):
                dst.assign(value)
    return model


def _synthesis(model, mel, z, outputs, name):
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None, 80]), tf.TensorSpec([None, None, z.shape[-1]])]
    fn = tf.function(lambda mel, z: model.infer(mel, 0.6, z=z), input_signature=spec)

    def run():
        outputs[name] = fn(mel, z).numpy()

    return run


def _training(model, nll_loss, mel, audio, losses, name):
    import tensorflow as tf

    optimizer = tf.keras.optimizers.Adam(1e-4)

    @tf.function
    def step(mel, audio):
        with tf.GradientTape() as tape:
            loss = nll_loss(model.forward(mel, audio))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def run():
        losses[name] = float(step(mel, audio))

    return run


def _summary(timings, samples, unit) -> dict:
    out = {
        name: {
            "median_s": round(t["median_s"], 4),
            "cpu_median_s": round(t["cpu_median_s"], 4),
            unit: round(samples / t["median_s"] / 1e3, 3),
            "times_s": t["times_s"],
        }
        for name, t in timings.items()
    }
    out["speedup"] = round(timings["before"]["median_s"] / timings["after"]["median_s"], 3)
    out["cpu_speedup"] = round(timings["before"]["cpu_median_s"] / timings["after"]["cpu_median_s"], 3)
    return out


if __name__ == "__main__":
    bench_common.run(main)
