"""Mel-to-audio synthesis: reading mels, latents from seeds, windowed batching, long inputs.

Every utterance is synthesised as if in one call ``model.infer(mel, sigma, z)``
on its whole mel, with ``z`` drawn from the utterance's own seed
(:func:`draw_latent`), however long it is and whatever else is in the batch:

* **Receptive field.** One audio sample of the inverse depends on the latent
  and mel within a bounded context: each coupling's WN sees
  ``model.receptive_field()`` group steps per side, the ``n_flows`` couplings
  stack (the 1x1 convs are pointwise), a post-filter (if the model has one)
  adds ``model.postfilter_receptive_field()`` samples per side on the
  waveform, and the transposed-conv upsampler spreads a frame over
  ``upsample_kernel_size`` samples to its right (the ``repeat`` upsampler over
  ``frame_context`` frames either side). :func:`context_frames` turns that into
  frames of left and right context.
* **Windows.** An utterance longer than ``window_frames`` is cut into windows
  of exactly ``window_frames`` frames that overlap by that context
  (:func:`plan_windows`); each window is synthesised from its slice of the
  utterance's latent and only the part of it with full context is kept. The
  first window starts at frame 0 and the last ends at the last frame, so the
  utterance's true ends see exactly what one-shot synthesis sees. Peak memory
  depends on the window, not the length.
* **Batching.** Windows are independent and all the same shape, so windows of
  any utterances batch together; an utterance shorter than a window is one
  window of its own length and batches with utterances of that length. No
  output depends on the batch it ran in.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfwaveglow.config import load_params
from tfwaveglow.denoiser import Denoiser, denoise_in_blocks
from tfwaveglow.model import ComposedConditioning
from tfwaveglow.model_io import PARAMS_FILE, load_model_and_params

__all__ = [
    "LATENT_SEED_STREAM",
    "MelError",
    "ModelEngine",
    "SavedModelEngine",
    "Synthesizer",
    "Window",
    "composed_conditioning_budget",
    "context_frames",
    "draw_latent",
    "load_engine",
    "mel_from_array",
    "plan_windows",
    "read_mel",
    "receptive_context_frames",
    "window_rule",
]

# The second word of the stateless seed pair: z = stateless_normal(..., seed=[seed, LATENT_SEED_STREAM]).
LATENT_SEED_STREAM = 0

# Frames per window: about 6 s of audio at 22.05 kHz / hop 256, where the
# default model's context (about 2 x 100 frames) costs under a third extra.
DEFAULT_WINDOW_FRAMES = 512


# Frames added to the derived context on each side of a window.
WINDOW_MARGIN_FRAMES = 1


def window_rule(
    context: tuple[int, int], window_frames: int | None = None, margin_frames: int = WINDOW_MARGIN_FRAMES
) -> tuple[tuple[int, int], int]:
    """The windowing every synthesis path uses: ``(context with margins, window_frames)``.

    Args:
      context: ``(left, right)`` frames a kept frame needs (:func:`context_frames`).
      window_frames: frames per window; None: :func:`default_window_frames`.
      margin_frames: frames added to the context on each side.

    Raises:
      ValueError: ``window_frames`` not above the context with its margins.
    """
    left, right = (int(c) + margin_frames for c in context)
    if window_frames is None:
        window_frames = default_window_frames((left, right))
    if window_frames <= left + right:
        raise ValueError(f"window_frames ({window_frames}) must exceed the model's context ({left} + {right} frames)")
    return (left, right), int(window_frames)


def default_window_frames(context: tuple[int, int]) -> int:
    """:data:`DEFAULT_WINDOW_FRAMES`, or four times the context where that is under half of it.

    A frame-rate model (``n_group`` 256) sees far more frames than NVIDIA's, e.g.
    12 couplings x 127 steps = 1524 frames each side; its windows are then that
    much longer (its activations per frame are small, so memory stays low).

    Args:
      context: ``(left, right)`` frames a kept frame needs, margins included.
    """
    need = sum(context)
    return DEFAULT_WINDOW_FRAMES if DEFAULT_WINDOW_FRAMES > 2 * need else 4 * need


class MelError(ValueError):
    """A mel that cannot be synthesised; the message names the source and the problem."""


# ---------------------------------------------------------------------- mel input
def mel_from_array(array, n_mel: int, source: str = "mel", channels_first: bool = False) -> np.ndarray:
    """Validates a mel and returns it as float32 ``[frames, n_mel]``.

    Accepts ``[frames, n_mel]`` and NVIDIA/Tacotron 2's ``[n_mel, frames]``,
    optionally with a leading batch axis of 1. When both axes have ``n_mel``
    entries the layout is ambiguous; ``channels_first`` decides.

    Args:
      array: the mel (any array-like of a real floating dtype).
      n_mel: the model's mel channels.
      source: names the input in error messages (e.g. the file path).
      channels_first: the layout to assume for an ``[n_mel, n_mel]`` array.

    Raises:
      MelError: not a real floating array, wrong rank or channel count, zero
        frames, or NaN/Inf values.
    """
    array = np.asarray(array)
    if array.dtype.kind != "f":
        raise MelError(f"{source}: mel must be a floating-point array, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise MelError(
            f"{source}: mel must be 2-D [frames, {n_mel}] or [{n_mel}, frames], got shape {tuple(array.shape)}"
        )
    rows, cols = array.shape
    if cols == n_mel and (rows != n_mel or not channels_first):
        mel = array
    elif rows == n_mel:
        mel = array.T
    else:
        raise MelError(
            f"{source}: mel must have {n_mel} channels ([frames, {n_mel}] or [{n_mel}, frames]), "
            f"got shape {tuple(array.shape)}"
        )
    if mel.shape[0] == 0:
        raise MelError(f"{source}: mel has zero frames (shape {tuple(array.shape)})")
    if not np.all(np.isfinite(mel)):
        bad = int(np.size(mel) - np.count_nonzero(np.isfinite(mel)))
        raise MelError(f"{source}: mel contains NaN or Inf ({bad} of {mel.size} values)")
    return np.ascontiguousarray(mel, dtype=np.float32)


def read_mel(path: str | os.PathLike, n_mel: int) -> np.ndarray:
    """Reads a ``.npy`` mel (``[frames, n_mel]`` or ``[n_mel, frames]``) as float32 ``[frames, n_mel]``.

    Raises:
      MelError: unreadable file or an invalid mel (see :func:`mel_from_array`).
    """
    path = os.fspath(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MelError(f"{path}: file not found") from None
    except (OSError, ValueError) as e:
        raise MelError(f"{path}: not a readable .npy array: {e}") from None
    if not isinstance(array, np.ndarray):
        raise MelError(f"{path}: expected one array, got {type(array).__name__}")
    return mel_from_array(array, n_mel, source=path)


# ---------------------------------------------------------------------- latent
def draw_latent(seed, steps, n_group: int) -> tf.Tensor:
    """The standard-normal latent of one utterance: ``[steps, n_group]`` float32.

    ``stateless_normal([steps, n_group], seed=[seed, 0], alg="philox")``: a
    pure function of ``(seed, steps)``, the same on every device and in every
    batch. Works eagerly and inside a graph.

    Args:
      seed: int64 scalar.
      steps: group steps, ``frames * hop / n_group``.
      n_group: the model's ``n_group``.
    """
    seed_pair = tf.stack([tf.cast(seed, tf.int64), tf.constant(LATENT_SEED_STREAM, tf.int64)])
    shape = tf.stack([tf.cast(steps, tf.int32), tf.constant(n_group, tf.int32)])
    return tf.random.stateless_normal(shape, seed=seed_pair, dtype=tf.float32, alg="philox")


# ---------------------------------------------------------------------- context and windows
def receptive_context_frames(
    n_flows: int,
    coupling_receptive_field: int,
    n_group: int,
    hop_length: int,
    upsample_kernel_size: int,
    frame_context: int | None = None,
    postfilter_receptive_field: int = 0,
) -> tuple[int, int]:
    """Mel frames of context a window needs on the left and right.

    The inverse's output at group step ``t`` depends on the latent and the
    grouped mel at steps ``t - n_flows * R .. t + n_flows * R`` (``R`` per
    coupling, the 1x1 convs pointwise). A post-filter that reads ``P``
    samples per side makes output sample ``x`` depend on the flow's samples
    ``x - P .. x + P``, i.e. on ``ceil(P / n_group)`` more group steps per side
    (a group step holds ``n_group`` samples and frames start on group steps).
    With ``S = n_flows * R + ceil(P / n_group)`` steps that is samples
    ``x - S * n_group .. x + S * n_group``. Upsampled sample
    ``x`` depends on frames ``f`` with ``f * hop <= x < f * hop + kernel``: on
    frames up to ``x // hop`` (no right context) and back to
    ``(x - kernel) // hop + 1``.

    With the ``repeat`` upsampler (``frame_context`` given) group step ``t``
    reads frames ``t g / hop - c .. t g / hop + c`` and no step straddles two
    frames, so both sides need ``ceil(S g / hop) + c`` frames.

    Args:
      n_flows: the flow steps.
      coupling_receptive_field: ``R``, group steps per side of one coupling's WN.
      n_group: samples per group step ``g``.
      hop_length: samples per frame.
      upsample_kernel_size: the transposed conv's taps (unused with ``frame_context``).
      frame_context: the ``repeat`` upsampler's frames per side; None: transposed conv.
      postfilter_receptive_field: ``P``, the post-filter's samples per side (0: none).

    Returns:
      ``(left, right)`` frames: ``ceil((S g + kernel) / hop) - 1`` and
      ``ceil(S g / hop)`` (transposed conv).
    """
    steps = n_flows * coupling_receptive_field + math.ceil(postfilter_receptive_field / n_group)
    samples = steps * n_group
    right = math.ceil(samples / hop_length)
    if frame_context is not None:
        return right + frame_context, right + frame_context
    left = math.ceil((samples + upsample_kernel_size) / hop_length) - 1
    return left, right


def context_frames(model) -> tuple[int, int]:
    """:func:`receptive_context_frames` of a :class:`tfwaveglow.WaveGlow`."""
    return receptive_context_frames(
        model.n_flows,
        model.receptive_field(),
        model.n_group,
        model.hop_length,
        model.upsample_kernel_size,
        frame_context=None if model.upsampler == "transposed_conv" else model.frame_context,
        postfilter_receptive_field=model.postfilter_receptive_field(),
    )


@dataclasses.dataclass(frozen=True)
class Window:
    """Frames ``[start, stop)`` are synthesised; frames ``[keep_start, keep_stop)`` of that are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def plan_windows(frames: int, window_frames: int, left: int, right: int) -> list[Window]:
    """Covers ``frames`` frames with windows of exactly ``window_frames`` frames.

    A kept frame has ``left`` frames of real mel before it inside its window
    (or the window starts at frame 0) and ``right`` after it (or the window
    ends at the last frame); the kept ranges tile ``[0, frames)``. An input of
    at most ``window_frames`` frames is one window.

    Raises:
      ValueError: ``window_frames <= left + right`` (no frame would be kept).
    """
    if frames <= window_frames:
        return [Window(0, frames, 0, frames)]
    if window_frames <= left + right:
        raise ValueError(f"window_frames ({window_frames}) must exceed the model's context ({left} + {right} frames)")
    windows = []
    keep_start = 0
    while keep_start < frames:
        start = min(max(keep_start - left, 0), frames - window_frames)
        stop = start + window_frames
        keep_stop = frames if stop == frames else stop - right
        windows.append(Window(start, stop, keep_start, keep_stop))
        keep_start = keep_stop
    return windows


