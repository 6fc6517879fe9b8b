"""LiteRT (TFLite) export of the synthesis graph, for devices.

    python -m tfwaveglow.export --model=DIR --output=waveglow.tflite --format=tflite [--precision=float16]

writes one flatbuffer with the signature ``synthesize_from_latent``: inputs ``mel``
float32 ``[1, frames, n_mel]``, ``z`` float32 ``[1, frames * hop / n_group, n_group]``
(standard normal, forward's layout) and ``sigma`` float32 ``[1]``; output ``audio``
float32 ``[1, frames * hop]``, exactly ``model.infer(mel, sigma, z)`` up to float rounding
(a post-filter included; not clipped, no denoiser). It runs in ``ai-edge-litert``'s interpreter with builtin ops
only, without TensorFlow:

    from ai_edge_litert.interpreter import Interpreter
    run = Interpreter(model_path="waveglow.tflite").get_signature_runner("synthesize_from_latent")
    audio = run(mel=mel, z=z, sigma=np.array([0.6], np.float32))["audio"]

What differs from the SavedModel, and why:

- The dilated convolutions (the WNs' and a post-filter's) are computed in the ``shifted_matmul`` form (plain matrix
  products on shifted copies; the weights are the same for every form): LiteRT's
  converter cannot lower the ``time_to_batch`` form's batch-changing ``Conv2D``.
- The 1x1 convs' inverses are computed at export and stored as constants (LiteRT has no
  matrix inverse).
- A mel longer than ``window_frames`` is synthesised in windows exactly as the
  SavedModel does (:func:`tfwaveglow.synthesis.infer_in_windows`), so memory stays flat
  in the length.
- No seed-based signature: LiteRT's only normal sampler (``RANDOM_STANDARD_NORMAL``) is
  stateful with seeds fixed at conversion, so it cannot reproduce the SavedModel's
  ``stateless_normal(seed=[s, 0], alg="philox")`` latents. The caller draws ``z``.
- ``precision``: ``float32``, or ``float16`` (weights stored as float16, about half the
  file, computed in float32 by LiteRT's CPU kernels). bfloat16 has no LiteRT CPU kernels.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from tfwaveglow.config import Params
from tfwaveglow.model import WaveGlow
from tfwaveglow.synthesis import context_frames, infer_in_windows, window_rule

__all__ = ["LITERT_PRECISIONS", "LITERT_SIGNATURE", "export_litert", "litert_model"]

LITERT_SIGNATURE = "synthesize_from_latent"
LITERT_PRECISIONS = ("float32", "float16")


def litert_model(model: WaveGlow, params: Params) -> WaveGlow:
    """A folded copy of ``model`` computing its dilated convs (WNs, post-filter) as ``shifted_matmul`` (same weights).

    ``params`` must describe ``model``'s architecture, post-filter included.
    """
    folded = model.fold_weight_norm()
    copy = WaveGlow.from_params(params, dilated_conv="shifted_matmul")
    copy.copy_weights_from(folded)
    return copy


def export_litert(
    model: WaveGlow,
    params: Params,
    output_file: str | os.PathLike,
    precision: str = "float32",
    window_frames: int | None = None,
) -> str:
    """Converts the synthesis graph of ``model`` to a LiteRT flatbuffer at ``output_file``.

    Args:
      model: a :class:`tfwaveglow.WaveGlow` (weight norm folded here).
      params: its params.
      output_file: the ``.tflite`` file to write (replaced atomically).
      precision: one of :data:`LITERT_PRECISIONS`.
      window_frames: frames per synthesis window (None: :func:`tfwaveglow.synthesis.default_window_frames`).

    Returns:
      ``output_file``.

    Raises:
      ValueError: an unknown precision, or ``window_frames`` not above the model's context.
    """
    if precision not in LITERT_PRECISIONS:
        raise ValueError(
            f"LiteRT precision must be one of {LITERT_PRECISIONS}, got {precision!r}"
            + (" (LiteRT's CPU kernels have no bfloat16)" if precision == "bfloat16" else "")
        )
    output_file = os.path.abspath(os.fspath(output_file))
    device_model = litert_model(model, params)
    context, window_frames = window_rule(context_frames(device_model), window_frames)
    inverse_kernels = [
        tf.constant(np.linalg.inv(conv.kernel.numpy().astype(np.float64)).astype(np.float32))
        for conv in device_model.convinv
    ]
    n_mel, n_group = device_model.n_mel_channels, device_model.n_group

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, None, n_mel], tf.float32, name="mel"),
            tf.TensorSpec([1, None, n_group], tf.float32, name="z"),
            tf.TensorSpec([1], tf.float32, name="sigma"),
        ]
    )
    def synthesize_from_latent(mel, z, sigma):
        audio = infer_in_windows(device_model, mel, z, sigma, window_frames, context, inverse_kernels)
        return {"audio": audio}

    # Weights as constants: LiteRT cannot read resource variables inside the window loop.
    frozen = convert_variables_to_constants_v2(synthesize_from_latent.get_concrete_function())

    @tf.function(input_signature=synthesize_from_latent.input_signature)
    def frozen_synthesize_from_latent(mel, z, sigma):
        (audio,) = frozen(mel=mel, z=z, sigma=sigma)
        return {"audio": audio}

    holder = tf.Module()
    holder.synthesize_from_latent = frozen_synthesize_from_latent
    os.makedirs(os.path.dirname(output_file) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(output_file)) as tmp:
        staged = os.path.join(tmp, "saved_model")
        tf.saved_model.save(
            holder,
            staged,
            signatures={LITERT_SIGNATURE: frozen_synthesize_from_latent.get_concrete_function()},
            # Synthesis needs no gradients (the shifted_matmul conv has a custom one for training).
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False),
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(staged, signature_keys=[LITERT_SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        flatbuffer = converter.convert()
        partial = os.path.join(tmp, "model.tflite")
        with open(partial, "wb") as f:
            f.write(flatbuffer)
        os.replace(partial, output_file)
    return output_file
