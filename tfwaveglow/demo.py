"""Copy synthesis with the shipped model: recordings -> mel -> audio, beside Griffin-Lim.

    python -m tfwaveglow.demo [--input_dir=examples] [--model=models/fishfillets_cs] \\
        [--output_dir=demo_output] [--sigma=S] [--denoiser_strength=D] [--seed=0] \\
        [--griffin_lim_iterations=60]

Sigma and the denoiser strength default to the model's recommendations, the
``export`` section of its ``params.yaml`` (the shipped model: 0.6 and 0.1); where
that strength is 0 the demo uses 0.1, as ``waveglow_denoised.wav`` needs a
denoiser. The values used are printed.

For every ``.wav``/``.flac``/``.ogg`` under ``--input_dir`` (recursively) the
audio is read at the model's sampling rate and its log-mel computed with the
NVIDIA front end (:mod:`tfwaveglow.audio`); that mel is turned back into audio
three ways, all written as 16-bit wav into ``<output_dir>/<name>/`` (``name``
is the file's path under the input directory without its extension):

* ``original.wav``: the input as the model sees it (mono, resampled if needed);
* ``waveglow.wav``: ``model.infer(mel, sigma, seed=seed)``;
* ``waveglow_denoised.wav``: the same audio through the bias denoiser
  (:mod:`tfwaveglow.denoiser`) at ``--denoiser_strength``;
* ``griffin_lim.wav``: the baseline of :mod:`tfwaveglow.griffin_lim` (60
  iterations from a seeded random phase);
* ``mels.png``: the log-mels of the original and the three outputs side by side.

``summary.json`` lists every file with its duration, its outputs and each
output's scores against the original (log-mel distance, mel-cepstral
distortion, wideband PESQ and STOI; see :mod:`tfwaveglow.metrics`) and on its
own (DNSMOS SIG, BAK, OVRL and P.808 naturalness, 1 to 5; see
:mod:`tfwaveglow.naturalness`), the same for the original itself (its intrusive
scores against itself are each metric's ceiling, its DNSMOS what a perfect copy
would reach), averages, and the files that were skipped: a file that cannot be
read is reported and the others go on. PESQ, STOI and DNSMOS need the ``eval``
extra (``make demo`` installs it); without it they are ``null`` with the reason.
A table of the scores is printed: one row per file and system.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import flags

from tfwaveglow import cli

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_INPUT_DIR = os.path.join(_ROOT, "examples")
DEFAULT_MODEL = os.path.join(_ROOT, "models", "fishfillets_cs")
# The shipped model's hiss is audible at sigma 0.6; 0.1 is the top of NVIDIA's suggested
# 0.01..0.1 (how it moves each metric, checkpoint by checkpoint: docs/demo.md).
DEFAULT_DENOISER_STRENGTH = 0.1

# Output systems in file order; their wav names are "<system>.wav".
SYSTEMS = ("waveglow", "waveglow_denoised", "griffin_lim")
# Every scored signal: the original (original.wav) and the outputs.
SCORED = ("original", *SYSTEMS)
SYSTEM_TITLES = {
    "original": "Original",
    "waveglow": "WaveGlow",
    "waveglow_denoised": "WaveGlow + denoiser",
    "griffin_lim": "Griffin-Lim",
}
# The printed table's columns: (metric, heading, decimals).
TABLE_COLUMNS = (
    ("log_mel_distance", "log-mel", 3),
    ("mcd", "MCD", 2),
    ("pesq_wb", "PESQ", 2),
    ("stoi", "STOI", 3),
    ("dnsmos_sig", "SIG", 2),
    ("dnsmos_bak", "BAK", 2),
    ("dnsmos_ovrl", "OVRL", 2),
    ("dnsmos_p808", "P.808", 2),
)
ORIGINAL_NAME = "original.wav"
MEL_IMAGE_NAME = "mels.png"
SUMMARY_NAME = "summary.json"

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "input_dir", DEFAULT_INPUT_DIR, "Directory searched recursively for .wav, .flac and .ogg files.", flag_values=FLAGS
)
flags.DEFINE_string(
    "model",
    DEFAULT_MODEL,
    "Inference model dir (params.yaml + weights.npz), training run dir or checkpoint.",
    flag_values=FLAGS,
)
flags.DEFINE_string("output_dir", "demo_output", "Where the outputs and summary.json go.", flag_values=FLAGS)
flags.DEFINE_float(
    "sigma", None, "WaveGlow's latent standard deviation (default: the model's export.sigma).", flag_values=FLAGS
)
flags.DEFINE_float(
    "denoiser_strength",
    None,
    f"Denoiser strength of waveglow_denoised.wav (default: the model's export.denoiser_strength, "
    f"{DEFAULT_DENOISER_STRENGTH:g} where that is 0).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("seed", 0, "Seed of every file's latent and Griffin-Lim initial phase.", flag_values=FLAGS)
flags.DEFINE_integer("griffin_lim_iterations", 60, "Griffin-Lim iterations.", flag_values=FLAGS)


class InputError(ValueError):
    """One input file cannot be synthesised (unreadable, empty, too short); the message names it."""


def settings_from_model(export, sigma: float | None = None, denoiser_strength: float | None = None):
    """The demo's sigma and denoiser strength: the given values, else the model's recommendations.

    Args:
      export: the model's ``params.export`` (``sigma``, ``denoiser_strength``).
      sigma, denoiser_strength: from the command line, or None.

    Returns:
      ``(sigma, denoiser_strength, description)``; the description says where each came from.
      A recommended strength of 0 (no denoiser) gives :data:`DEFAULT_DENOISER_STRENGTH`.
    """
    if sigma is None:
        sigma, sigma_source = float(export.sigma), "the model's export.sigma"
    else:
        sigma, sigma_source = float(sigma), "--sigma"
    if denoiser_strength is not None:
        strength, strength_source = float(denoiser_strength), "--denoiser_strength"
    elif export.denoiser_strength > 0:
        strength, strength_source = float(export.denoiser_strength), "the model's export.denoiser_strength"
    else:
        strength, strength_source = DEFAULT_DENOISER_STRENGTH, "the demo's default: the model recommends no denoiser"
    return sigma, strength, f"sigma {sigma:g} ({sigma_source}), denoiser strength {strength:g} ({strength_source})"


def output_names(rel_paths: list[str]) -> dict:
    """``{rel_path: output folder}``: the path without its extension, unless two files share it."""
    stems = [os.path.splitext(p)[0] for p in rel_paths]
    return {p: (stem if stems.count(stem) == 1 else p) for p, stem in zip(rel_paths, stems)}


def plot_mels(path: str, log_mels: dict, sampling_rate: int, hop_length: int) -> None:
    """Writes the log-mels side by side, one panel per ``{title: [frames, n_mel]}``, on one colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tfwaveglow.audio import log_clamp_value

    low = log_clamp_value()
    high = max(float(np.max(m)) for m in log_mels.values())
    fig, axes = plt.subplots(1, len(log_mels), figsize=(4.2 * len(log_mels), 3.4), sharey=True, squeeze=False)
    for ax, (title, mel) in zip(axes[0], log_mels.items()):
        seconds = mel.shape[0] * hop_length / sampling_rate
        image = ax.imshow(
            mel.T, origin="lower", aspect="auto", vmin=low, vmax=high, extent=[0, seconds, 0, mel.shape[1]]
        )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds")
    axes[0][0].set_ylabel("mel channel")
    fig.colorbar(image, ax=axes[0].tolist(), label="ln(mel magnitude)", fraction=0.02, pad=0.01)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def demo_file(model, params, path: str, output_dir: str, *, sigma, denoiser, denoiser_strength, seed, iterations):
    """Copy-synthesises one file into ``output_dir``; returns its summary entry.

    Raises:
      InputError: the file cannot be read, or is too short for the mel front end.
    """
    import numpy as np

    from tfwaveglow import audio as audio_lib
    from tfwaveglow import evaluation, griffin_lim

    audio_params = params.audio
    rate = int(audio_params.sampling_rate)
    try:
        reference = audio_lib.load_audio(path, rate)
    except audio_lib.AudioError as e:
        raise InputError(str(e)) from None
    if reference.shape[0] < denoiser.min_samples:
        # The mel front end's centred STFT needs the same; the denoiser's STFT is the front end's.
        raise InputError(f"{path}: {reference.shape[0]} samples, too short (at least {denoiser.min_samples} needed)")
    mel = audio_lib.mel_spectrogram(reference, audio_params)
    length = reference.shape[0]

    timings, waves = {}, {}
    start = time.perf_counter()
    wave = evaluation.synthesize_waveglow(model, mel, sigma=sigma, seed=seed)
    timings["waveglow"] = time.perf_counter() - start
    start = time.perf_counter()
    denoised = evaluation.denoise(denoiser, wave, denoiser_strength)
    timings["waveglow_denoised"] = timings["waveglow"] + time.perf_counter() - start
    waves["waveglow"], waves["waveglow_denoised"] = wave[:length], denoised[:length]
    start = time.perf_counter()
    waves["griffin_lim"] = griffin_lim.vocode(mel, audio_params, iterations, length=length, seed=seed)
    timings["griffin_lim"] = time.perf_counter() - start
    values, outputs, errors = evaluation.score_outputs(reference, waves, audio_params)
    original_values, original_errors = evaluation.score_reference(reference, audio_params)
    values = {"original": original_values, **values}
    errors.update({f"original.{name}": reason for name, reason in original_errors.items()})

    os.makedirs(output_dir, exist_ok=True)
    original = audio_lib.quantize_int16(reference)
    audio_lib.save_wav(os.path.join(output_dir, ORIGINAL_NAME), original, rate)
    written = [ORIGINAL_NAME]
    log_mels = {"original": audio_lib.mel_spectrogram(original, audio_params)}
    for system in SYSTEMS:
        if system not in outputs:
            continue  # non-finite output: reported in errors, nothing to listen to
        name = f"{system}.wav"
        audio_lib.save_wav(os.path.join(output_dir, name), outputs[system], rate)
        written.append(name)
        title = SYSTEM_TITLES[system]
        if system == "waveglow":
            title += f" (sigma {sigma:g})"
        elif system == "waveglow_denoised":
            title += f" ({denoiser_strength:g})"
        else:
            title += f" ({iterations} it.)"
        log_mels[title] = audio_lib.mel_spectrogram(outputs[system], audio_params)
    plot_mels(os.path.join(output_dir, MEL_IMAGE_NAME), log_mels, rate, int(audio_params.hop_length))
    written.append(MEL_IMAGE_NAME)

    entry = {
        "seconds": length / float(rate),
        "frames": int(mel.shape[0]),
        "outputs": written,
        "metrics": values,
        "synthesis_seconds": timings,
        "peak": {system: float(np.max(np.abs(w))) for system, w in outputs.items()},
    }
    if errors:
        entry["errors"] = errors
    return entry