def infer_in_windows(model, mel, z, sigma, window_frames: int, context: tuple[int, int], inverse_kernels=None):
    """``model.infer(mel, sigma, z)`` computed window by window inside a graph (:func:`plan_windows`' rule).

    The windows are synthesised one after another (a ``tf.while_loop``), so
    the memory of the model's activations depends on ``window_frames``, not on
    the length; only the latent and the audio grow with it. An input of at
    most ``window_frames`` frames is one window: exactly ``model.infer``.

    Args:
      model: a :class:`tfwaveglow.WaveGlow`.
      mel: ``[B, F, n_mel]``.
      z: ``[B, F * hop / g, g]`` standard-normal latent.
      sigma: scalar or ``[B]``.
      window_frames: frames per window, more than ``sum(context)``.
      context: ``(left, right)`` frames a kept frame needs (:func:`context_frames`, plus a margin).
      inverse_kernels: passed to ``model.infer`` (by default each window inverts the 1x1 convs).

    Returns:
      ``[B, F * hop]`` float32.
    """
    left, right = (int(c) for c in context)
    if window_frames <= left + right:
        raise ValueError(f"window_frames ({window_frames}) must exceed the model's context ({left} + {right} frames)")
    hop, steps_per_frame = model.hop_length, model.hop_length // model.n_group
    frames = tf.shape(mel)[1]
    one_window = frames <= window_frames

    def body(keep_start, audio):
        start = tf.where(one_window, 0, tf.minimum(tf.maximum(keep_start - left, 0), frames - window_frames))
        stop = tf.where(one_window, frames, start + window_frames)
        keep_stop = tf.where(tf.equal(stop, frames), frames, stop - right)
        window = model.infer(
            mel[:, start:stop],
            sigma,
            z=z[:, start * steps_per_frame : stop * steps_per_frame],
            inverse_kernels=inverse_kernels,
        )
        piece = window[:, (keep_start - start) * hop : (keep_stop - start) * hop]
        # The kept piece padded to the full length and added: the loop carries one tensor of a
        # fixed shape (what LiteRT's while loop needs), for one full-length add per window.
        piece = tf.pad(piece, [[0, 0], [keep_start * hop, (frames - keep_stop) * hop]])
        return keep_stop, audio + piece

    audio = tf.zeros(tf.stack([tf.shape(mel)[0], frames * hop]), tf.float32)
    _, audio = tf.while_loop(
        lambda keep_start, audio: keep_start < frames, body, [tf.constant(0), audio], parallel_iterations=1
    )
    return audio


