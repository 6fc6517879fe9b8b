"""Running an exported SavedModel in a fresh process that cannot import tfwaveglow (export tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter (-I: no PYTHONPATH, no script dir on sys.path) from a temporary
# directory. tfwaveglow may be pip-installed in the environment (CI installs it), so the script
# also blocks it by name before anything else is imported: only TensorFlow serves the model.
FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["tfwaveglow"] = None  # any import of tfwaveglow now raises ImportError
    import json
    import numpy as np
    try:
        import tfwaveglow
        sys.exit("tfwaveglow must not be importable here")
    except ImportError:
        pass
    import tensorflow as tf

    inputs = dict(np.load(sys.argv[1]))
    results, errors = {}, {}
    main = tf.saved_model.load(sys.argv[2])
    sig = main.signatures
    results["variables"] = np.array(len(main.model_variables))
    for i, v in enumerate(main.model_variables):
        results[f"variable_{i}"] = v.numpy()
    results["variable_names"] = np.array([v.name for v in main.model_variables])

    results["from_latent"] = sig["synthesize_from_latent"](
        mel=inputs["mel"], z=inputs["z"], sigma=inputs["sigma"])["audio"].numpy()
    args = dict(mel=inputs["batch_mel"], mel_lengths=inputs["lengths"], sigma=inputs["batch_sigma"],
                denoiser_strength=inputs["strength"], seed=inputs["seeds"])
    out = sig["synthesize"](**args)
    results["synth_audio"], results["synth_lengths"] = out["audio"].numpy(), out["audio_lengths"].numpy()
    results["synth_again"] = sig["synthesize"](**args)["audio"].numpy()
    alone = {k: v[1:2] for k, v in args.items()}
    alone["mel"] = alone["mel"][:, : int(inputs["lengths"][1])]
    results["synth_alone"] = sig["synthesize"](**alone)["audio"].numpy()
    results["serving"] = sig["serving_default"](mel=inputs["mel"])["audio"].numpy()

    mel = inputs["mel"]
    nan_mel = mel.copy(); nan_mel[0, 3, 5] = np.nan
    bad_mels = {
        "channels": mel[:, :, :79], "nan": nan_mel, "zero_frames": mel[:, :0], "dtype": mel.astype(np.float64),
    }
    def call(name, fn, **kwargs):
        try:
            out = fn(**{k: tf.constant(v) for k, v in kwargs.items()})
            errors[name] = ["none", str({k: v.shape for k, v in out.items()})]
        except Exception as e:
            errors[name] = [type(e).__name__, str(e)]
    for problem, bad in bad_mels.items():
        call(f"serving_default/{problem}", sig["serving_default"], mel=bad)
        n = bad.shape[1]
        call(f"synthesize/{problem}", sig["synthesize"], mel=bad, mel_lengths=np.full(2, n, np.int32),
             sigma=inputs["sigma"], denoiser_strength=np.zeros(2, np.float32), seed=np.arange(2))
        call(f"synthesize_from_latent/{problem}", sig["synthesize_from_latent"], mel=bad,
             z=np.zeros([2, n * inputs["hop"] // 8, 8], np.float32), sigma=inputs["sigma"])
    call("synthesize/too_long", sig["synthesize"], mel=mel, mel_lengths=np.array([12, 13], np.int32),
         sigma=inputs["sigma"], denoiser_strength=np.zeros(2, np.float32), seed=np.arange(2))
    call("synthesize/lengths_count", sig["synthesize"], mel=mel, mel_lengths=np.array([12], np.int32),
         sigma=inputs["sigma"], denoiser_strength=np.zeros(2, np.float32), seed=np.arange(2))
    call("synthesize/negative_sigma", sig["synthesize"], mel=mel, mel_lengths=np.array([12, 12], np.int32),
         sigma=np.array([0.6, -1.0], np.float32), denoiser_strength=np.zeros(2, np.float32), seed=np.arange(2))
    call("synthesize/short_for_denoiser", sig["synthesize"], mel=mel, mel_lengths=np.array([12, 2], np.int32),
         sigma=inputs["sigma"], denoiser_strength=np.array([0.0, 0.1], np.float32), seed=np.arange(2))
    call("synthesize/seed_dtype", sig["synthesize"], mel=mel, mel_lengths=np.array([12, 12], np.int32),
         sigma=inputs["sigma"], denoiser_strength=np.zeros(2, np.float32), seed=np.arange(2).astype(np.int32))
    call("synthesize_from_latent/z_shape", sig["synthesize_from_latent"], mel=mel, z=inputs["z"][:, :-1],
         sigma=inputs["sigma"])
    call("synthesize_from_latent/z_nan", sig["synthesize_from_latent"], mel=mel, z=inputs["z"] * np.nan,
         sigma=inputs["sigma"])
    call("serving_default/rank", sig["serving_default"], mel=mel[0])
    np.savez(sys.argv[3], **results)
    with open(sys.argv[4], "w") as f:
        json.dump(errors, f)
    """
)


