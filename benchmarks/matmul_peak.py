"""The machine's float32 and bfloat16 matrix-multiply rates, TensorFlow and PyTorch, same threads; prints JSON.

    PYTHONPATH=. python benchmarks/matmul_peak.py [--threads=2] [--sizes=1024,2048,3072] [--quick]

The best of the sizes, per dtype, is taken as the machine's practical peak: the figures
the synthesis and training benchmarks divide by to say what fraction of it they reach
(bfloat16 paths against the bfloat16 peak).
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_list("sizes", ["1024", "2048", "3072"], "Square matrix sizes.", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 7, "Smoke run: one 256 x 256 product, 2 rounds.")


def _functions(n: int, use_torch: bool) -> dict:
    import numpy as np
    import tensorflow as tf

    a = np.random.default_rng(n).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(n + 1).standard_normal((n, n)).astype(np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    ta16, tb16 = tf.cast(ta, tf.bfloat16), tf.cast(tb, tf.bfloat16)
    product = tf.function(tf.linalg.matmul)
    functions = {"tf": lambda: product(ta, tb).numpy(), "tf_bfloat16": lambda: product(ta16, tb16).numpy()}
    if use_torch:
        import torch

        pa, pb = torch.from_numpy(a), torch.from_numpy(b)
        pa16, pb16 = pa.bfloat16(), pb.bfloat16()
        functions["torch"] = lambda: torch.mm(pa, pb)
        functions["torch_bfloat16"] = lambda: torch.mm(pa16, pb16)
    return functions


def matmul_peak(sizes, repeats: int, use_torch: bool = True) -> dict:
    """Best matmul rates over ``sizes``, in GMAC/s (multiply-adds per second / 1e9).

    Returns:
      ``{"tf_gmac_per_s", "tf_bfloat16_gmac_per_s", "torch_gmac_per_s", "torch_bfloat16_gmac_per_s"
      (PyTorch's if timed), "peak_gmac_per_s" (float32, best framework), "peak_gmac_per_s_bfloat16",
      "by_size"}``.
    """
    rates = {}
    for n in sizes:
        for name, t in bench_common.time_interleaved(_functions(n, use_torch), repeats).items():
            rates.setdefault(name, {})[n] = round(n**3 / t["median_s"] / 1e9, 1)
    result = {f"{name}_gmac_per_s": max(by.values()) for name, by in rates.items()}
    result["peak_gmac_per_s"] = max(v for k, v in result.items() if "bfloat16" not in k)
    result["peak_gmac_per_s_bfloat16"] = max(v for k, v in result.items() if "bfloat16" in k)
    result["by_size"] = rates
    return result


def main(argv):
    info = bench_common.start(FLAGS, argv, quick={"sizes": ["256"], "repeats": 2})
    peak = matmul_peak([int(n) for n in FLAGS.sizes], FLAGS.repeats, FLAGS.torch)
    bench_common.emit({"benchmark": "matmul_peak", **peak, **info})


if __name__ == "__main__":
    bench_common.run(main)