# ---------------------------------------------------------------------- engines
def composed_conditioning_budget() -> int:
    """Bytes ``conditioning="auto"`` may spend on composed conditioning: a quarter of physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):  # no sysconf on this platform
        return 0


class ModelEngine:
    """Runs a :class:`tfwaveglow.WaveGlow` held in memory.

    Args:
      model: the model (weight norm folded or not).
      params: its :class:`tfwaveglow.Params` (sampling rate, denoiser STFT).
      conditioning: ``"plain"`` computes each flow's conditioning from the
        upsampled mel as NVIDIA does; ``"composed"`` synthesises with
        :meth:`tfwaveglow.WaveGlow.compose_conditioning` (the same audio from
        fewer operations, for :meth:`ComposedConditioning.size_bytes` of memory:
        2.0 GB for the default model, 0.1 GB for the shipped one); ``"auto"``
        composes when that fits in :func:`composed_conditioning_budget`.
    """

    CONDITIONING_MODES = ("auto", "plain", "composed")

    def __init__(self, model, params, conditioning: str = "auto"):
        if conditioning not in self.CONDITIONING_MODES:
            raise ValueError(f"conditioning must be one of {self.CONDITIONING_MODES}, got {conditioning!r}")
        self.model = model
        self.params = params
        if conditioning == "auto":
            size = ComposedConditioning.size_bytes(model)
            conditioning = "composed" if 0 < size <= composed_conditioning_budget() else "plain"
        self.conditioning = conditioning
        self._composed = model.compose_conditioning() if conditioning == "composed" else None
        self.n_mel_channels = model.n_mel_channels
        self.n_group = model.n_group
        self.hop_length = model.hop_length
        self.sampling_rate = params.audio.sampling_rate
        self.context = context_frames(model)
        self._denoiser = None

    def infer(self, mel, z, sigma) -> np.ndarray:
        """``mel [B, F, n_mel]``, ``z [B, F * hop / g, g]``, ``sigma [B]`` -> ``[B, F * hop]``."""
        # Eager: a window's ops are large (thousands of group steps each), and
        # each coupling's conditioning is freed before the next is computed.
        return self.model.infer(
            tf.constant(mel), tf.constant(sigma), z=tf.constant(z), conditioning=self._composed
        ).numpy()

    @property
    def denoiser(self) -> Denoiser:
        if self._denoiser is None:
            a = self.params.audio
            self._denoiser = Denoiser.from_model(self.model, a.filter_length, a.hop_length, a.win_length)
        return self._denoiser

    def denoise(self, audio: np.ndarray, strength: float, block_samples: int) -> np.ndarray:
        """``[S] -> [S]`` (block-wise; see :func:`tfwaveglow.denoiser.denoise_in_blocks`)."""
        return self.denoiser.denoise_long(audio, strength, block_samples=block_samples)


class SavedModelEngine:
    """Runs an exported SavedModel (see :mod:`tfwaveglow.export`) through its signatures.

    Args:
      path: the version directory holding ``saved_model.pb``.
    """

    def __init__(self, path: str):
        self.path = path
        self.loaded = tf.saved_model.load(path)
        params_path = os.path.join(path, "assets", PARAMS_FILE)
        if not os.path.isfile(params_path):
            raise FileNotFoundError(f"{path}: a SavedModel without assets/params.yaml (not exported by tfwaveglow)")
        self.params = load_params(params_path)
        self.n_mel_channels = self.params.model.n_mel_channels
        self.n_group = self.params.model.n_group
        self.hop_length = self.params.model.upsample_stride
        self.sampling_rate = self.params.audio.sampling_rate
        left, right = (int(v) for v in self.loaded.context_frames.numpy())
        self.context = (left, right)
        self._from_latent = self.loaded.signatures["synthesize_from_latent"]

    def infer(self, mel, z, sigma) -> np.ndarray:
        out = self._from_latent(mel=tf.constant(mel), z=tf.constant(z), sigma=tf.constant(sigma))
        return out["audio"].numpy()

    def denoise(self, audio: np.ndarray, strength: float, block_samples: int) -> np.ndarray:
        a = self.params.audio
        return denoise_in_blocks(
            self.loaded.denoise, audio, strength, a.filter_length, a.hop_length, block_samples=block_samples
        )


def find_saved_model(path: str) -> str | None:
    """``path`` if it holds ``saved_model.pb``, else its highest numbered version holding one, else None."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        versions = [
            int(d) for d in os.listdir(path) if d.isdigit() and os.path.isfile(os.path.join(path, d, "saved_model.pb"))
        ]
        if versions:
            return os.path.join(path, str(max(versions)))
    return None