def run_demo(
    model,
    params,
    input_dir: str,
    output_dir: str,
    *,
    sigma: float = 0.6,
    denoiser_strength: float = DEFAULT_DENOISER_STRENGTH,
    seed: int = 0,
    griffin_lim_iterations: int = 60,
    model_path: str | None = None,
) -> dict:
    """Copy synthesis of every audio file under ``input_dir``; writes the outputs and ``summary.json``.

    Args:
      model: a :class:`tfwaveglow.WaveGlow`.
      params: its params (the audio front end).
      input_dir: searched recursively for ``.wav``, ``.flac`` and ``.ogg``.
      output_dir: created if missing; one folder per input file plus ``summary.json``.
      sigma: WaveGlow's latent standard deviation.
      denoiser_strength: the bias denoiser's strength for ``waveglow_denoised.wav`` (> 0).
      seed: seed of every file's latent and Griffin-Lim initial phase.
      griffin_lim_iterations: Griffin-Lim iterations.
      model_path: recorded in the summary.

    Returns:
      The summary (also written to ``<output_dir>/summary.json``).

    Raises:
      tfwaveglow.evaluation.EvaluationError: ``input_dir`` is missing or holds no
        audio files, or a bad sigma, iteration count or denoiser strength (not > 0).
    """
    from tfwaveglow import evaluation

    rel_paths = evaluation.copy_synthesis_inputs(
        input_dir,
        sigma=sigma,
        griffin_lim_iterations=griffin_lim_iterations,
        role="input",
        denoiser_strength=denoiser_strength,
        denoiser_required=True,
    )
    denoiser = evaluation.make_denoiser(model, params.audio, denoiser_strength)

    started = time.perf_counter()
    files, skipped = [], []
    names = output_names(rel_paths)
    for rel_path in rel_paths:
        path = os.path.join(input_dir, rel_path)
        try:
            entry = demo_file(
                model,
                params,
                path,
                os.path.join(output_dir, names[rel_path]),
                sigma=sigma,
                denoiser=denoiser,
                denoiser_strength=denoiser_strength,
                seed=seed,
                iterations=griffin_lim_iterations,
            )
        except InputError as e:
            message = str(e)
            print(f"demo: skipped {message}", file=sys.stderr)
            skipped.append({"file": rel_path, "error": message})
            continue
        files.append({"file": rel_path, "output_dir": names[rel_path], **entry})

    summary = {
        "model": model_path,
        "input_dir": os.fspath(input_dir),
        "sampling_rate": int(params.audio.sampling_rate),
        "sigma": float(sigma),
        "denoiser_strength": float(denoiser_strength),
        "seed": int(seed),
        "griffin_lim_iterations": int(griffin_lim_iterations),
        "outputs": {
            ORIGINAL_NAME: "the input at the model's sampling rate, mono, 16-bit",
            "waveglow.wav": f"WaveGlow from the original's log-mel, sigma {sigma:g}",
            "waveglow_denoised.wav": f"waveglow.wav through the bias denoiser, strength {denoiser_strength:g}",
            "griffin_lim.wav": f"Griffin-Lim from the same log-mel, {griffin_lim_iterations} iterations",
            MEL_IMAGE_NAME: "log-mels of the original and the three outputs",
        },
        "metrics": {
            "log_mel_distance": "RMS natural-log mel difference to the original (lower is better)",
            "mcd": "mel-cepstral distortion in dB, no DTW (lower is better)",
            "pesq_wb": "wideband PESQ, MOS-LQO 1..4.64 (higher is better; needs the eval extra)",
            "stoi": "short-time objective intelligibility 0..1 (higher is better; needs the eval extra)",
            "dnsmos_sig": "DNSMOS P.835 speech signal quality, no reference, about 1..5 (higher is better; "
            "needs the eval extra)",
            "dnsmos_bak": "DNSMOS P.835 background (noise) quality, no reference, about 1..5 (higher is better; "
            "needs the eval extra)",
            "dnsmos_ovrl": "DNSMOS P.835 overall quality, no reference, about 1..5 (higher is better; "
            "needs the eval extra)",
            "dnsmos_p808": "DNSMOS P.808 overall quality, no reference, about 1..5 (higher is better; "
            "needs the eval extra)",
        },
        "scored": {
            "original": "the original against itself (each intrusive metric's ceiling) and its own DNSMOS",
            **{system: f"{system}.wav against the original, and its own DNSMOS" for system in SYSTEMS},
        },
        "num_files": len(files),
        "num_skipped": len(skipped),
        "total_seconds_of_audio": float(sum(f["seconds"] for f in files)),
        "elapsed_seconds": time.perf_counter() - started,
        "files": files,
        "skipped": skipped,
        "average": evaluation.average_metrics([f["metrics"] for f in files], SCORED),
    }
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, SUMMARY_NAME), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return summary