def run(cmd, **kwargs):
    env = kwargs.pop("env", None) or dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def run_in_fresh_process(tmp, saved_model_path: str, inputs: dict) -> tuple[dict, dict]:
    """Calls every signature of the SavedModel at ``saved_model_path`` in a fresh ``python -I``.

    Args:
      tmp: a scratch directory (``pathlib.Path``).
      saved_model_path: the version directory.
      inputs: the arrays :data:`FRESH_PROCESS_SCRIPT` reads (``mel``, ``z``, ``sigma``, ``batch_mel``,
        ``lengths``, ``batch_sigma``, ``strength``, ``seeds``, ``hop``).

    Returns:
      ``(results, errors)``: the script's outputs and, per bad-input case, ``[exception type, message]``.
    """
    np.savez(tmp / "inputs.npz", **inputs)
    script = tmp / "fresh.py"
    script.write_text(FRESH_PROCESS_SCRIPT)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run(
        [
            sys.executable,
            "-I",
            str(script),
            str(tmp / "inputs.npz"),
            saved_model_path,
            str(tmp / "results.npz"),
            str(tmp / "errors.json"),
        ],
        cwd=str(tmp),
        env=env,
    )
    return dict(np.load(tmp / "results.npz")), json.loads((tmp / "errors.json").read_text())


# A lighter fresh-process run: synthesize_from_latent (and, given seeds, synthesize without the
# denoiser) only, for tests that compare an export's audio with the model and need nothing else.
FROM_LATENT_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["tfwaveglow"] = None  # any import of tfwaveglow now raises ImportError
    import numpy as np
    import tensorflow as tf

    inputs = dict(np.load(sys.argv[1]))
    sig = tf.saved_model.load(sys.argv[2]).signatures
    results = {}
    results["from_latent"] = sig["synthesize_from_latent"](
        mel=inputs["mel"], z=inputs["z"], sigma=inputs["sigma"])["audio"].numpy()
    if "seeds" in inputs:
        batch, frames = inputs["mel"].shape[:2]
        results["seeded"] = sig["synthesize"](
            mel=inputs["mel"], mel_lengths=np.full(batch, frames, np.int32), sigma=inputs["sigma"],
            denoiser_strength=np.zeros(batch, np.float32), seed=inputs["seeds"])["audio"].numpy()
    np.savez(sys.argv[3], **results)
    """
)


def synthesize_in_fresh_process(tmp, saved_model_path: str, inputs: dict) -> dict:
    """Calls ``synthesize_from_latent`` (and ``synthesize`` when ``inputs`` has ``seeds``) in a fresh ``python -I``.

    Args:
      tmp: a scratch directory (``pathlib.Path``).
      saved_model_path: the version directory.
      inputs: ``mel`` ``[B, F, n_mel]``, ``z`` ``[B, F * hop / g, g]``, ``sigma`` ``[B]`` float32 and
        optionally ``seeds`` int64 ``[B]`` (``synthesize`` of every item's whole mel, no denoiser).

    Returns:
      ``{"from_latent": [B, F * hop]}`` and, with seeds, ``"seeded"`` ``[B, F * hop]``.
    """
    np.savez(tmp / "latent_inputs.npz", **inputs)
    script = tmp / "fresh_from_latent.py"
    script.write_text(FROM_LATENT_SCRIPT)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp / "latent_results.npz"
    run([sys.executable, "-I", str(script), str(tmp / "latent_inputs.npz"), saved_model_path, str(out)],
        cwd=str(tmp), env=env)  # fmt: skip
    return dict(np.load(out))