def load_engine(path: str | os.PathLike, conditioning: str = "auto"):
    """An engine for any model location.

    Args:
      path: an exported SavedModel (a version directory, or the base directory
        of numbered versions: the highest is used), an inference model
        directory (``params.yaml`` + ``weights.npz``, e.g. a converted NVIDIA
        model), or a training run directory (``params.yaml`` + ``checkpoints/``).
      conditioning: :class:`ModelEngine`'s choice (a SavedModel runs as exported).

    Returns:
      :class:`SavedModelEngine` or :class:`ModelEngine`.
    """
    path = os.fspath(path)
    saved_model = find_saved_model(path)
    if saved_model is not None:
        return SavedModelEngine(saved_model)
    return ModelEngine(*load_model_and_params(path), conditioning=conditioning)


# ---------------------------------------------------------------------- synthesizer
def _per_item(value, count: int, name: str) -> list[float]:
    if np.ndim(value) == 0:
        return [float(value)] * count
    values = [float(v) for v in value]
    if len(values) != count:
        raise ValueError(f"{name}: {len(values)} values for {count} utterances")
    return values


class Synthesizer:
    """Synthesises utterances of any length and number, in bounded memory.

    Args:
      engine: a :class:`ModelEngine` or :class:`SavedModelEngine`.
      window_frames: frames per window (see :func:`plan_windows`); None:
        :func:`default_window_frames` of the context.
      batch_size: windows per model call.
      margin_frames: frames added to the derived context on each side.
      denoise_block_samples: samples per denoiser call.
    """

    def __init__(
        self,
        engine,
        window_frames: int | None = None,
        batch_size: int = 1,
        margin_frames: int = WINDOW_MARGIN_FRAMES,
        denoise_block_samples: int = 1 << 20,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.engine = engine
        self.context, self.window_frames = window_rule(engine.context, window_frames, margin_frames)
        self.batch_size = int(batch_size)
        self.denoise_block_samples = int(denoise_block_samples)

    @property
    def sampling_rate(self) -> int:
        return self.engine.sampling_rate

    @property
    def n_mel_channels(self) -> int:
        return self.engine.n_mel_channels

    def latent(self, seed: int, frames: int) -> np.ndarray:
        """:func:`draw_latent` for an utterance of ``frames`` frames: ``[frames * hop / g, g]``."""
        steps = frames * self.engine.hop_length // self.engine.n_group
        return draw_latent(seed, steps, self.engine.n_group).numpy()

    def synthesize(
        self,
        mels: Sequence[np.ndarray],
        sigma: float | Sequence[float] = 0.6,
        denoiser_strength: float | Sequence[float] = 0.0,
        seeds: Sequence[int] | None = None,
        latents: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Synthesises every mel; each result equals one-shot ``infer`` of that mel alone.

        Args:
          mels: ``[frames, n_mel]`` float32 arrays (see :func:`mel_from_array`).
          sigma: one value, or one per mel.
          denoiser_strength: one value, or one per mel; 0 skips the denoiser.
          seeds: one int per mel; its latent is :func:`draw_latent` ``(seed)``.
          latents: or the standard-normal latents ``[frames * hop / g, g]`` themselves.

        Returns:
          float32 ``[frames * hop]`` per mel (not clipped).
        """
        count = len(mels)
        sigmas = _per_item(sigma, count, "sigma")
        strengths = _per_item(denoiser_strength, count, "denoiser_strength")
        if any(s < 0 or not math.isfinite(s) for s in sigmas + strengths):
            raise ValueError("sigma and denoiser_strength must be finite and >= 0")
        if (seeds is None) == (latents is None):
            raise ValueError("pass exactly one of seeds and latents")
        hop, g = self.engine.hop_length, self.engine.n_group
        mels = [mel_from_array(m, self.n_mel_channels, source=f"mel {i}") for i, m in enumerate(mels)]
        if latents is None:
            if len(seeds) != count:
                raise ValueError(f"{len(seeds)} seeds for {count} mels")
            latents = [self.latent(int(s), m.shape[0]) for s, m in zip(seeds, mels)]
        else:
            latents = [np.asarray(z, dtype=np.float32) for z in latents]
            for i, (z, m) in enumerate(zip(latents, mels, strict=True)):
                expected = (m.shape[0] * hop // g, g)
                if z.shape != expected:
                    raise ValueError(f"latent {i} must have shape {expected} for {m.shape[0]} frames, got {z.shape}")

        outputs = [np.empty(m.shape[0] * hop, np.float32) for m in mels]
        jobs: dict[int, list[tuple[int, Window]]] = {}
        for i, m in enumerate(mels):
            for w in plan_windows(m.shape[0], self.window_frames, *self.context):
                jobs.setdefault(w.stop - w.start, []).append((i, w))
        for length in sorted(jobs):
            group = jobs[length]
            for begin in range(0, len(group), self.batch_size):
                batch = group[begin : begin + self.batch_size]
                mel = np.stack([mels[i][w.start : w.stop] for i, w in batch])
                z = np.stack([latents[i][w.start * hop // g : w.stop * hop // g] for i, w in batch])
                audio = self.engine.infer(mel, z, np.array([sigmas[i] for i, _ in batch], np.float32))
                for row, (i, w) in enumerate(batch):
                    kept = audio[row, (w.keep_start - w.start) * hop : (w.keep_stop - w.start) * hop]
                    outputs[i][w.keep_start * hop : w.keep_stop * hop] = kept
        for i, strength in enumerate(strengths):
            if strength > 0:
                outputs[i] = self.engine.denoise(outputs[i], strength, self.denoise_block_samples)
        return outputs
