"""Synthesis throughput of tfwaveglow next to the PyTorch reference of NVIDIA's model; prints JSON.

    PYTHONPATH=. python benchmarks/synthesis_speed.py [--models=default,small] [--seconds=1,10]
        [--batches=1,8] [--paths=infer,composed] [--threads=2] [--repeats=3] [--quick]

Both frameworks get the same weights (random, non-trivial), the same mel and
the same latent, in the same process and thread count, timed in interleaved
rounds (median reported). PyTorch runs ``tests/reference/glow.py`` with weight
norm removed under ``torch.inference_mode``, as NVIDIA synthesises. TensorFlow
paths:

``infer``     ``model.infer_fn``: the compiled ``model.infer`` (pinned signature).
``composed``  the same with ``model.compose_conditioning()`` (2 GB for the default model).
``bfloat16``  ``model.infer_function(mel_dtype=tf.bfloat16)``: WNs in bfloat16, flow in float32.
``savedmodel`` the exported SavedModel (``tfwaveglow.export``) loaded with
              ``tf.saved_model.load``, signature ``synthesize`` (seeded latents,
              item by item, clipped to [-1, 1]: what TF Serving runs).
``savedmodel_latent`` the same SavedModel, signature ``synthesize_from_latent``.
``savedmodel_bfloat16`` the ``--precision=bfloat16`` export, ``synthesize_from_latent``.
``litert``    the LiteRT export (``--format=tflite``, float32) in ``ai-edge-litert``'s
              interpreter (batch 1 only), ``synthesize_from_latent``.

PyTorch runs in float32 (``torch``) and, with ``--torch_bfloat16``, under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (``torch_bfloat16``).

Item ``i`` of a batch uses the latent ``synthesis.draw_latent(i, ...)`` in every
path and in PyTorch, so all outputs are comparable (``savedmodel`` against
PyTorch's output clipped to [-1, 1]).

One JSON line per (model, seconds, batch): per path the median seconds, kHz of
audio per second, real-time factor (compute time / audio duration; < 1 is
faster than real time), the speed ratio to PyTorch, and the fraction of the
machine's matmul peak (``benchmarks/matmul_peak.py``) reached, counting the
multiply-adds of NVIDIA's formulation (``nominal``) and those actually executed.
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_list(
    "models",
    ["default", "small"],
    "default (params.yaml), small (configs/small.yaml), tiny, or params YAML paths.",
    flag_values=FLAGS,
)
flags.DEFINE_list("seconds", ["1", "10"], "Audio durations to synthesise (seconds at 22.05 kHz).", flag_values=FLAGS)
flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.", flag_values=FLAGS)
flags.DEFINE_list(
    "paths",
    ["infer", "composed", "savedmodel"],
    "TensorFlow paths: infer, composed, bfloat16, savedmodel, savedmodel_latent, savedmodel_bfloat16, litert.",
    flag_values=FLAGS,
)
flags.DEFINE_list("peak_sizes", ["2048"], "Matmul sizes for the peak (empty: skip).", flag_values=FLAGS)
flags.DEFINE_string("dilated_conv", None, "Override model.wn.dilated_conv.", flag_values=FLAGS)
flags.DEFINE_bool("torch_bfloat16", True, "Also time PyTorch under bfloat16 autocast.", flag_values=FLAGS)
bench_common.define_run_flags(FLAGS, 3, "Smoke run: a tiny model, 0.1 s, batch 1, one round.")

TINY = {"model.n_flows": 4, "model.wn.n_layers": 2, "model.wn.n_channels": 8}


def load_model_params(name: str):
    """``default``, ``small`` or ``tiny``, or the path of a params YAML (e.g. a training run's ``params.yaml``)."""
    import tfwaveglow

    root = bench_common.REPO_ROOT
    if name.endswith((".yaml", ".yml")):
        return tfwaveglow.load_params(name)
    if name == "default":
        return tfwaveglow.load_params(os.path.join(root, "params.yaml"))
    if name == "small":
        return tfwaveglow.load_params(os.path.join(root, "configs", "small.yaml"))
    if name == "tiny":
        return tfwaveglow.load_params(os.path.join(root, "params.yaml"), overrides=TINY)
    raise ValueError(f"unknown model {name!r}: default, small, tiny or a params YAML")


def macs_per_sample(model) -> dict:
    """Multiply-adds per audio sample: NVIDIA's formulation and what ``infer`` executes (with and without composing).

    Elementwise work (gates, affine steps) is left out; it is not matrix work.
    """
    g, c, L, k = model.n_group, model.wn_n_channels, model.wn_n_layers, model.wn_kernel_size
    n_mel = model.n_mel_channels
    windows = -(-model.upsample_kernel_size // model.upsample_stride)
    upsampler = n_mel * n_mel * windows  # each output sample sums `windows` frames
    nominal = upsampler * g
    direct = upsampler * g
    composed = 0
    remaining = g
    for flow in range(model.n_flows):
        if model._early_output_before(flow):
            remaining -= model.n_early_size
        n_half = remaining // 2
        convinv = remaining * remaining * 2  # forward/inverse 1x1 conv (inverse: W^-1, counted alike)
        start, end = n_half * c, c * 2 * n_half
        in_layers = L * k * c * 2 * c
        cond = n_mel * g * 2 * c * L
        res_skip = (L - 1) * c * 2 * c + c * c
        nominal += convinv + start + in_layers + cond + res_skip + end
        # Executed: layer 0 on [audio, 1] with start . in_layers[0]; skip . end per layer; residual halves.
        wn_direct = start + k * (n_half + 1) * 2 * c + (L - 1) * k * c * 2 * c + (L - 1) * c * c + L * c * 2 * n_half
        direct += convinv + wn_direct + cond
        composed += convinv + wn_direct + windows * n_mel * 2 * c * L
    return {"nominal": nominal / g, "infer": direct / g, "composed": composed / g}


def main(argv):
    quick = {"models": ["tiny"], "seconds": ["0.1"], "batches": ["1"], "repeats": 1, "peak_sizes": ["256"]}
    info = bench_common.start(FLAGS, argv, quick=quick)
    import tensorflow as tf
    from matmul_peak import matmul_peak

    peak = matmul_peak([int(n) for n in FLAGS.peak_sizes], 3, FLAGS.torch) if FLAGS.peak_sizes else None
    if peak:
        bench_common.emit({"benchmark": "matmul_peak", **peak, **info})
    for model_name in FLAGS.models:
        params = load_model_params(model_name)
        model = bench_common.random_model(params, FLAGS.dilated_conv)
        functions_by_path = {}
        if "infer" in FLAGS.paths:
            functions_by_path["infer"] = model.infer_fn
        if "composed" in FLAGS.paths:
            functions_by_path["composed"] = model.infer_function(conditioning=model.compose_conditioning())
        if "bfloat16" in FLAGS.paths:
            functions_by_path["bfloat16"] = model.infer_function(mel_dtype=tf.bfloat16)
        if {"savedmodel", "savedmodel_latent"} & set(FLAGS.paths):
            loaded = exported(model, params)
            for path in ("savedmodel", "savedmodel_latent"):
                if path in FLAGS.paths:
                    functions_by_path[path] = loaded[path]
        if "savedmodel_bfloat16" in FLAGS.paths:
            functions_by_path["savedmodel_bfloat16"] = exported(model, params, "bfloat16")["savedmodel_latent"]
        if "litert" in FLAGS.paths:
            functions_by_path["litert"] = litert_runner(model, params)
        reference = bench_common.torch_reference_from(model, params) if FLAGS.torch else None
        for seconds in (float(s) for s in FLAGS.seconds):
            for batch in (int(b) for b in FLAGS.batches):
                record = measure(model, functions_by_path, reference, seconds, batch, FLAGS.repeats, peak)
                record["model"] = model_name
                bench_common.emit({**record, **info, "load_1min_after": round(os.getloadavg()[0], 2)})


def exported(model, params, precision: str = "float32") -> dict:
    """``model`` exported with ``tfwaveglow.export``, loaded back: path name -> ``fn(mel, sigma, z) -> audio``."""
    import tempfile

    import tensorflow as tf

    from tfwaveglow.export import export_saved_model

    directory = tempfile.mkdtemp(prefix="synthesis_speed_")
    loaded = tf.saved_model.load(export_saved_model(model, params, f"{directory}/waveglow/1", precision=precision))
    synthesize_signature = loaded.signatures["synthesize"]
    latent_signature = loaded.signatures["synthesize_from_latent"]

    def synthesize(mel, sigma, z):
        # Seeds 0..B-1: the signature draws draw_latent(i, ...) for item i, the ``z`` every path gets.
        del z
        batch, frames = tf.shape(mel)[0], tf.shape(mel)[1]
        return synthesize_signature(
            mel=mel,
            mel_lengths=tf.fill([batch], frames),
            sigma=tf.fill([batch], sigma),
            denoiser_strength=tf.zeros([batch]),
            seed=tf.range(batch, dtype=tf.int64),
        )["audio"]

    def synthesize_from_latent(mel, sigma, z):
        return latent_signature(mel=mel, z=z, sigma=tf.fill(tf.shape(mel)[:1], sigma))["audio"]

    synthesize.loaded = synthesize_from_latent.loaded = loaded  # keeps the SavedModel's variables alive
    return {"savedmodel": synthesize, "savedmodel_latent": synthesize_from_latent}


def litert_runner(model, params):
    """``model``'s float32 LiteRT export in ``ai-edge-litert``'s interpreter: ``fn(mel, sigma, z) -> audio``.

    Batch 1 only.
    """
    import tempfile

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from tfwaveglow.export_litert import LITERT_SIGNATURE, export_litert

    path = export_litert(model, params, tempfile.mkdtemp(prefix="synthesis_speed_") + "/waveglow.tflite")
    interpreter = Interpreter(model_path=path, num_threads=FLAGS.threads)
    run = interpreter.get_signature_runner(LITERT_SIGNATURE)

    class Audio:  # what the TensorFlow paths return: ``.numpy()``
        def __init__(self, array):
            self.array = array

        def numpy(self):
            return self.array

    def synthesize_from_latent(mel, sigma, z):
        if mel.shape[0] != 1:
            raise ValueError("the LiteRT model takes batch 1")
        sigma = np.full([1], float(sigma), np.float32)
        return Audio(run(mel=np.asarray(mel), z=np.asarray(z), sigma=sigma)["audio"])

    synthesize_from_latent.interpreter = interpreter
    return synthesize_from_latent


def _tf_runner(fn, mel, sigma, z, outputs: dict, path: str):
    def run():
        outputs[path] = fn(mel, sigma, z).numpy()

    return run


def _torch_runner(reference, mel_np, z_np, outputs: dict, bfloat16: bool = False):
    import contextlib

    import torch

    spect = torch.from_numpy(mel_np).transpose(1, 2)
    z = torch.from_numpy(z_np).transpose(1, 2)
    name = "torch_bfloat16" if bfloat16 else "torch"

    def run():
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            outputs[name] = reference.infer(spect, sigma=0.6, z=z).float().numpy()

    return run


def snr_db(estimate, reference) -> float:
    """``10 log10(|reference|^2 / |estimate - reference|^2)`` over all samples."""
    import numpy as np

    error = np.sum((np.asarray(estimate, np.float64) - reference) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(np.sum(np.asarray(reference, np.float64) ** 2) / error))


def measure(model, functions_by_path: dict, reference, seconds: float, batch: int, repeats: int, peak) -> dict:
    """Times every TensorFlow path and the PyTorch reference on one (duration, batch); returns the record."""
    import numpy as np
    import tensorflow as tf

    hop, g, sr = model.hop_length, model.n_group, 22050
    frames = max(1, round(seconds * sr / hop))
    from tfwaveglow.synthesis import draw_latent

    rng = np.random.default_rng(frames * 10 + batch)
    mel_np = rng.normal(-5.0, 2.0, (batch, frames, model.n_mel_channels)).astype(np.float32)
    z_np = np.stack([draw_latent(i, frames * hop // g, g).numpy() for i in range(batch)])
    mel, z, sigma = tf.constant(mel_np), tf.constant(z_np), tf.constant(0.6)
    outputs, functions = {}, {}
    for path, fn in functions_by_path.items():
        path_mel = tf.cast(mel, tf.bfloat16) if path == "bfloat16" else mel
        functions[path] = _tf_runner(fn, path_mel, sigma, z, outputs, path)
        fn(path_mel[:1, :2], sigma, z[:1, : 2 * hop // g])  # traces once; longer inputs reuse the trace
    if reference is not None:
        functions["torch"] = _torch_runner(reference, mel_np, z_np, outputs)
        if FLAGS.torch_bfloat16:
            functions["torch_bfloat16"] = _torch_runner(reference, mel_np, z_np, outputs, bfloat16=True)
    timings = bench_common.time_interleaved(functions, repeats, warmup=0)
    samples = batch * frames * hop
    work = macs_per_sample(model)
    record = {
        "benchmark": "synthesis",
        "wn_channels": model.wn_n_channels,
        "dilated_conv": model.couplings[0].wn.dilated_conv,
        "audio_seconds": round(frames * hop / sr, 3),
        "batch": batch,
        "frames": frames,
        "macs_per_sample": {k: int(v) for k, v in work.items()},
    }
    torch_times = [timings[name]["median_s"] for name in ("torch", "torch_bfloat16") if name in timings]
    torch_time = min(torch_times) if torch_times else None
    for name, t in timings.items():
        entry = {
            "median_s": round(t["median_s"], 4),
            "cpu_median_s": round(t["cpu_median_s"], 4),
            "khz": round(samples / t["median_s"] / 1e3, 2),
            "rtf": round(t["median_s"] / (samples / sr), 4),
            "times_s": t["times_s"],
        }
        if torch_time and not name.startswith("torch"):
            entry["speedup_vs_faster_torch"] = round(torch_time / t["median_s"], 3)
        if peak:
            # bfloat16 paths against the bfloat16 peak, the others against float32's.
            peak_rate = peak["peak_gmac_per_s_bfloat16" if "bfloat16" in name else "peak_gmac_per_s"]
            rate = samples / t["median_s"] / 1e9 / peak_rate
            executed = work.get(name, work["nominal"] if name.startswith("torch") else work["infer"])
            entry["peak_fraction_nominal"] = round(rate * work["nominal"], 3)
            entry["peak_fraction_executed"] = round(rate * executed, 3)
        record[name] = entry
    float32 = outputs.get("savedmodel_latent", outputs.get("infer"))
    if float32 is not None:
        record["snr_db_vs_float32"] = {
            name: round(snr_db(out, float32), 1)
            for name, out in outputs.items()
            if "bfloat16" in name or name == "litert"
        }
    if "torch" in outputs:
        scale = float(np.max(np.abs(outputs["torch"]))) or 1.0
        clipped = np.clip(outputs["torch"], -1.0, 1.0)  # the ``synthesize`` signature clips
        record["max_rel_diff_vs_torch"] = {
            name: float(f"{np.max(np.abs(out - (clipped if name == 'savedmodel' else outputs['torch']))) / scale:.3g}")
            for name, out in outputs.items()
            if name != "torch"
        }
    return record


if __name__ == "__main__":
    bench_common.run(main)
