"""Synthesise speech with a WaveGlow model: mel spectrograms in, 16-bit wavs out.

    python synthesize.py --model=DIR --output_dir=out --mel a.npy --mel b.pt
    python synthesize.py --model=DIR --output_dir=out --mel_dir mels/
    python synthesize.py --model=DIR --output_dir=out --wav speech.wav    # copy synthesis: wav -> mel -> wav
    python synthesize.py --model=DIR --output_dir=out a.npy b.pt speech.wav   # chosen by suffix

``--model`` is an inference model directory (e.g. a converted NVIDIA model), a
training run directory or an exported SavedModel. Mels are ``.npy`` arrays
``[frames, n_mel]`` or NVIDIA/Tacotron 2's ``[n_mel, frames]`` (an ``[n_mel,
n_mel]`` array is read as ``[frames, n_mel]``), or PyTorch ``.pt`` tensors
(``[n_mel, frames]`` or ``[1, n_mel, frames]``; needs torch). Positional
arguments are input files too: ``.npy``/``.pt`` mels, and ``.wav``/``.flac``/``.ogg``
audio for copy synthesis. Each output is ``OUTPUT_DIR/<input name>.wav`` at the
model's sampling rate. Input ``i`` (in the order ``--mel``, ``--mel_dir`` sorted by
name, ``--wav``, then the positional files) uses the latent of seed ``--seed + i``,
so outputs do not depend on ``--batch_size`` or on which other inputs fail. A bad
input is reported and skipped; the rest still synthesise, and the exit status is
1 if any failed. ``--sigma`` and ``--denoiser_strength`` default to the model's
recommendations (``export.sigma``, ``export.denoiser_strength`` of its
``params.yaml``); the values used are printed.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from tfwaveglow import cli

FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "Inference model dir, training run dir or exported SavedModel.", flag_values=FLAGS)
flags.DEFINE_string("output_dir", None, "Directory for the synthesised wavs.", flag_values=FLAGS)
flags.DEFINE_multi_string("mel", [], "Mel file (.npy or .pt); repeat for more.", flag_values=FLAGS)
flags.DEFINE_string("mel_dir", None, "Directory of mel files (*.npy, *.pt).", flag_values=FLAGS)
flags.DEFINE_multi_string(
    "wav", [], "Audio file for copy synthesis (wav -> mel -> wav); repeat for more.", flag_values=FLAGS
)
flags.DEFINE_float(
    "sigma", None, "Standard deviation of the latent (default: the model's export.sigma).", flag_values=FLAGS
)
flags.DEFINE_float(
    "denoiser_strength",
    None,
    "Bias denoiser strength (0: off; NVIDIA suggests 0.01 to 0.1; default: the model's export.denoiser_strength).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("seed", 0, "Latent seed of the first input; input i uses seed + i.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 1, "Utterance windows per model call.", flag_values=FLAGS)
flags.DEFINE_integer(
    "window_frames",
    None,
    "Mel frames per synthesis window (long inputs are windowed); default 512, or four times the model's "
    "context where that is more than half of 512.",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "conditioning",
    "auto",
    ["auto", "plain", "composed"],
    "Conditioning path of an in-memory model: composed (faster, exact, costs memory), plain, "
    "or auto (composed when it fits in a quarter of the RAM). A SavedModel runs as exported.",
    flag_values=FLAGS,
)
flags.mark_flags_as_required(["model", "output_dir"], flag_values=FLAGS)

MEL_SUFFIXES = (".npy", ".pt")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def read_torch_mel(path: str, n_mel: int):
    """A mel saved with ``torch.save`` as float32 ``[frames, n_mel]`` (needs PyTorch)."""
    from tfwaveglow.synthesis import MelError, mel_from_array

    try:
        import torch
    except ImportError:
        raise MelError(f"{path}: reading .pt mels needs PyTorch (pip install torch)") from None
    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MelError(f"{path}: file not found") from None
    except Exception as e:  # torch raises many types for a corrupt file
        raise MelError(f"{path}: not a readable PyTorch tensor file: {e}") from None
    if not isinstance(tensor, torch.Tensor):
        raise MelError(f"{path}: expected a tensor, got {type(tensor).__name__}")
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return mel_from_array(tensor.detach().numpy(), n_mel, source=path, channels_first=True)


def input_kind(path: str) -> str:
    """``"mel"`` or ``"wav"`` (audio for copy synthesis) by the file's suffix; a usage error for any other."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in MEL_SUFFIXES:
        return "mel"
    if suffix in AUDIO_SUFFIXES:
        return "wav"
    raise app.UsageError(
        f"{path}: unknown input file type {suffix or '(no suffix)'!r}: expected a mel "
        f"({', '.join(MEL_SUFFIXES)}) or audio for copy synthesis ({', '.join(AUDIO_SUFFIXES)})"
    )


def collect_inputs(positional: list[str] = ()) -> list[tuple[str, str]]:
    """``(kind, path)`` for every input, in order: ``--mel``, ``--mel_dir`` (sorted), ``--wav``, ``positional``."""
    inputs = [("mel", p) for p in FLAGS.mel]
    if FLAGS.mel_dir:
        if not os.path.isdir(FLAGS.mel_dir):
            raise app.UsageError(f"--mel_dir {FLAGS.mel_dir} is not a directory")
        names = sorted(n for n in os.listdir(FLAGS.mel_dir) if n.endswith(MEL_SUFFIXES))
        inputs += [("mel", os.path.join(FLAGS.mel_dir, n)) for n in names]
    inputs += [("wav", p) for p in FLAGS.wav]
    inputs += [(input_kind(p), p) for p in positional]
    return inputs


