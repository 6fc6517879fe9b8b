"""Seconds per training step of the GAN discriminators alone, for a few sizes; prints JSON.

    TF_NUM_INTRAOP_THREADS=1 PYTHONPATH=. python benchmarks/discriminator_cost.py [--batch=4]
        [--length=16384] [--mrd_channels=8,16,32] [--mpd_channels=8-16-32-64,32-128-512-1024]
        [--threads=1] [--repeats=5] [--quick]

A discriminator step (``d_step``) is what the adversarial trainer adds for the
discriminators: forward on a real and a generated batch ``[batch, length]`` (two
calls, as :class:`tfwaveglow.objectives.composite.TrainingObjective` makes them),
:func:`~tfwaveglow.objectives.adversarial.discriminator_loss`, the gradient and an
Adam update (``adversarial``'s betas 0.8 / 0.99). ``g_side`` is the discriminators'
share of a generator step: the same two forwards, the adversarial and
feature-matching losses and the gradient with respect to the generated waveform
(no update); ``d_step_joint`` is ``d_step`` with real and generated batches in one
call (``[2 * batch, length]``). All three are ``tf.function``s. Sizes: the
spectrogram discriminator alone at each ``--mrd_channels``, the period discriminator
alone at each ``--mpd_channels`` (``32-128-512-1024`` is HiFi-GAN's), and both at the
config's defaults. Each record has the parameter count, the forward multiply-adds
(convolutions only), the rate that implies for ``d_step`` (taken as 3 forward passes'
work per batch: forward plus two for the backward) and its share of the matmul peak
measured in the same run. Host facts: the CPU model (``lscpu``) and its vector and
matrix extension flags (AVX-512, AVX-512 BF16, AMX).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402
import matmul_peak  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_integer("batch", 4, "Waveforms per batch (real and generated each).", flag_values=FLAGS)
flags.DEFINE_integer("length", 16384, "Samples per waveform.", flag_values=FLAGS)
flags.DEFINE_list("mrd_channels", ["8", "16", "32"], "Spectrogram discriminator widths to time.", flag_values=FLAGS)
flags.DEFINE_list(
    "mpd_channels", ["8-16-32-64", "32-128-512-1024"], "Period discriminator widths ('-'-joined).", flag_values=FLAGS
)
flags.DEFINE_list("matmul_sizes", ["1024", "2048"], "Matrix sizes of the matmul peak.", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 5, "Smoke run: 2 x 2048 samples, widths 4 and 4-8, one round.")
FLAGS.set_default("threads", int(os.environ.get("TF_NUM_INTRAOP_THREADS", "1")))
FLAGS.set_default("torch", False)

HOST_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def host_info() -> dict:
    """The CPU model as ``lscpu`` names it and which of :data:`HOST_FLAGS` it has."""
    model, cpu_flags = None, set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                cpu_flags = set(value.split())
    except (OSError, subprocess.SubprocessError):
        pass
    if not cpu_flags:
        try:
            with open("/proc/cpuinfo") as f:
                cpu_flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
        except OSError:
            pass
    return {"lscpu_model": model or bench_common.cpu_model(), "cpu_flags": {f: f in cpu_flags for f in HOST_FLAGS}}


def configurations(mrd_channels, mpd_channels) -> dict:
    """Name -> AdversarialParams: each spectrogram width alone, each period width alone, both at the defaults."""
    from tfwaveglow.config import AdversarialParams

    default = AdversarialParams()
    no_mrd = {"mrd_fft_sizes": (), "mrd_hop_sizes": (), "mrd_win_lengths": ()}
    configs = {}
    for c in mrd_channels:
        configs[f"mrd_c{c}"] = dataclasses.replace(default, mrd_channels=c, mpd_periods=())
    for widths in mpd_channels:
        configs["mpd_c" + "-".join(map(str, widths))] = dataclasses.replace(default, mpd_channels=widths, **no_mrd)
    configs["default_mrd_and_mpd"] = default
    return configs


def conv_macs(discriminators, batch: int, length: int) -> int:
    """Multiply-adds of every convolution in one forward pass on ``[batch, length]``."""
    import tensorflow as tf

    scores, features = discriminators(tf.zeros([batch, length]))
    subs = [sub for kind in discriminators.kinds for sub in kind.subs]
    total = 0
    for sub, score, maps in zip(subs, scores, features):
        for conv, out in zip([*sub.convs, sub.conv_post], [*maps, score]):
            kh, kw, cin, _ = conv.kernel.shape
            total += int(tf.size(out)) * kh * kw * cin  # each output element: kh * kw * cin multiply-adds
    return total


def steps_for(a, batch: int, length: int, seed: int = 0) -> tuple[dict, dict]:
    """The three compiled steps of one configuration, and facts about it."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfwaveglow.objectives import adversarial
    from tfwaveglow.objectives.discriminators import Discriminators

    discriminators = Discriminators.from_params(a)
    optimizer = keras.optimizers.Adam(a.learning_rate, beta_1=a.beta_1, beta_2=a.beta_2)
    optimizer.build(discriminators.trainable_variables)
    rng = np.random.default_rng(seed)
    real = tf.constant((0.3 * rng.standard_normal((batch, length))).astype(np.float32))
    fake = tf.constant((0.3 * rng.standard_normal((batch, length))).astype(np.float32))
    variables = discriminators.trainable_variables

    @tf.function
    def d_step(real, fake):
        with tf.GradientTape() as tape:
            loss = adversarial.discriminator_loss(discriminators(real)[0], discriminators(fake)[0])
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function
    def d_step_joint(real, fake):
        with tf.GradientTape() as tape:
            scores = discriminators(tf.concat([real, fake], 0))[0]
            loss = adversarial.discriminator_loss([s[:batch] for s in scores], [s[batch:] for s in scores])
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function
    def g_side(real, fake):
        with tf.GradientTape() as tape:
            tape.watch(fake)
            real_scores, real_features = discriminators(real)
            fake_scores, fake_features = discriminators(fake)
            loss = adversarial.generator_adversarial_loss(fake_scores)
            loss += adversarial.feature_matching_loss(real_features, fake_features)
        return tape.gradient(loss, fake)

    functions = {
        "d_step": lambda: float(d_step(real, fake)),
        "d_step_joint": lambda: float(d_step_joint(real, fake)),
        "g_side": lambda: g_side(real, fake).numpy(),
    }
    facts = {
        "sub_discriminators": discriminators.num_discriminators,
        "parameters": int(sum(np.prod(v.shape) for v in variables)),
        "forward_gmac_per_batch": round(conv_macs(discriminators, batch, length) / 1e9, 4),
    }
    return functions, facts


