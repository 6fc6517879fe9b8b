"""Saving and loading WaveGlow models.

An *inference model directory* holds ``params.yaml`` (the resolved config) and
``weights.npz``: one array per variable, keyed by NVIDIA's module path and the
variable name (``WN.0.start.kernel``, ``convinv.3.kernel``, ``upsample.bias``;
a post-filter's ``postfilter.in_layers.2.kernel``, ...), always with weight norm
folded. The arrays are float32, or float16 to halve the file (a shipped model);
loading always builds float32 variables, so a float16 file gives exactly the
float16-rounded weights, computed in float32. A *training run directory* holds
``params.yaml`` and ``tf.train.Checkpoint`` files whose ``model`` slot is the
(possibly weight-normalised) model; loading one folds weight norm. A shipped
model may also hold ``training_state.json``: the step and training clocks of the
run it was taken from, so that ``train.py --continue_run`` can carry that run on.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from tfwaveglow.config import Params, load_params, save_params
from tfwaveglow.layers.kernel import KernelMixin
from tfwaveglow.model import WaveGlow

PARAMS_FILE = "params.yaml"
WEIGHTS_FILE = "weights.npz"
CHECKPOINT_SUBDIR = "checkpoints"
TRAINING_STATE_FILE = "training_state.json"
# How weights.npz may store its arrays; loading casts either to float32.
WEIGHTS_DTYPES = ("float32", "float16")


class ModelLoadError(ValueError):
    """The path is not a loadable model, or its weights do not fit its config."""


def save_training_state(directory: str | os.PathLike, step: int, train_seconds: float, cpu_seconds: float) -> str:
    """Writes ``training_state.json`` (the run's step and training clocks) into a model directory."""
    path = os.path.join(os.fspath(directory), TRAINING_STATE_FILE)
    state = {"step": int(step), "train_seconds": float(train_seconds), "cpu_seconds": float(cpu_seconds)}
    with open(path, "w") as f:
        json.dump(state, f, indent=2)
        f.write("\n")
    return path


def weights_sha256(directory: str | os.PathLike) -> str | None:
    """sha256 (hex) of a model directory's ``weights.npz``; None when it has none (e.g. a checkpoint)."""
    path = os.path.join(os.fspath(directory), WEIGHTS_FILE)
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_training_state(directory: str | os.PathLike) -> dict:
    """Reads a model directory's ``training_state.json``.

    Returns:
      ``{"step": int, "train_seconds": float, "cpu_seconds": float}``.

    Raises:
      ModelLoadError: the file is missing, unreadable or lacks a value.
    """
    path = os.path.join(os.fspath(directory), TRAINING_STATE_FILE)
    if not os.path.isfile(path):
        raise ModelLoadError(f"{path}: no training state (only models shipped from a run carry one)")
    try:
        with open(path) as f:
            state = json.load(f)
        step = int(state["step"])
        clocks = {key: float(state[key]) for key in ("train_seconds", "cpu_seconds")}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{path}: unreadable training state ({e!r})") from e
    if step < 0 or min(clocks.values()) < 0:
        raise ModelLoadError(f"{path}: negative step or clock in {state}")
    return {"step": step, **clocks}


def weights_to_arrays(model: WaveGlow) -> dict:
    """``{"<layer path>.<kernel|bias>": ndarray}`` with weight norm folded."""
    arrays = {}
    for name, layer in model.named_layers().items():
        if isinstance(layer, KernelMixin):
            arrays[f"{name}.kernel"] = layer.effective_kernel().numpy()
            arrays[f"{name}.bias"] = layer.bias.numpy()
        else:
            for var in layer.weights:
                arrays[f"{name}.{_short_name(var)}"] = var.numpy()
    return arrays


def _short_name(var) -> str:
    return var.path.rsplit("/", 1)[-1] if hasattr(var, "path") else var.name.split("/")[-1].split(":")[0]


def assign_arrays(model: WaveGlow, arrays: dict, source: str = "weights") -> None:
    """Loads :func:`weights_to_arrays`' format; every key must be used exactly once."""
    remaining = dict(arrays)
    missing = []
    for name, layer in model.named_layers().items():
        if isinstance(layer, KernelMixin):
            keys = [f"{name}.kernel", f"{name}.bias"]
        else:
            keys = [f"{name}.{_short_name(v)}" for v in layer.weights]
        if any(k not in remaining for k in keys):
            missing += [k for k in keys if k not in remaining]
            continue
        values = [remaining.pop(k) for k in keys]
        targets = [layer.effective_kernel(), layer.bias] if isinstance(layer, KernelMixin) else layer.weights
        for key, value, target in zip(keys, values, targets):
            if tuple(value.shape) != tuple(target.shape):
                raise ModelLoadError(
                    f"{source}: '{key}' has shape {value.shape}, the model expects {tuple(target.shape)}"
                )
        if isinstance(layer, KernelMixin):
            layer.assign_kernel(values[0], values[1])
        else:
            for var, value in zip(layer.weights, values):
                var.assign(value)
    if missing or remaining:
        raise ModelLoadError(
            f"{source}: weights do not match the model: missing {sorted(missing)[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, unused {sorted(remaining)[:10]}"
            f"{' ...' if len(remaining) > 10 else ''}"
        )


def save_model(model: WaveGlow, directory: str | os.PathLike, params: Params, weights_dtype: str = "float32") -> str:
    """Writes an inference model directory (weight norm folded); returns its path.

    Args:
      model: the model (weight norm folded or not).
      directory: created if missing; ``params.yaml`` and ``weights.npz`` are replaced.
      params: the model's params.
      weights_dtype: ``"float32"``, or ``"float16"`` for a file half the size
        (each weight rounded to the nearest float16).

    Raises:
      ValueError: an unknown ``weights_dtype``, or a weight that float16 cannot
        hold (beyond +-65504).
      ModelLoadError: ``model`` and ``params`` describe different architectures.
    """
    if weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(f"weights_dtype must be one of {WEIGHTS_DTYPES}, got {weights_dtype!r}")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    _check_params_match(model, params, directory)
    arrays = weights_to_arrays(model)
    limit = float(np.finfo(weights_dtype).max)
    overflow = sorted(name for name, value in arrays.items() if np.any(np.abs(value) > limit))
    if overflow:
        raise ValueError(f"{directory}: {weights_dtype} cannot hold the weights of {overflow[:10]} (too large)")
    save_params(params, os.path.join(directory, PARAMS_FILE))
    tmp = os.path.join(directory, WEIGHTS_FILE + ".tmp.npz")
    np.savez(tmp, **{name: value.astype(weights_dtype) for name, value in arrays.items()})
    os.replace(tmp, os.path.join(directory, WEIGHTS_FILE))
    return directory


def stored_weights_dtype(directory: str | os.PathLike) -> str:
    """The dtype ``weights.npz`` in an inference model directory stores its arrays in (``"float16"``, ...).

    Raises:
      FileNotFoundError: no ``weights.npz`` in ``directory``.
      ModelLoadError: the arrays do not share one dtype.
    """
    path = os.path.join(os.fspath(directory), WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    with np.load(path) as data:
        dtypes = {str(data[k].dtype) for k in data.files}
    if len(dtypes) != 1:
        raise ModelLoadError(f"{path}: arrays of mixed dtypes {sorted(dtypes)}")
    return dtypes.pop()


def _check_params_match(model: WaveGlow, params: Params, where: str) -> None:
    m = params.model
    pairs = {
        "n_mel_channels": m.n_mel_channels,
        "n_flows": m.n_flows,
        "n_group": m.n_group,
        "n_early_every": m.n_early_every,
        "n_early_size": m.n_early_size,
        "upsample_kernel_size": m.upsample_kernel_size,
        "upsample_stride": m.upsample_stride,
        "wn_n_layers": m.wn.n_layers,
        "wn_n_channels": m.wn.n_channels,
        "wn_kernel_size": m.wn.kernel_size,
        "upsampler": m.upsampler,
        "frame_context": m.frame_context,
        "wn_separable": m.wn.separable,
        "postfilter_n_layers": m.postfilter.n_layers,
    }
    if m.postfilter.n_layers > 0:  # the post-filter's width and taps mean nothing without its layers
        pairs.update(postfilter_n_channels=m.postfilter.n_channels, postfilter_kernel_size=m.postfilter.kernel_size)
    wrong = {k: (getattr(model, k), v) for k, v in pairs.items() if getattr(model, k) != v}
    if wrong:
        raise ModelLoadError(f"{where}: model and params disagree (model, params): {wrong}")


def _find_checkpoint(path: str) -> str | None:
    """A checkpoint prefix for ``path`` (a run dir, its checkpoints dir, or a prefix)."""
    if tf.io.gfile.exists(path + ".index"):
        return path
    for directory in (os.path.join(path, CHECKPOINT_SUBDIR), path):
        if os.path.isdir(directory):
            latest = tf.train.latest_checkpoint(directory)
            if latest:
                return latest
    return None


def find_params(path: str | os.PathLike) -> str | None:
    """The ``params.yaml`` that belongs to a model path: beside it, or up to two folders up."""
    path = os.fspath(path)
    for directory in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        candidate = os.path.join(directory, PARAMS_FILE)
        if directory and os.path.isfile(candidate):
            return candidate
    return None


def load_model(path: str | os.PathLike, params: Params | None = None, dilated_conv: str | None = None) -> WaveGlow:
    """Loads a model for synthesis (weight norm folded).

    Args:
      path: an inference model directory (``params.yaml`` + ``weights.npz``,
        e.g. a converted NVIDIA checkpoint), a training run directory, or a
        checkpoint prefix inside one.
      params: use these instead of the ``params.yaml`` found beside the weights.
      dilated_conv: override how dilated convolutions are computed.

    Raises:
      FileNotFoundError: nothing loadable at ``path``.
      ModelLoadError: the weights do not fit the config.
    """
    return load_model_and_params(path, params, dilated_conv)[0]


def load_model_and_params(
    path: str | os.PathLike, params: Params | None = None, dilated_conv: str | None = None
) -> tuple[WaveGlow, Params]:
    """Like :func:`load_model`, also returning the params the model was built from."""
    path = os.fspath(path)
    if not os.path.exists(path) and not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"no model at {path}")
    params_path = find_params(path)
    if params is None:
        if params_path is None:
            raise FileNotFoundError(f"{path}: no {PARAMS_FILE} beside the model weights")
        params = load_params(params_path)

    weights_file = os.path.join(path, WEIGHTS_FILE)
    if os.path.isfile(weights_file):
        model = WaveGlow.from_params(params, dilated_conv=dilated_conv)
        with np.load(weights_file) as data:
            # float16 files (shipped models) become float32 variables holding the rounded values.
            assign_arrays(model, {k: data[k].astype(np.float32) for k in data.files}, source=weights_file)
        return model, params

    checkpoint = _find_checkpoint(path)
    if checkpoint is None:
        raise FileNotFoundError(f"{path}: neither {WEIGHTS_FILE} nor a TensorFlow checkpoint found")
    model = WaveGlow.from_params(params, weight_norm=params.train.weight_norm, dilated_conv=dilated_conv)
    try:
        tf.train.Checkpoint(model=model).read(checkpoint).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ModelLoadError(f"{checkpoint}: checkpoint does not match the model of {params_path}: {e}") from e
    return model.fold_weight_norm(), params