def synthesis_settings(export) -> tuple[float, float, str]:
    """``(sigma, denoiser_strength, description)``: each flag if given, else the model's ``export`` value."""
    values, described = [], []
    for name, label in (("sigma", "sigma"), ("denoiser_strength", "denoiser strength")):
        flag = FLAGS[name].value
        value = float(getattr(export, name) if flag is None else flag)
        source = f"--{name}" if flag is not None else f"the model's export.{name}"
        values.append(value)
        described.append(f"{label} {value:g} ({source})")
    return values[0], values[1], ", ".join(described)


def load_input(kind: str, path: str, engine):
    """The input's mel ``[frames, n_mel]``; raises MelError/AudioError naming the file."""
    from tfwaveglow.synthesis import MelError, read_mel

    n_mel = engine.n_mel_channels
    if kind == "wav":
        from tfwaveglow import audio

        wave = audio.load_audio(path, engine.params.audio.sampling_rate)
        return audio.mel_spectrogram(wave, engine.params.audio)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".pt":
        return read_torch_mel(path, n_mel)
    if suffix != ".npy":
        raise MelError(f"{path}: unknown mel file type (expected .npy or .pt)")
    return read_mel(path, n_mel)


def output_paths(inputs: list[tuple[str, str]], output_dir: str) -> list[str]:
    """``OUTPUT_DIR/<stem>.wav`` per input; a repeated stem gets ``_<index>``."""
    paths, seen = [], set()
    for index, (_, path) in enumerate(inputs):
        stem = os.path.splitext(os.path.basename(path))[0]
        name = stem if stem not in seen else f"{stem}_{index}"
        seen.add(name)
        paths.append(os.path.join(output_dir, name + ".wav"))
    return paths


def main(argv) -> int:
    """Synthesises every input; ``argv`` may carry the flags when called from Python."""
    positional = cli.parse_argv(FLAGS, argv, positional=True)[1:]
    if FLAGS.batch_size < 1:
        raise app.UsageError("--batch_size must be >= 1")
    if any(value is not None and value < 0 for value in (FLAGS.sigma, FLAGS.denoiser_strength)):
        raise app.UsageError("--sigma and --denoiser_strength must be >= 0")
    inputs = collect_inputs(positional)
    if not inputs:
        raise app.UsageError("nothing to synthesise: pass input files, --mel, --mel_dir or --wav")

    from tfwaveglow import audio
    from tfwaveglow.synthesis import Synthesizer, load_engine

    try:
        engine = load_engine(FLAGS.model, conditioning=FLAGS.conditioning)
    except (OSError, ValueError) as e:  # missing files, ModelLoadError, ConfigError
        print(f"cannot load the model: {e}", file=sys.stderr)
        return 2
    sigma, denoiser_strength, settings = synthesis_settings(engine.params.export)
    if sigma < 0 or denoiser_strength < 0:  # only a model's own params.yaml can get here
        print(f"sigma and denoiser strength must be >= 0, got {settings}", file=sys.stderr)
        return 2
    print(f"synthesising with {settings}")
    try:
        synthesizer = Synthesizer(engine, window_frames=FLAGS.window_frames, batch_size=FLAGS.batch_size)
    except ValueError as e:  # a window no larger than the model's context
        raise app.UsageError(f"--window_frames: {e}") from None
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    outputs = output_paths(inputs, FLAGS.output_dir)

    failures: dict[str, str] = {}
    ready = []  # (index, mel)
    for index, (kind, path) in enumerate(inputs):
        if os.path.abspath(outputs[index]) == os.path.abspath(path):
            failures[path] = f"the output {outputs[index]} would overwrite the input"
            continue
        try:
            ready.append((index, load_input(kind, path, engine)))
        except (ValueError, OSError) as e:  # MelError and AudioError are ValueErrors
            failures[path] = str(e)

    def synthesize_and_write(group):
        results = synthesizer.synthesize(
            [mel for _, mel in group],
            sigma=sigma,
            denoiser_strength=denoiser_strength,
            seeds=[FLAGS.seed + index for index, _ in group],
        )
        for (index, _), wave in zip(group, results):
            audio.save_wav(outputs[index], wave, synthesizer.sampling_rate)
            print(f"{inputs[index][1]} -> {outputs[index]} ({wave.shape[0] / synthesizer.sampling_rate:.2f} s)")

    # Similar lengths side by side, so utterances of equal length share model calls.
    ready.sort(key=lambda item: item[1].shape[0])
    for begin in range(0, len(ready), FLAGS.batch_size):
        group = ready[begin : begin + FLAGS.batch_size]
        try:
            synthesize_and_write(group)
        except Exception:  # retried one by one below, so a failure names its input
            for item in group:
                try:
                    synthesize_and_write([item])
                except Exception as e:  # reported and counted; the rest go on
                    failures[inputs[item[0]][1]] = f"{type(e).__name__}: {e}"

    for path, message in failures.items():
        print(f"FAILED {message if message.startswith(path) else f'{path}: {message}'}", file=sys.stderr)
    done = len(inputs) - len(failures)
    print(f"synthesised {done} of {len(inputs)} inputs into {FLAGS.output_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
