"""Copy-synthesis evaluation: resynthesise reference recordings from their mels and score them.

For every audio file under a reference directory (``.wav``, ``.flac``, ``.ogg``,
recursively): load it at ``audio.sampling_rate`` (:func:`tfwaveglow.audio.load_audio`),
compute its log-mel with the NVIDIA front end, and turn that mel back into audio
twice:

* ``waveglow``: ``model.infer(mel[None], sigma, seed=seed)`` (the latent is a pure
  function of the seed and the mel's length, so a rerun reproduces every score),
  optionally followed by the bias denoiser;
* ``griffin_lim``: the baseline of :mod:`tfwaveglow.griffin_lim` (pseudo-inverse
  mel to linear magnitude, 60 Griffin-Lim iterations, the same seed for its
  random initial phase). Its scores do not depend on the model, so a job that
  scores many checkpoints of one model on the same references can leave it out
  (``with_griffin_lim=False``) after the first.

Both outputs are cut to the reference's length and rounded to 16-bit PCM (what
the written ``.wav`` files hold), then scored against the reference with the
metrics of :mod:`tfwaveglow.metrics`: log-mel spectral distance, mel-cepstral
distortion, wideband PESQ and STOI; and on their own with the non-intrusive
naturalness predictor of :mod:`tfwaveglow.naturalness` (DNSMOS P.835 SIG, BAK,
OVRL and DNSMOS P.808, 1 to 5). The recording itself is the third system,
``reference``: it is scored against itself (log-mel distance and MCD 0, PESQ
about 4.64, STOI 1: the ceiling of each intrusive metric) and by DNSMOS, the
naturalness a perfect vocoder would reach. Like Griffin-Lim, its row does not
depend on the model and is left out with ``with_griffin_lim=False``.

A reference that cannot be read or is too short gets an ``error`` entry and the
rest go on; a metric that fails for one file (PESQ finding no utterance, say)
leaves that value ``null`` with the reason in the file's ``errors`` (one reason,
keyed ``dnsmos``, for the four DNSMOS values). Averages are means over the files
where the metric was computed, with their count.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from importlib import metadata

import numpy as np

from tfwaveglow import audio as audio_lib
from tfwaveglow import griffin_lim, metrics, naturalness
from tfwaveglow.config import Params, load_params
from tfwaveglow.preprocess import find_audio_files

__all__ = [
    "INTRUSIVE_METRICS",
    "JSON_NAME",
    "MARKDOWN_NAME",
    "METRICS",
    "NATURALNESS_METRICS",
    "SYSTEMS",
    "EvaluationError",
    "average_metrics",
    "copy_synthesis_inputs",
    "denoise",
    "evaluate_directory",
    "evaluate_file",
    "evaluated_systems",
    "load_model_and_params",
    "make_denoiser",
    "markdown_report",
    "score",
    "score_outputs",
    "score_reference",
    "synthesize_waveglow",
    "write_report",
]

# The recording (scored against itself), then the two copy syntheses; table order.
SYSTEMS = ("reference", "waveglow", "griffin_lim")
SYSTEM_LABELS = {"reference": "Recording", "waveglow": "WaveGlow", "griffin_lim": "Griffin-Lim"}
# Intrusive metrics (against the reference), then the non-intrusive naturalness (DNSMOS).
INTRUSIVE_METRICS = ("log_mel_distance", "mcd", "pesq_wb", "stoi")
NATURALNESS_METRICS = naturalness.KEYS
METRICS = INTRUSIVE_METRICS + NATURALNESS_METRICS
METRIC_LABELS = {
    "log_mel_distance": "log-mel dist.",
    "mcd": "MCD (dB)",
    "pesq_wb": "PESQ-WB",
    "stoi": "STOI",
    "dnsmos_sig": "DNSMOS SIG",
    "dnsmos_bak": "DNSMOS BAK",
    "dnsmos_ovrl": "DNSMOS OVRL",
    "dnsmos_p808": "DNSMOS P.808",
}
# The key of a file's ``errors`` entry when DNSMOS fails (one reason for its four values).
NATURALNESS_ERROR = "dnsmos"
ERROR_LABELS = {**METRIC_LABELS, NATURALNESS_ERROR: "DNSMOS"}
# Packages whose versions the report records: the optional metrics' (the ``eval`` extra).
METRIC_PACKAGES = ("pesq", "pystoi", "speechmos", "onnxruntime")
JSON_NAME = "evaluation.json"
MARKDOWN_NAME = "evaluation.md"


class EvaluationError(RuntimeError):
    """The evaluation cannot run at all: no reference files, a bad setting, or no denoiser."""


def load_model_and_params(model_path: str, params_path: str | None = None):
    """Loads a model for synthesis together with the params it was built from.

    Args:
      model_path: an inference model directory (``params.yaml`` + ``weights.npz``), a
        training run directory, or a checkpoint prefix inside one (anything
        :func:`tfwaveglow.load_model` accepts).
      params_path: a YAML file to use instead of the ``params.yaml`` beside the model.

    Returns:
      ``(model, params)``.

    Raises:
      FileNotFoundError: no model, or no params file, at the path.
      tfwaveglow.ModelLoadError: the weights do not fit the params.
    """
    from tfwaveglow.model_io import load_model_and_params

    return load_model_and_params(model_path, params=load_params(params_path) if params_path else None)


def score(reference, degraded, audio_params) -> tuple[dict, dict]:
    """Every metric of one degraded signal: against its reference, and DNSMOS on its own.

    Args:
      reference, degraded: ``[samples]`` audio at ``audio_params.sampling_rate``.
      audio_params: ``params.audio``.

    Returns:
      ``(values, errors)``: ``values[metric]`` is a float for each of :data:`METRICS`, or
      None when the metric failed, in which case ``errors[metric]`` says why (for the four
      DNSMOS values one reason, ``errors["dnsmos"]``).
    """
    rate = int(audio_params.sampling_rate)
    functions = {
        "log_mel_distance": lambda: metrics.log_mel_distance(reference, degraded, audio_params),
        "mcd": lambda: metrics.mel_cepstral_distortion(reference, degraded, audio_params),
        "pesq_wb": lambda: metrics.pesq_wb(reference, degraded, rate),
        "stoi": lambda: metrics.stoi(reference, degraded, rate),
    }
    values, errors = {}, {}
    for name in INTRUSIVE_METRICS:
        try:
            values[name] = functions[name]()
        except metrics.MetricError as e:
            values[name], errors[name] = None, str(e)
        except ImportError as e:
            # PESQ and STOI come from optional packages (the ``eval`` extra).
            values[name], errors[name] = None, f"{METRIC_LABELS[name]} needs the package {e.name}: {e}"
    try:
        values.update(naturalness.dnsmos(degraded, rate))
    except metrics.MetricError as e:
        values.update(dict.fromkeys(NATURALNESS_METRICS))
        errors[NATURALNESS_ERROR] = str(e)
    except ImportError as e:
        # The DNSMOS networks (speechmos) and their runtime (onnxruntime): the ``eval`` extra too.
        values.update(dict.fromkeys(NATURALNESS_METRICS))
        errors[NATURALNESS_ERROR] = f"DNSMOS needs the package {e.name}: {e}"
    return values, errors


def score_reference(reference, audio_params) -> tuple[dict, dict]:
    """The recording's own row: every metric of ``reference`` against itself, and its DNSMOS.

    The intrusive metrics give their ceiling (log-mel distance and MCD 0, PESQ-WB about 4.64,
    STOI 1; a silent or too short recording fails them as it fails its copy syntheses); DNSMOS
    gives the naturalness a perfect copy synthesis would reach.

    Args:
      reference: ``[samples]`` audio at ``audio_params.sampling_rate``, scored as given (not rounded).
      audio_params: ``params.audio``.

    Returns:
      ``(values, errors)`` as :func:`score`.
    """
    return score(reference, reference, audio_params)


def score_outputs(reference, waves: dict, audio_params) -> tuple[dict, dict, dict]:
    """Rounds each synthesised signal to 16-bit PCM and scores it against the reference.

    Args:
      reference: ``[samples]`` audio.
      waves: ``{system: [samples] float array}`` (cut to the reference's length).
      audio_params: ``params.audio``.

    Returns:
      ``(values, outputs, errors)``: ``values[system]`` maps every metric to a float or
      None; ``outputs[system]`` is the 16-bit-valued float32 audio of each system whose
      samples were all finite; ``errors`` maps ``"<system>"`` (non-finite output) or
      ``"<system>.<metric>"`` (a metric that failed; ``"<system>.dnsmos"`` for DNSMOS) to the reason.
    """
    values, outputs, errors = {}, {}, {}
    for system, wave in waves.items():
        bad = int(np.count_nonzero(~np.isfinite(wave)))
        if bad:
            errors[system] = f"{SYSTEM_LABELS.get(system, system)} produced {bad} non-finite (NaN or Inf) samples"
            values[system] = dict.fromkeys(METRICS)
            continue
        # Score what a listener gets: the 16-bit samples of the written file.
        outputs[system] = audio_lib.quantize_int16(wave)
        values[system], metric_errors = score(reference, outputs[system], audio_params)
        errors.update({f"{system}.{name}": reason for name, reason in metric_errors.items()})
    return values, outputs, errors


def make_denoiser(model, audio_params, strength: float):
    """The bias denoiser for ``model`` at the front end's STFT, or None for strength 0.

    Args:
      model: a :class:`tfwaveglow.WaveGlow`.
      audio_params: ``params.audio`` (filter_length, hop_length, win_length).
      strength: the denoiser strength, >= 0.

    Raises:
      EvaluationError: a negative strength, or ``tfwaveglow.denoiser`` is not installed.
    """
    _check_denoiser_strength(strength)
    if strength == 0:
        return None
    try:
        from tfwaveglow.denoiser import Denoiser
    except ImportError as e:
        raise EvaluationError(f"a denoiser strength of {strength} needs tfwaveglow.denoiser: {e}") from None
    return Denoiser.from_model(
        model,
        n_fft=int(audio_params.filter_length),
        hop_length=int(audio_params.hop_length),
        win_length=int(audio_params.win_length),
    )


def synthesize_waveglow(model, mel, *, sigma: float, seed: int) -> np.ndarray:
    """WaveGlow's copy synthesis of one mel: ``model.infer(mel[None], sigma, seed=seed)``.

    Args:
      model: a :class:`tfwaveglow.WaveGlow`.
      mel: ``[frames, n_mel]`` log-mel.
      sigma: the latent's standard deviation.
      seed: the latent's seed (the latent is a pure function of it and the mel's length).

    Returns:
      float32 ``[frames * hop]``.
    """
    import tensorflow as tf

    return model.infer(tf.constant(mel[None], tf.float32), sigma=sigma, seed=seed)[0].numpy()


def denoise(denoiser, wave, strength: float) -> np.ndarray:
    """``denoiser`` (a ``tfwaveglow.denoiser.Denoiser``) on one signal: ``[samples] -> [samples]`` float32."""
    return denoiser(np.asarray(wave, np.float32)[None], strength)[0].numpy()


def evaluate_file(
    model,
    params: Params,
    path: str,
    *,
    sigma: float,
    seed: int = 0,
    griffin_lim_iterations: int = griffin_lim.DEFAULT_ITERATIONS,
    denoiser=None,
    denoiser_strength: float = 0.0,
    with_griffin_lim: bool = True,
) -> tuple[dict, dict]:
    """Copy-synthesises and scores one reference file, and scores the recording itself.

    Args:
      model: a :class:`tfwaveglow.WaveGlow` (weight norm folded or not).
      params: its params (``params.audio`` is the front end).
      path: the reference audio file.
      sigma: WaveGlow's latent standard deviation.
      seed: seed of WaveGlow's latent and of Griffin-Lim's initial phase.
      griffin_lim_iterations: Griffin-Lim iterations.
      denoiser: an optional ``tfwaveglow.denoiser.Denoiser`` for the WaveGlow output.
      denoiser_strength: its strength.
      with_griffin_lim: also run and score the Griffin-Lim baseline, and score the recording
        (``reference``); neither depends on the model.

    Returns:
      ``(entry, audio)``: the report entry (``seconds``, per-system metric values,
      ``synthesis_seconds``, and ``errors`` ``{"<system>.<metric>" or "<system>": reason}``
      when something failed) and ``{system: [samples] 16-bit-valued float32}`` for the
      synthesised systems that produced finite audio.

    Raises:
      tfwaveglow.audio.AudioError: the file cannot be read.
      ValueError: the audio is too short for the mel front end.
    """
    audio_params = params.audio
    reference = audio_lib.load_audio(path, audio_params.sampling_rate)
    mel = audio_lib.mel_spectrogram(reference, audio_params)
    length = reference.shape[0]
    entry = {"seconds": length / float(audio_params.sampling_rate)}
    systems = evaluated_systems(with_griffin_lim)
    errors = {}
    if "reference" in systems:
        entry["reference"], reference_errors = score_reference(reference, audio_params)
        errors.update({f"reference.{name}": reason for name, reason in reference_errors.items()})
    waves, timings = {}, {}
    for system in systems:
        if system == "reference":
            continue
        start = time.perf_counter()
        if system == "waveglow":
            wave = synthesize_waveglow(model, mel, sigma=sigma, seed=seed)
            if denoiser is not None:
                wave = denoise(denoiser, wave, denoiser_strength)
            wave = np.asarray(wave, np.float64)[:length]
        else:
            wave = griffin_lim.vocode(mel, audio_params, griffin_lim_iterations, length=length, seed=seed)
        timings[system] = time.perf_counter() - start
        waves[system] = wave
    values, outputs, output_errors = score_outputs(reference, waves, audio_params)
    errors.update(output_errors)
    entry.update(values)
    entry["synthesis_seconds"] = timings
    if errors:
        entry["errors"] = errors
    return entry, outputs


def evaluated_systems(with_griffin_lim: bool = True) -> tuple[str, ...]:
    """The systems a copy-synthesis job scores: the recording, WaveGlow and Griffin-Lim, or WaveGlow alone.

    The recording's and Griffin-Lim's scores do not depend on the model, so a job that scores
    many checkpoints on the same references leaves both out after the first.
    """
    return SYSTEMS if with_griffin_lim else ("waveglow",)


def average_metrics(values: list[dict], systems=SYSTEMS) -> dict:
    """Means over files of each system's metrics, skipping the files where one was not computed.

    Args:
      values: one ``{system: {metric: float or None}}`` per file.
      systems: the systems to average.

    Returns:
      ``{system: {metric: {"mean": float or None, "files": count}}}``.
    """
    averages = {}
    for system in systems:
        averages[system] = {}
        for name in METRICS:
            found = [v[system][name] for v in values if system in v and v[system][name] is not None]
            averages[system][name] = {"mean": float(np.mean(found)) if found else None, "files": len(found)}
    return averages


def _output_name(rel_path: str, used: set) -> str:
    """``female/a.ogg`` -> ``female/a.wav``; ``a.wav`` and ``a.flac`` in one folder do not overwrite each other."""
    name = os.path.splitext(rel_path)[0] + ".wav"
    if name in used:
        name = rel_path + ".wav"
    used.add(name)
    return name


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _check_denoiser_strength(strength: float) -> None:
    if strength < 0 or not math.isfinite(strength):
        raise EvaluationError(f"the denoiser strength must be >= 0, got {strength}")


def copy_synthesis_inputs(
    directory: str,
    *,
    sigma: float,
    griffin_lim_iterations: int,
    role: str,
    denoiser_strength: float = 0.0,
    denoiser_required: bool = False,
) -> list[str]:
    """Checks a copy-synthesis job's input directory and settings: the one check for evaluate and the demo.

    Args:
      directory: searched recursively for ``.wav``, ``.flac`` and ``.ogg``.
      sigma: WaveGlow's latent standard deviation (finite, >= 0).
      griffin_lim_iterations: the baseline's iterations (>= 0).
      role: what the directory is, for the messages (``"reference"``, ``"input"``).
      denoiser_strength: the bias denoiser's strength (finite, >= 0; 0 for none).
      denoiser_required: the job needs a denoiser (the demo's ``waveglow_denoised.wav``):
        the strength must be > 0.

    Returns:
      The audio files' paths relative to ``directory``, sorted.

    Raises:
      EvaluationError: the directory is missing or holds no audio files, or a bad setting.
    """
    if not os.path.isdir(directory):
        raise EvaluationError(f"{role} directory {directory} does not exist")
    rel_paths = find_audio_files(directory)
    if not rel_paths:
        raise EvaluationError(f"{role} directory {directory} holds no .wav, .flac or .ogg files")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise EvaluationError(f"sigma must be >= 0, got {sigma}")
    if griffin_lim_iterations < 0:
        raise EvaluationError(f"griffin_lim_iterations must be >= 0, got {griffin_lim_iterations}")
    if denoiser_required and not (math.isfinite(denoiser_strength) and denoiser_strength > 0):
        raise EvaluationError(f"denoiser_strength must be > 0, got {denoiser_strength}")
    _check_denoiser_strength(denoiser_strength)
    return rel_paths


def evaluate_directory(
    model,
    params: Params,
    reference_dir: str,
    *,
    sigma: float | None = None,
    denoiser_strength: float | None = None,
    seed: int = 0,
    griffin_lim_iterations: int = griffin_lim.DEFAULT_ITERATIONS,
    output_dir: str | None = None,
    save_audio: bool = True,
    model_path: str | None = None,
    progress: bool = False,
    with_griffin_lim: bool = True,
) -> dict:
    """Copy-synthesis evaluation of ``model`` on every audio file under ``reference_dir``.

    Args:
      model: a :class:`tfwaveglow.WaveGlow`.
      params: its params (the audio front end and the export defaults).
      reference_dir: searched recursively for ``.wav``, ``.flac`` and ``.ogg``.
      sigma: WaveGlow's latent standard deviation (default ``params.export.sigma``).
      denoiser_strength: bias denoiser strength, 0 for none (default
        ``params.export.denoiser_strength``).
      seed: seed of every file's latent and Griffin-Lim initial phase.
      griffin_lim_iterations: the baseline's iterations.
      output_dir: when given, :func:`write_report` writes ``evaluation.json`` and
        ``evaluation.md`` there, and (``save_audio``) each output as
        ``<output_dir>/<system>/<relative path>.wav``.
      save_audio: write the synthesised audio into ``output_dir``.
      model_path: recorded in the report.
      progress: show a progress bar on stderr.
      with_griffin_lim: also run the Griffin-Lim baseline and score the recordings themselves
        (``reference``); without them the report's ``systems`` is ``["waveglow"]`` and
        ``griffin_lim_iterations`` is None.

    Returns:
      The report dict (see ``docs/evaluation.md``): settings, ``systems``, ``files`` (one entry per
      reference, with ``error`` for a file that could not be evaluated), ``average``
      ``{system: {metric: {"mean", "files"}}}``, ``num_files``, ``num_failed``.

    Raises:
      EvaluationError: ``reference_dir`` is missing or holds no audio files, or a bad setting.
    """
    sigma = float(params.export.sigma if sigma is None else sigma)
    strength = float(params.export.denoiser_strength if denoiser_strength is None else denoiser_strength)
    rel_paths = copy_synthesis_inputs(
        reference_dir,
        sigma=sigma,
        griffin_lim_iterations=griffin_lim_iterations,
        role="reference",
        denoiser_strength=strength,
    )
    denoiser = make_denoiser(model, params.audio, strength)

    started = time.perf_counter()
    files, used_names = [], set()
    iterator = rel_paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rel_paths, desc="evaluate", unit="file", file=sys.stderr, dynamic_ncols=True)
    for rel_path in iterator:
        try:
            entry, outputs = evaluate_file(
                model,
                params,
                os.path.join(reference_dir, rel_path),
                sigma=sigma,
                seed=seed,
                griffin_lim_iterations=griffin_lim_iterations,
                denoiser=denoiser,
                denoiser_strength=strength,
                with_griffin_lim=with_griffin_lim,
            )
        except ValueError as e:
            # AudioError (unreadable, empty, non-finite) and a clip too short for the front end.
            message = str(e) if rel_path in str(e) else f"{os.path.join(reference_dir, rel_path)}: {e}"
            files.append({"file": rel_path, "error": message})
            continue
        entry = {"file": rel_path, **entry}
        if output_dir is not None and save_audio:
            name = _output_name(rel_path, used_names)
            entry["outputs"] = {}
            for system, wave in outputs.items():
                target = os.path.join(output_dir, system, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                audio_lib.save_wav(target, wave, params.audio.sampling_rate)
                entry["outputs"][system] = f"{system}/{name}"
        files.append(entry)

    evaluated = [f for f in files if "error" not in f]
    systems = evaluated_systems(with_griffin_lim)
    result = {
        "reference_dir": os.fspath(reference_dir),
        "model": model_path,
        "sampling_rate": int(params.audio.sampling_rate),
        "sigma": sigma,
        "denoiser_strength": strength,
        "seed": int(seed),
        "systems": list(systems),
        "griffin_lim_iterations": int(griffin_lim_iterations) if with_griffin_lim else None,
        "metrics": {
            "log_mel_distance": "RMS over frames and mel bins of the natural-log mel difference (lower is better)",
            "mcd": f"mel-cepstral distortion in dB, DCT-II c1..c{metrics.MCD_ORDER} of the log-mel, no DTW "
            "(lower is better)",
            "pesq_wb": "ITU-T P.862.2 wideband PESQ at 16 kHz, MOS-LQO (higher is better)",
            "stoi": "short-time objective intelligibility, 0..1 (higher is better)",
            "dnsmos_sig": "DNSMOS P.835 speech signal quality, no reference, about 1..5 (higher is better)",
            "dnsmos_bak": "DNSMOS P.835 background (noise) quality, no reference, about 1..5 (higher is better)",
            "dnsmos_ovrl": "DNSMOS P.835 overall quality, no reference, about 1..5 (higher is better)",
            "dnsmos_p808": "DNSMOS P.808 overall quality, no reference, about 1..5 (higher is better)",
        },
        "packages": {name: _package_version(name) for name in METRIC_PACKAGES},
        "num_files": len(files),
        "num_failed": len(files) - len(evaluated),
        "total_seconds_of_audio": float(sum(f["seconds"] for f in evaluated)),
        "elapsed_seconds": time.perf_counter() - started,
        "files": files,
        "average": average_metrics(evaluated, systems),
    }
    if output_dir is not None:
        write_report(result, output_dir)
    return result


def _format(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


_DIGITS = {"log_mel_distance": 3, "mcd": 2, "pesq_wb": 2, "stoi": 3, **dict.fromkeys(NATURALNESS_METRICS, 2)}


def markdown_report(result: dict) -> str:
    """The report as markdown: settings, a table of per-file and mean scores, then every error.

    The table has one row per file and system (the recording, WaveGlow, Griffin-Lim), one column
    per metric, then the means per system.
    """
    systems = tuple(result.get("systems", SYSTEMS))
    if "griffin_lim" in systems:
        baseline = f"Griffin-Lim: pseudo-inverse mel basis, {result['griffin_lim_iterations']} iterations"
    else:
        baseline = "Griffin-Lim not run"
    lines = [
        "# Copy-synthesis evaluation",
        "",
        f"Model `{result['model']}`, sigma {result['sigma']:g}, denoiser strength {result['denoiser_strength']:g}, "
        f"seed {result['seed']}; {baseline}. References: `{result['reference_dir']}`, {result['num_files']} files "
        f"({result['num_failed']} could not be evaluated), {result['total_seconds_of_audio']:.1f} s of audio "
        f"at {result['sampling_rate']} Hz.",
        "",
        "Lower is better for the log-mel distance and MCD, higher for PESQ (1 to 4.64), STOI (0 to 1) and the "
        "DNSMOS naturalness scores (about 1 to 5, predicted from each signal alone, no reference).",
    ]
    if "reference" in systems:
        lines.append(
            "The Recording rows score each reference against itself (the ceiling of the intrusive metrics) "
            "and give its own DNSMOS, the naturalness a perfect copy would reach."
        )
    lines.append("")
    header = ["file", "seconds", "system"] + [METRIC_LABELS[name] for name in METRICS]
    lines += [
        "| " + " | ".join(header) + " |",
        "| --- | ---: | --- | " + " | ".join(["---:"] * len(METRICS)) + " |",
    ]
    evaluated = [f for f in result["files"] if "error" not in f]
    for entry in evaluated:
        for i, system in enumerate(systems):
            row = [f"`{entry['file']}`", f"{entry['seconds']:.2f}"] if i == 0 else ["", ""]
            values = entry.get(system) or {}
            row += [SYSTEM_LABELS[system]] + [_format(values.get(name), _DIGITS[name]) for name in METRICS]
            lines.append("| " + " | ".join(row) + " |")
    for i, system in enumerate(systems):
        row = ["**mean**", f"{result['total_seconds_of_audio']:.2f}"] if i == 0 else ["", ""]
        row.append(SYSTEM_LABELS[system])
        for name in METRICS:
            average = result["average"][system].get(name, {"mean": None, "files": 0})
            cell = f"**{_format(average['mean'], _DIGITS[name])}**"
            if average["files"] != len(evaluated):
                cell += f" (n={average['files']})"
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    problems = []
    for entry in result["files"]:
        if "error" in entry:
            problems.append(f"- `{entry['file']}`: not evaluated: {entry['error']}")
        for key, reason in sorted(entry.get("errors", {}).items()):
            system, _, name = key.partition(".")
            what = SYSTEM_LABELS[system] + (f" {ERROR_LABELS.get(name, name)}" if name else "")
            problems.append(f"- `{entry['file']}` {what}: {reason}")
    if problems:
        lines += ["Errors:", "", *problems, ""]
    return "\n".join(lines)


def write_report(result: dict, output_dir: str) -> tuple[str, str]:
    """Writes ``evaluation.json`` and ``evaluation.md`` into ``output_dir``; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = (os.path.join(output_dir, JSON_NAME), os.path.join(output_dir, MARKDOWN_NAME))
    contents = (json.dumps(result, indent=2) + "\n", markdown_report(result))
    for path, text in zip(paths, contents):
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return paths
