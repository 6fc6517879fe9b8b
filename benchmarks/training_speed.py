"""Training step throughput of tfwaveglow next to the PyTorch reference of NVIDIA's model; prints JSON.

    PYTHONPATH=. python benchmarks/training_speed.py [--models=default] [--batch=1] [--segment=16000]
        [--paths=graph,xla,bfloat16] [--threads=2] [--repeats=5] [--quick]

One step = forward, NVIDIA's loss, gradients and an Adam update, with weight
norm on (as training runs). TensorFlow's step is one ``tf.function`` (``graph``)
or the same with ``jit_compile=True`` (``xla``), or the graph step with the
model built under ``train.mixed_precision: bfloat16`` (``bfloat16``: float32
variables, WNs in bfloat16, flow and loss in float32); PyTorch runs
``tests/reference/glow.py`` with weight norm, ``torch.optim.Adam`` (``torch``), and
with ``--torch_bfloat16`` the same under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(``torch_bfloat16``). Same
weights, same batch, same threads, interleaved rounds, median reported. One
JSON line per model: steps/s, segments/s and kHz of audio per second, and the
ratio to PyTorch.
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_list("models", ["default"], "default, small, tiny or params YAML paths.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "Segments per step.", flag_values=FLAGS)
flags.DEFINE_integer("segment", 16000, "Audio samples per segment (NVIDIA: 16000).", flag_values=FLAGS)
flags.DEFINE_list("paths", ["graph"], "TensorFlow steps: graph, xla, bfloat16.", flag_values=FLAGS)
flags.DEFINE_bool("torch_bfloat16", False, "Also time PyTorch's step under bfloat16 autocast.", flag_values=FLAGS)
flags.DEFINE_string("dilated_conv", None, "Override model.wn.dilated_conv.", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 5, "Smoke run: a tiny model, 1024-sample segment, one round.")


def main(argv):
    info = bench_common.start(FLAGS, argv, quick={"models": ["tiny"], "segment": 1024, "repeats": 1})
    for model_name in FLAGS.models:
        record = measure(model_name, FLAGS.batch, FLAGS.segment, FLAGS.paths, FLAGS.torch, FLAGS.repeats, FLAGS.quick)
        bench_common.emit({**record, **info, "load_1min_after": round(os.getloadavg()[0], 2)})


def _tf_step(params, folded, dilated_conv, jit_compile: bool, bfloat16: bool = False):
    """A compiled training step of a weight-normed copy of ``folded``: ``step(mel, audio) -> loss``."""
    import keras
    import tensorflow as tf

    import tfwaveglow
    from tfwaveglow.training import configure_mixed_precision

    if bfloat16:
        configure_mixed_precision("bfloat16", require_gpu=False)
    try:
        model = tfwaveglow.WaveGlow.from_params(params, weight_norm=True, dilated_conv=dilated_conv)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.copy_weights_from(folded)
    optimizer = tf.keras.optimizers.Adam(params.train.learning_rate)

    def train_step(mel, audio):
        if bfloat16:
            mel = tf.cast(mel, tf.bfloat16)  # as the trainer does; the flow itself stays float32
        with tf.GradientTape() as tape:
            loss = tfwaveglow.nll_loss(model.forward(mel, audio), sigma=params.train.sigma)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return tf.function(train_step, jit_compile=jit_compile)


def _torch_step(params, folded, bfloat16: bool = False):
    """PyTorch's reference training step (weight norm, Adam): ``step(mel_np, audio_np) -> loss``.

    With ``bfloat16``, forward and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``.
    """
    import contextlib

    import torch

    reference = bench_common.torch_reference_from(folded, params, weight_norm=True).train()
    criterion = bench_common.import_reference().WaveGlowLoss(sigma=params.train.sigma)
    optimizer = torch.optim.Adam(reference.parameters(), lr=params.train.learning_rate)

    def step(mel_np, audio_np):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext():
            loss = criterion(reference((torch.from_numpy(mel_np).transpose(1, 2), torch.from_numpy(audio_np))))
        loss.float().backward()
        optimizer.step()
        return loss.item()

    return step


def measure(model_name, batch, segment, paths, use_torch, repeats, quick) -> dict:
    import numpy as np
    import tensorflow as tf
    from synthesis_speed import load_model_params

    params = load_model_params(model_name)
    folded = bench_common.random_model(params, FLAGS.dilated_conv)
    frames = -(-segment // params.model.upsample_stride)
    rng = np.random.default_rng(0)
    mel_np = rng.normal(-5.0, 2.0, (batch, frames, params.model.n_mel_channels)).astype(np.float32)
    audio_np = rng.uniform(-0.5, 0.5, (batch, segment)).astype(np.float32)
    mel, audio = tf.constant(mel_np), tf.constant(audio_np)
    steps = {
        f"tf_{path}": _tf_step(params, folded, FLAGS.dilated_conv, path == "xla", path == "bfloat16") for path in paths
    }
    functions = {name: (lambda step=step: float(step(mel, audio))) for name, step in steps.items()}
    if use_torch:
        torch_step = _torch_step(params, folded)
        functions["torch"] = lambda: torch_step(mel_np, audio_np)
        if FLAGS.torch_bfloat16:
            torch_bf16_step = _torch_step(params, folded, bfloat16=True)
            functions["torch_bfloat16"] = lambda: torch_bf16_step(mel_np, audio_np)
    # The first step's loss is the same function of the same weights in both frameworks.
    first_losses = {name: fn() for name, fn in functions.items()}
    timings = bench_common.time_interleaved(functions, repeats, warmup=0 if quick else 1)
    record = {
        "benchmark": "training_step",
        "model": model_name,
        "wn_channels": params.model.wn.n_channels,
        "dilated_conv": FLAGS.dilated_conv or params.model.wn.dilated_conv,
        "batch": batch,
        "segment": segment,
        "first_step_loss": {name: round(v, 6) for name, v in first_losses.items()},
    }
    torch_time = timings["torch"]["median_s"] if "torch" in timings else None
    for name, t in timings.items():
        entry = {
            "median_s": round(t["median_s"], 4),
            "cpu_median_s": round(t["cpu_median_s"], 4),
            "steps_per_s": round(1 / t["median_s"], 3),
            "segments_per_s": round(batch / t["median_s"], 3),
            "khz": round(batch * segment / t["median_s"] / 1e3, 2),
            "times_s": t["times_s"],
        }
        if torch_time and not name.startswith("torch"):
            entry["speedup_vs_torch"] = round(torch_time / t["median_s"], 3)
        record[name] = entry
    return record


if __name__ == "__main__":
    bench_common.run(main)