def format_summary(summary: dict) -> str:
    """A plain-text table of the summary: per file one row per scored signal, then the means, then the skipped files.

    Columns: log-mel distance, MCD, PESQ-WB and STOI against the original, then DNSMOS SIG,
    BAK, OVRL and P.808 of the signal alone; ``-`` where a score is missing (the ``eval``
    extra not installed, or a metric that failed).
    """
    systems = [system for system in SCORED if system in summary["average"]]
    width = max(len(SYSTEM_TITLES[system]) for system in systems)
    head = f"{'file':36s} {'sec':>5s}  {'system':{width}s}"
    lines = [head + "".join(f" {label:>7s}" for _, label, _ in TABLE_COLUMNS)]

    def rows(name, seconds, values):
        for i, system in enumerate(systems):
            first = f"{name[:36]:36s} {seconds:5.2f}" if i == 0 else " " * 42
            cells = []
            for metric, _, digits in TABLE_COLUMNS:
                value = values[system].get(metric)
                cells.append("-" if value is None else f"{value:.{digits}f}")
            lines.append(f"{first}  {SYSTEM_TITLES[system]:{width}s}" + "".join(f" {c:>7s}" for c in cells))

    for entry in summary["files"]:
        rows(entry["file"], entry["seconds"], entry["metrics"])
    means = {s: {m: v["mean"] for m, v in values.items()} for s, values in summary["average"].items()}
    rows("mean", summary["total_seconds_of_audio"], means)
    lines += [f"skipped {item['error']}" for item in summary["skipped"]]
    return "\n".join(lines)