def main(argv):
    info = bench_common.start(
        FLAGS,
        argv,
        quick={
            "batch": 2,
            "length": 2048,
            "mrd_channels": ["4"],
            "mpd_channels": ["4-8"],
            "matmul_sizes": ["256"],
            "repeats": 1,
        },
    )
    peak = matmul_peak.matmul_peak([int(n) for n in FLAGS.matmul_sizes], FLAGS.repeats, use_torch=False)
    host = host_info()
    bench_common.emit({"benchmark": "matmul_peak", **peak, **host, **info})
    mrd = [int(c) for c in FLAGS.mrd_channels]
    mpd = [tuple(int(c) for c in widths.split("-")) for widths in FLAGS.mpd_channels]
    for name, a in configurations(mrd, mpd).items():
        functions, facts = steps_for(a, FLAGS.batch, FLAGS.length)
        timings = bench_common.time_interleaved(functions, FLAGS.repeats, warmup=1)
        d_step_s = timings["d_step"]["median_s"]
        # d_step runs the forward on 2 batches and the backward (about twice the forward) on both.
        rate = 3 * 2 * facts["forward_gmac_per_batch"] / d_step_s
        record = {
            "benchmark": "discriminator_step",
            "config": name,
            "mrd_channels": a.mrd_channels if a.mrd_fft_sizes else None,
            "mrd_resolutions": [list(r) for r in zip(a.mrd_fft_sizes, a.mrd_hop_sizes, a.mrd_win_lengths)],
            "mpd_channels": list(a.mpd_channels) if a.mpd_periods else None,
            "mpd_periods": list(a.mpd_periods),
            "batch": FLAGS.batch,
            "length": FLAGS.length,
            **facts,
            "d_step_gmac_per_s": round(rate, 2),
            "d_step_fraction_of_peak": round(rate / peak["peak_gmac_per_s"], 4),
        }
        for fn_name, t in timings.items():
            record[fn_name] = {
                "median_s": round(t["median_s"], 4),
                "min_s": round(t["min_s"], 4),
                "cpu_median_s": round(t["cpu_median_s"], 4),
                "times_s": t["times_s"],
            }
        bench_common.emit({**record, **info, "load_1min_after": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    bench_common.run(main)
