"""The dilated convolution alone: every hand-rolled form against conv1d's own dilation, and PyTorch.

    PYTHONPATH=. python benchmarks/dilated_conv.py [--channels=256] [--length=2000] [--batch=1]
        [--dilations=1,2,...,128] [--threads=2] [--repeats=7] [--quick]

For each dilation of the default WN (kernel 3, ``channels -> 2 * channels``)
and each mode of ``tfwaveglow.layers.dilated_conv`` it times the forward
convolution and the backward pass (gradients for input and kernel), each as a
compiled ``tf.function``; PyTorch's ``conv1d`` with ``dilation`` runs in the same
rounds. One JSON line per (dilation, direction) with every mode's median time.
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_integer("channels", 256, "Residual channels C (the conv maps C -> 2C).", flag_values=FLAGS)
flags.DEFINE_integer("kernel_size", 3, "Taps.", flag_values=FLAGS)
flags.DEFINE_integer("length", 2000, "Time steps (group steps: 2000 = one 16000-sample segment).", flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "Batch size.", flag_values=FLAGS)
flags.DEFINE_list("dilations", ["1", "2", "4", "8", "16", "32", "64", "128"], "Dilations.", flag_values=FLAGS)
flags.DEFINE_list("modes", None, "Modes to time (default: all).", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 7, "Smoke run: 16 channels, 64 steps, dilations 1 and 4, 2 rounds.")


def main(argv):
    info = bench_common.start(FLAGS, argv, quick={"channels": 16, "length": 64, "dilations": ["1", "4"], "repeats": 2})
    import numpy as np
    import tensorflow as tf

    from tfwaveglow.layers.dilated_conv import MODES, dilated_conv1d

    modes = FLAGS.modes or list(MODES)
    c, k, batch, length = FLAGS.channels, FLAGS.kernel_size, FLAGS.batch, FLAGS.length
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch, length, c)).astype(np.float32)
    kernel_np = (rng.standard_normal((k, c, 2 * c)) / np.sqrt(k * c)).astype(np.float32)
    upstream_np = rng.standard_normal((batch, length, 2 * c)).astype(np.float32)
    x, kernel, upstream = tf.constant(x_np), tf.Variable(kernel_np), tf.constant(upstream_np)
    macs = batch * length * k * c * 2 * c

    for dilation in (int(d) for d in FLAGS.dilations):
        forward, backward = {}, {}
        for mode in modes:
            forward[f"tf_{mode}"], backward[f"tf_{mode}"] = _tf_functions(x, kernel, upstream, dilation, mode)
        if FLAGS.torch:
            forward["torch"], backward["torch"] = _torch_functions(x_np, kernel_np, upstream_np, dilation)
            # The forms must agree before they are timed.
            reference = forward["torch"]().numpy().transpose(0, 2, 1)
            for mode in modes:
                np.testing.assert_allclose(dilated_conv1d(x, kernel, dilation, mode).numpy(), reference, atol=1e-3)
        for direction, functions, mac_factor in (("forward", forward, 1), ("backward", backward, 2)):
            # A form this TensorFlow build cannot run here (e.g. conv1d's own dilation backward on some
            # CPUs) is reported as unsupported instead of timed.
            unsupported = {}
            for name in list(functions):
                try:
                    functions[name]()
                except tf.errors.InvalidArgumentError as e:
                    unsupported[name] = str(e).strip().splitlines()[0][:200]
                    del functions[name]
            timings = bench_common.time_interleaved(functions, FLAGS.repeats)
            native = timings["tf_native"]["median_s"] if "tf_native" in timings else None
            record = {
                "benchmark": "dilated_conv",
                "direction": direction,
                "dilation": dilation,
                "channels": c,
                "kernel_size": k,
                "length": length,
                "batch": batch,
                "ms": {name: round(t["median_s"] * 1e3, 3) for name, t in timings.items()},
                "unsupported": unsupported,
                "cpu_ms": {name: round(t["cpu_median_s"] * 1e3, 3) for name, t in timings.items()},
                "gmac_per_s": {name: round(mac_factor * macs / t["median_s"] / 1e9, 1) for name, t in timings.items()},
            }
            if native:
                record["speedup_vs_native"] = {
                    name: round(native / t["median_s"], 2) for name, t in timings.items() if name != "tf_native"
                }
            bench_common.emit({**record, **info})


def _tf_functions(x, kernel, upstream, dilation: int, mode: str):
    """Compiled forward and backward (gradients for x and the kernel) of one mode, as blocking callables."""
    import tensorflow as tf

    from tfwaveglow.layers.dilated_conv import dilated_conv1d

    @tf.function
    def forward(x):
        return dilated_conv1d(x, kernel, dilation, mode)

    @tf.function
    def backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(dilated_conv1d(x, kernel, dilation, mode) * upstream)
        return tape.gradient(loss, [x, kernel])

    return (lambda: forward(x).numpy()), (lambda: [g.numpy() for g in backward(x)])


def _torch_functions(x_np, kernel_np, upstream_np, dilation: int):
    """PyTorch's dilated conv1d (channels-first), forward under inference_mode and backward."""
    import torch

    xt = torch.from_numpy(x_np.transpose(0, 2, 1).copy())
    wt = torch.from_numpy(kernel_np.transpose(2, 1, 0).copy()).requires_grad_(True)
    ut = torch.from_numpy(upstream_np.transpose(0, 2, 1).copy())
    pad = dilation * (kernel_np.shape[0] - 1) // 2

    def forward():
        with torch.inference_mode():
            return torch.nn.functional.conv1d(xt, wt, padding=pad, dilation=dilation)

    def backward():
        xg = xt.clone().requires_grad_(True)
        y = torch.nn.functional.conv1d(xg, wt, padding=pad, dilation=dilation)
        return torch.autograd.grad((y * ut).sum(), [xg, wt])

    return forward, backward


if __name__ == "__main__":
    bench_common.run(main)