def main(argv) -> None:
    """Runs the demo; ``argv`` may carry the flags when called from Python."""
    cli.parse_argv(FLAGS, argv)
    from tfwaveglow import evaluation
    from tfwaveglow.model_io import load_model_and_params

    hint = " (the shipped model is made by scripts/ship_model.py)" if FLAGS.model == DEFAULT_MODEL else ""
    with cli.exit_on_error("demo", not_found_hint=hint):
        model, params = load_model_and_params(FLAGS.model)
    sigma, denoiser_strength, settings = settings_from_model(params.export, FLAGS.sigma, FLAGS.denoiser_strength)
    print(f"demo: {settings}")
    with cli.exit_on_error("demo", evaluation.EvaluationError):
        summary = run_demo(
            model,
            params,
            FLAGS.input_dir,
            FLAGS.output_dir,
            sigma=sigma,
            denoiser_strength=denoiser_strength,
            seed=FLAGS.seed,
            griffin_lim_iterations=FLAGS.griffin_lim_iterations,
            model_path=FLAGS.model,
        )
    print(format_summary(summary))
    print(f"wrote {summary['num_files']} file(s) of outputs and {SUMMARY_NAME} to {FLAGS.output_dir}")
    if not summary["files"]:
        sys.exit(f"demo: error: none of the {summary['num_skipped']} input files could be synthesised")


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
