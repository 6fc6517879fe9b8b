"""SavedModel export of the synthesis graph, for TF Serving (and the entry point of the LiteRT export).

    python -m tfwaveglow.export --model=DIR --output=EXPORT/waveglow/1 [--precision=bfloat16]
    python -m tfwaveglow.export --model=DIR --output=waveglow.tflite --format=tflite [--precision=float16]

(the LiteRT flatbuffer: :mod:`tfwaveglow.export_litert`)

writes TF Serving's versioned layout (``EXPORT/waveglow`` is the model base
path, ``1`` the version) with weight norm folded and these signatures:

``serving_default``
    ``mel`` float32 ``[batch, frames, n_mel]`` -> ``audio`` float32
    ``[batch, frames * hop]`` in [-1, 1]. Sigma and denoiser strength are fixed
    at export; the latent is fresh noise on every call.
``synthesize``
    ``mel`` ``[batch, frames, n_mel]``, ``mel_lengths`` int32 ``[batch]``,
    ``sigma`` float32 ``[batch]``, ``denoiser_strength`` float32 ``[batch]``,
    ``seed`` int64 ``[batch]`` -> ``audio`` ``[batch, frames * hop]`` (zero
    past each item's end), ``audio_lengths`` int32 ``[batch]``. Item ``i`` is
    synthesised from its first ``mel_lengths[i]`` frames alone, with the latent
    ``stateless_normal([mel_lengths[i] * hop / n_group, n_group],
    seed=[seed[i], 0], alg="philox")``, so a seed always gives the same audio.
``synthesize_from_latent``
    ``mel``, ``z`` float32 ``[batch, frames * hop / n_group, n_group]``
    (forward's layout, standard normal), ``sigma`` ``[batch]`` -> ``audio``:
    exactly ``model.infer(mel, sigma, z)`` (the post-filter included, if the model has
    one), no denoiser, not clipped.

Every signature synthesises a mel longer than ``--window_frames`` (512) in windows
that overlap by the model's receptive field (the flow's, plus its post-filter's if it
has one) plus a frame each side, one window after another, and denoises in blocks:
the same audio as one-shot synthesis under the same latent (up to float rounding),
with memory flat in the length beyond the request's own mel, latent and audio
(``docs/serving.md``).

Inputs are checked in the graph: a wrong channel count, zero frames, NaN/Inf,
lengths out of range or mismatched shapes raise ``InvalidArgumentError`` with a
message naming the problem; a wrong dtype is rejected by the signature. Only
standard TensorFlow ops are used. Besides the signatures the SavedModel holds
``denoise(audio, strength)`` (the bias denoiser), ``context_frames`` (the
receptive field in frames, for windowed synthesis) and ``assets/params.yaml``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

if __name__ == "__main__":  # python -m tfwaveglow.export: quiet TensorFlow's start-up, which the next line loads
    from tfwaveglow import quiet_import

    quiet_import.import_tensorflow(quiet_import.verbose_requested(sys.argv))

import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from tfwaveglow import cli  # noqa: E402
from tfwaveglow.config import Params, save_params  # noqa: E402
from tfwaveglow.denoiser import Denoiser  # noqa: E402
from tfwaveglow.model_io import load_model_and_params  # noqa: E402
from tfwaveglow.synthesis import (  # noqa: E402
    context_frames,
    draw_latent,
    infer_in_windows,
    window_rule,
)

__all__ = ["SIGNATURES", "WaveGlowServingModule", "export_saved_model", "main"]

SIGNATURES = ("serving_default", "synthesize", "synthesize_from_latent")
SAVED_MODEL_PRECISIONS = ("float32", "bfloat16")
FORMATS = ("saved_model", "tflite")


class _Untracked:
    """Holds the Keras model out of the SavedModel's object graph.

    Keras layers add their own serving functions when saved as children; the
    export tracks the model's variables directly instead.
    """

    def __init__(self, model):
        self.model = model


class WaveGlowServingModule(tf.Module):
    """The exported object: signatures over a weight-norm-folded WaveGlow.

    Args:
      model: a :class:`tfwaveglow.WaveGlow` (weight norm is folded here).
      params: its params (the denoiser's STFT, written as ``assets/params.yaml``).
      params_path: a file holding ``params`` as YAML, saved as the asset.
      sigma: ``serving_default``'s sigma.
      denoiser_strength: ``serving_default``'s denoiser strength (0: none).
      window_frames: mels longer than this are synthesised in windows of this
        many frames (overlapping by the receptive field plus one frame each
        side, as ``synthesize.py`` does) and denoised in blocks, so a request's
        memory beyond its own mel, latent and audio does not grow with it.
      precision: ``"float32"``, or ``"bfloat16"``: the conditioning, the WNs' and
        the post-filter's convolutions and matrix products in bfloat16, the flow
        (1x1 convs, affine steps), the post-filter's sum with the flow's output
        and the denoiser in float32; inputs and outputs stay float32.
    """

    def __init__(
        self,
        model,
        params: Params,
        params_path: str,
        sigma: float = 0.6,
        denoiser_strength: float = 0.0,
        window_frames: int | None = None,
        precision: str = "float32",
    ):
        super().__init__(name="waveglow")
        if precision not in SAVED_MODEL_PRECISIONS:
            raise ValueError(f"precision must be one of {SAVED_MODEL_PRECISIONS}, got {precision!r}")
        self._compute_dtype = tf.as_dtype(precision)
        if not sigma >= 0 or not denoiser_strength >= 0:
            raise ValueError(f"sigma ({sigma}) and denoiser_strength ({denoiser_strength}) must be >= 0")
        model = model.fold_weight_norm()
        self._held = _Untracked(model)
        self.model_variables = [v.value for v in model.weights]
        a = params.audio
        self.denoiser = Denoiser.from_model(model, a.filter_length, a.hop_length, a.win_length)
        self.context_frames = tf.Variable(list(context_frames(model)), dtype=tf.int32, trainable=False)
        self._window_context, self._window_frames = window_rule(context_frames(model), window_frames)
        self.window_frames = tf.Variable(self._window_frames, dtype=tf.int32, trainable=False)
        self.params_file = tf.saved_model.Asset(params_path)
        self._n_mel = model.n_mel_channels
        self._hop = model.hop_length
        self._n_group = model.n_group
        self._sigma = float(sigma)
        self._denoiser_strength = float(denoiser_strength)
        # The shortest audio the denoiser's centred STFT takes, in frames.
        self._denoise_min_frames = a.filter_length // 2 // self._hop + 1

        mel_spec = tf.TensorSpec([None, None, None], tf.float32, name="mel")
        self.serving_default = tf.function(self._serving_default, input_signature=[mel_spec])
        self.synthesize = tf.function(
            self._synthesize,
            input_signature=[
                mel_spec,
                tf.TensorSpec([None], tf.int32, name="mel_lengths"),
                tf.TensorSpec([None], tf.float32, name="sigma"),
                tf.TensorSpec([None], tf.float32, name="denoiser_strength"),
                tf.TensorSpec([None], tf.int64, name="seed"),
            ],
        )
        self.synthesize_from_latent = tf.function(
            self._synthesize_from_latent,
            input_signature=[
                mel_spec,
                tf.TensorSpec([None, None, None], tf.float32, name="z"),
                tf.TensorSpec([None], tf.float32, name="sigma"),
            ],
        )
        self.denoise = tf.function(
            self._denoise,
            input_signature=[
                tf.TensorSpec([None, None], tf.float32, name="audio"),
                tf.TensorSpec([None], tf.float32, name="strength"),
            ],
        )

    @property
    def model(self):
        return self._held.model

    def signatures(self) -> dict:
        return {name: getattr(self, name) for name in SIGNATURES}

    # ------------------------------------------------------------------ checks
    def _checked_mel(self, mel):
        """``mel`` once its shape and values are valid (InvalidArgumentError otherwise)."""
        n_mel = self._n_mel
        # The signature fixes rank 3 statically, so a rank check on the shape
        # would be folded away; a padded runtime shape and the element count
        # still catch a tensor of another rank.
        shape = tf.concat([tf.shape(mel), tf.zeros([3], tf.int32)], axis=0)
        batch, frames, channels = shape[0], shape[1], shape[2]
        layout = f"[batch, frames, {n_mel}]"
        checks = [
            tf.debugging.assert_equal(tf.size(mel), batch * frames * channels, message=f"mel must be 3-D: {layout}"),
            tf.debugging.assert_equal(channels, n_mel, message=f"mel must have {n_mel} channels: {layout}"),
            tf.debugging.assert_positive(batch, message="mel has an empty batch"),
            tf.debugging.assert_positive(frames, message="mel has zero frames"),
        ]
        with tf.control_dependencies(checks):
            mel = tf.debugging.assert_all_finite(mel, "mel contains NaN or Inf")
        return tf.ensure_shape(mel, [None, None, n_mel])

    def _checked_per_item(self, value, batch, name: str, non_negative: bool = True):
        checks = [
            tf.debugging.assert_equal(
                tf.shape(value)[0], batch, message=f"{name} must have one value per batch item: shape [batch]"
            )
        ]
        if value.dtype.is_floating:
            checks.append(tf.debugging.assert_all_finite(value, f"{name} contains NaN or Inf"))
        if non_negative:
            checks.append(tf.debugging.assert_non_negative(value, message=f"{name} must be >= 0"))
        with tf.control_dependencies(checks):
            return tf.identity(value)

    def _check_denoisable(self, frames, strength):
        """Denoising needs more than ``n_fft / 2`` samples (the STFT's reflect padding)."""
        ok = tf.reduce_all(tf.logical_or(strength <= 0.0, frames >= self._denoise_min_frames))
        return tf.debugging.assert_equal(
            ok,
            True,
            message=f"denoiser_strength > 0 needs at least {self._denoise_min_frames} mel frames",
        )

    # ------------------------------------------------------------------ signatures
    def _serving_default(self, mel):
        mel = self._checked_mel(mel)
        shape = tf.shape(mel)
        checks = []
        if self._denoiser_strength > 0:
            checks.append(self._check_denoisable(shape[1:2], tf.constant([self._denoiser_strength])))
        with tf.control_dependencies(checks):
            latent_shape = self.model.latent_shape(mel)
        # Seeds 0, 0: the kernel seeds itself afresh, so every process and every call draws new noise.
        z = tf.raw_ops.RandomStandardNormal(shape=latent_shape, dtype=tf.float32, seed=0, seed2=0)
        audio = self._infer(mel, self._sigma, z)
        if self._denoiser_strength > 0:
            audio = tf.map_fn(
                lambda item: self.denoiser.denoise_blocks(item[None], self._denoiser_strength)[0],
                audio,
                parallel_iterations=1,
            )
        return {"audio": tf.clip_by_value(audio, -1.0, 1.0)}

    def _infer(self, mel, sigma, z):
        """``model.infer`` in windows (:func:`tfwaveglow.synthesis.infer_in_windows`), in the export's precision."""
        if self._compute_dtype != tf.float32:
            mel = tf.cast(mel, self._compute_dtype)  # the WNs follow the mel's dtype; the flow stays float32
        return infer_in_windows(self.model, mel, z, sigma, self._window_frames, self._window_context)

    def _synthesize(self, mel, mel_lengths, sigma, denoiser_strength, seed):
        mel = self._checked_mel(mel)
        batch, frames = tf.shape(mel)[0], tf.shape(mel)[1]
        mel_lengths = self._checked_per_item(mel_lengths, batch, "mel_lengths", non_negative=False)
        sigma = self._checked_per_item(sigma, batch, "sigma")
        denoiser_strength = self._checked_per_item(denoiser_strength, batch, "denoiser_strength")
        seed = self._checked_per_item(seed, batch, "seed", non_negative=False)
        checks = [
            tf.debugging.assert_positive(mel_lengths, message="mel_lengths must be >= 1"),
            tf.debugging.assert_less_equal(
                mel_lengths, frames, message="mel_lengths must be <= frames (the mel's second axis)"
            ),
            self._check_denoisable(mel_lengths, denoiser_strength),
        ]
        with tf.control_dependencies(checks):
            mel = tf.identity(mel)
        hop, n_group = self._hop, self._n_group
        total = frames * hop

        def synthesize_one(args):
            item_mel, length, item_sigma, strength, item_seed = args
            item_mel = item_mel[None, :length]
            z = draw_latent(item_seed, length * hop // n_group, n_group)[None]
            audio = self._infer(item_mel, item_sigma, z)
            audio = tf.cond(strength > 0.0, lambda: self.denoiser.denoise_blocks(audio, strength), lambda: audio)
            audio = tf.clip_by_value(audio[0], -1.0, 1.0)
            return tf.pad(audio, [[0, total - length * hop]])

        # One item at a time: each output depends on its own mel, length and seed only.
        audio = tf.map_fn(
            synthesize_one,
            (mel, mel_lengths, sigma, denoiser_strength, seed),
            fn_output_signature=tf.TensorSpec([None], tf.float32),
            parallel_iterations=1,
        )
        return {"audio": audio, "audio_lengths": mel_lengths * hop}

    def _synthesize_from_latent(self, mel, z, sigma):
        mel = self._checked_mel(mel)
        batch, frames = tf.shape(mel)[0], tf.shape(mel)[1]
        n_group = self._n_group
        expected = tf.stack([batch, frames * self._hop // n_group, n_group])
        z_shape = tf.shape(z)
        checks = [
            tf.debugging.assert_equal(
                z_shape,
                expected,
                message=f"z must have shape [batch, frames * {self._hop} / {n_group}, {n_group}] for mel "
                "[batch, frames, n_mel]",
            ),
        ]
        with tf.control_dependencies(checks):
            z = tf.debugging.assert_all_finite(z, "z contains NaN or Inf")
        sigma = self._checked_per_item(sigma, batch, "sigma")
        z = tf.ensure_shape(z, [None, None, n_group])
        return {"audio": self._infer(mel, sigma, z)}

    def _denoise(self, audio, strength):
        return self.denoiser(audio, strength)


def export_saved_model(
    model,
    params: Params,
    output_dir: str | os.PathLike,
    sigma: float | None = None,
    denoiser_strength: float | None = None,
    overwrite: bool = False,
    window_frames: int | None = None,
    precision: str = "float32",
) -> str:
    """Writes the SavedModel to ``output_dir`` (``BASE/NAME/VERSION``, VERSION a number).

    It is written beside the target under a non-numeric name and renamed into
    place, so a server watching the base path never sees a partial version.

    Args:
      model: a :class:`tfwaveglow.WaveGlow`.
      params: its params.
      output_dir: the version directory, e.g. ``export/waveglow/1``.
      sigma, denoiser_strength: ``serving_default``'s values (default
        ``params.export``).
      overwrite: replace an existing version directory.
      window_frames: frames per synthesis window (see :class:`WaveGlowServingModule`).
      precision: ``"float32"`` or ``"bfloat16"`` (see :class:`WaveGlowServingModule`).

    Returns:
      ``output_dir``.
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    version = os.path.basename(output_dir)
    if not version.isdigit():
        raise ValueError(
            f"{output_dir}: the last directory must be a version number (TF Serving loads BASE/VERSION), "
            "e.g. export/waveglow/1"
        )
    if os.path.exists(output_dir) and os.listdir(output_dir) and not overwrite:
        raise FileExistsError(f"{output_dir} exists and is not empty (pass overwrite=True / --overwrite)")
    sigma = params.export.sigma if sigma is None else float(sigma)
    strength = params.export.denoiser_strength if denoiser_strength is None else float(denoiser_strength)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{version}.tmp-") as tmp:
        params_path = os.path.join(tmp, "params.yaml")
        save_params(params, params_path)
        module = WaveGlowServingModule(
            model,
            params,
            params_path,
            sigma=sigma,
            denoiser_strength=strength,
            window_frames=window_frames,
            precision=precision,
        )
        staged = os.path.join(tmp, "saved_model")
        tf.saved_model.save(module, staged, signatures=module.signatures())
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.rename(staged, output_dir)
    return output_dir


FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "model", None, "Inference model directory, training run directory or checkpoint prefix.", flag_values=FLAGS
)
flags.DEFINE_string(
    "output",
    None,
    "Version directory to write, e.g. export/waveglow/1 (saved_model), or the .tflite file (tflite).",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "format", "saved_model", FORMATS, "saved_model (TF Serving) or tflite (LiteRT, devices).", flag_values=FLAGS
)
flags.DEFINE_enum(
    "precision",
    "float32",
    ["float32", "bfloat16", "float16"],
    "saved_model: float32 or bfloat16 (WNs in bfloat16, the flow in float32); tflite: float32 or float16 "
    "(float16 weights).",
    flag_values=FLAGS,
)
flags.DEFINE_float("sigma", None, "serving_default's sigma (default: params.export.sigma, 0.6).", flag_values=FLAGS)
flags.DEFINE_float(
    "denoiser_strength",
    None,
    "serving_default's denoiser strength (default: params.export.denoiser_strength).",
    flag_values=FLAGS,
)
flags.DEFINE_bool("overwrite", False, "Replace an existing version directory.", flag_values=FLAGS)
flags.DEFINE_integer(
    "window_frames",
    None,
    "Mels longer than this are synthesised in windows of this many frames (bounded memory); default 512, "
    "or four times the model's context where that is more than half of 512.",
    flag_values=FLAGS,
)
flags.mark_flags_as_required(["model", "output"], flag_values=FLAGS)


def main(argv) -> int:
    """Exports ``--model`` to ``--output``; ``argv`` may carry the flags when called from Python.

    A failure (no loadable model, a bad ``--output``) exits with status 1 and ``export failed: <why>``.
    """
    cli.parse_argv(FLAGS, argv)
    # OSError, ValueError: besides a missing or unloadable model, an existing or badly named --output.
    with cli.exit_on_error("export", OSError, ValueError, template="export failed: {error}"):
        model, params = load_model_and_params(FLAGS.model)
        if FLAGS.format == "tflite":
            from tfwaveglow.export_litert import LITERT_SIGNATURE, export_litert

            path = export_litert(
                model, params, FLAGS.output, precision=FLAGS.precision, window_frames=FLAGS.window_frames
            )
            signatures = [LITERT_SIGNATURE]
        else:
            path = export_saved_model(
                model,
                params,
                FLAGS.output,
                sigma=FLAGS.sigma,
                denoiser_strength=FLAGS.denoiser_strength,
                overwrite=FLAGS.overwrite,
                window_frames=FLAGS.window_frames,
                precision=FLAGS.precision,
            )
            signatures = SIGNATURES
    print(f"exported {FLAGS.model} to {path} ({FLAGS.format}, {FLAGS.precision}; signatures: {', '.join(signatures)})")
    return 0


if __name__ == "__main__":
    cli.run(main, FLAGS, __doc__)
