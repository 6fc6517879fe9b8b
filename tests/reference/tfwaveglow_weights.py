"""tfwaveglow's weights in and out of the PyTorch reference WaveGlow (``glow.py``): the one mapping.

tfwaveglow stores every kernel under NVIDIA's module path (``WN.0.in_layers.2.kernel``,
``convinv.3.kernel``, ``upsample.kernel``) in its own layouts: 1x1 convs ``[in, out]``,
dilated convs ``[k, in, out]``, depthwise dilated convs ``[k, c]``, the upsampler
``[k, out, in]``, each 1x1 invertible conv's ``W [c, c]``, a weight-norm gain ``g [out]``.
PyTorch keeps ``[out, in, k]``, ``[c, 1, k]`` (``groups = c``), ``[in, out, k]``, ``[c, c, 1]``
and ``g [out, 1, 1]``. This module maps one onto the other with NumPy transposes
only, written here once from the shapes alone, so the parity checks, the other tests, the
PyTorch training script and the benchmarks share one mapping that does not go through
tfwaveglow's own loader.

Import with ``tests/reference`` on ``sys.path``; torch and ``glow`` are imported when used.
"""

from __future__ import annotations

import warnings

import numpy as np


# --------------------------------------------------------------------------- layouts
def conv_kernel(kernel) -> np.ndarray:
    """A dense ``[in, out]`` or conv ``[k, in, out]`` kernel as PyTorch's ``[out, in, k]``."""
    kernel = np.asarray(kernel, np.float32)
    return np.ascontiguousarray(kernel.T[:, :, None] if kernel.ndim == 2 else kernel.transpose(2, 1, 0))


def is_depthwise(conv) -> bool:
    """Whether a reference Conv1d is depthwise (one filter per channel, ``groups = channels``)."""
    return conv.groups > 1


def tf_conv_kernel(weight) -> np.ndarray:
    """PyTorch's ``[out, in, k]`` conv weight as tfwaveglow's ``[in, out]`` (k = 1) or ``[k, in, out]``."""
    weight = np.asarray(weight, np.float32)
    return np.ascontiguousarray(weight[:, :, 0].T if weight.shape[2] == 1 else weight.transpose(2, 1, 0))


def upsample_kernel(kernel) -> np.ndarray:
    """The upsampler's ``[k, out, in]`` transposed-conv kernel as PyTorch's ``[in, out, k]``, and back.

    The transpose is its own inverse.
    """
    return np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(2, 1, 0))


def _numpy(value) -> np.ndarray:
    """A tensor of either framework (or an array) as a float32 array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value, np.float32)


# --------------------------------------------------------------------------- into the reference
def waveglow_config(model_params) -> dict:
    """NVIDIA's ``waveglow_config`` keyword arguments for ``params.model``."""
    m = model_params
    wn_config = {"n_layers": m.wn.n_layers, "n_channels": m.wn.n_channels, "kernel_size": m.wn.kernel_size}
    if m.wn.separable:
        wn_config["separable"] = True
    config = {
        "n_mel_channels": m.n_mel_channels,
        "n_flows": m.n_flows,
        "n_group": m.n_group,
        "n_early_every": m.n_early_every,
        "n_early_size": m.n_early_size,
        "WN_config": wn_config,
        "upsample_kernel_size": m.upsample_kernel_size,
        "upsample_stride": m.upsample_stride,
    }
    if m.upsampler != "transposed_conv":
        config.update(upsampler=m.upsampler, frame_context=m.frame_context)
    return config


def wn_modules(reference) -> dict:
    """tfwaveglow layer path -> the reference's Conv1d (e.g. ``WN.0.in_layers.2``)."""
    modules = {}
    for k, wn in enumerate(reference.WN):
        modules[f"WN.{k}.start"] = wn.start
        modules[f"WN.{k}.cond_layer"] = wn.cond_layer
        modules[f"WN.{k}.end"] = wn.end
        for i in range(wn.n_layers):
            modules[f"WN.{k}.in_layers.{i}"] = wn.in_layers[i]
            modules[f"WN.{k}.res_skip_layers.{i}"] = wn.res_skip_layers[i]
            if wn.separable:
                modules[f"WN.{k}.in_pointwise.{i}"] = wn.in_pointwise[i]
    return modules


def load_conv(conv, kernel, bias, gain=None) -> None:
    """A kernel in tfwaveglow's layout (and its bias) into a reference Conv1d, in place.

    Args:
      conv: a ``torch.nn.Conv1d``, weight-normalised (``weight_v``, ``weight_g``) or not.
      kernel: ``[in, out]``, ``[k, in, out]`` or, depthwise, ``[k, 1, c]``: weight norm's ``v`` when ``gain`` is given,
        else the plain (folded) kernel.
      bias: ``[out]``.
      gain: weight norm's ``g [out]``; with a weight-normalised ``conv`` and no gain,
        ``v = kernel`` and ``g = ||kernel||`` (as NVIDIA trains from plain weights). An output
        channel whose kernel is all zeros (a gain trained to zero, or one float16 rounds to
        zero) gets ``g = 0`` and ``v`` all ones, so that ``g v / ||v||`` is the zero kernel
        rather than 0 / 0.
    """
    import torch

    weight = conv_kernel(kernel)
    with torch.no_grad():
        if hasattr(conv, "weight_v"):
            if gain is None:
                gain = np.linalg.norm(weight.reshape(weight.shape[0], -1), axis=1)
                weight = np.where(gain[:, None, None] == 0, np.float32(1), weight)
            conv.weight_v.copy_(torch.from_numpy(weight))
            conv.weight_g.copy_(torch.from_numpy(np.asarray(gain, np.float32).reshape(-1, 1, 1)))
        else:
            if gain is not None:
                raise ValueError("a gain for a conv without weight norm")
            conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(np.asarray(bias, np.float32)))


def load_layer(conv, layer) -> None:
    """A tfwaveglow conv layer into a reference Conv1d, in place.

    Where both are weight-normalised, weight norm's ``v`` and ``g`` as they are
    (gradients depend on them, not only on the folded kernel); otherwise the
    folded kernel (see :func:`load_conv`).
    """
    if layer.weight_norm and hasattr(conv, "weight_v"):
        load_conv(conv, _numpy(layer.kernel_v), _numpy(layer.bias), gain=_numpy(layer.kernel_g))
    else:
        load_conv(conv, _numpy(layer.effective_kernel()), _numpy(layer.bias))


def load_wn(reference_wn, wn) -> None:
    """A tfwaveglow ``WN`` into a ``glow.WN`` of the same shape, conv by conv (:func:`load_layer`), in place."""
    for name in ("start", "cond_layer", "end"):
        load_layer(getattr(reference_wn, name), getattr(wn, name))
    for i in range(wn.n_layers):
        load_layer(reference_wn.in_layers[i], wn.in_layers[i])
        load_layer(reference_wn.res_skip_layers[i], wn.res_skip_layers[i])


def remove_weight_norm(reference) -> None:
    """Folds PyTorch's weight norm into plain ``weight`` tensors, in place."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for module in reference.modules():
            if hasattr(module, "weight_g"):
                torch.nn.utils.remove_weight_norm(module)


def build_reference(model_params, arrays: dict, weight_norm: bool = False):
    """The reference WaveGlow of ``model_params`` holding tfwaveglow's name-keyed weights.

    Args:
      model_params: ``params.model`` (fixes the architecture).
      arrays: ``<path>.kernel`` / ``<path>.bias`` in tfwaveglow's layouts (the contents of
        a ``weights.npz``, or ``tfwaveglow.model_io.weights_to_arrays(model)``), any float dtype.
      weight_norm: keep PyTorch's weight norm on the WN convolutions (all but ``end``) with
        ``v = w``, ``g = ||w||`` (as NVIDIA trains), else plain weights (as NVIDIA synthesises).

    Returns:
      ``glow.WaveGlow`` in eval mode; every array is used exactly once.

    Raises:
      ValueError: a missing or unused key, or a shape that does not fit.
    """
    import glow
    import torch

    reference = glow.WaveGlow(**waveglow_config(model_params))
    remaining = dict(arrays)

    def take(key, shape):
        if key not in remaining:
            raise ValueError(f"weights: '{key}' is missing")
        value = np.asarray(remaining.pop(key), np.float32)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"weights: '{key}' has shape {value.shape}, expected {tuple(shape)}")
        return value

    with torch.no_grad():
        if reference.upsampler == "transposed_conv":
            up = reference.upsample
            in_ch, out_ch, k = up.weight.shape
            up.weight.copy_(torch.from_numpy(upsample_kernel(take("upsample.kernel", (k, out_ch, in_ch)))))
            up.bias.copy_(torch.from_numpy(take("upsample.bias", (out_ch,))))
        for k, inv in enumerate(reference.convinv):
            c = inv.conv.weight.shape[0]
            inv.conv.weight.copy_(torch.from_numpy(take(f"convinv.{k}.kernel", (c, c))[:, :, None]))
    for name, conv in wn_modules(reference).items():
        out_ch, in_ch, width = conv.weight_v.shape if hasattr(conv, "weight_v") else conv.weight.shape
        if is_depthwise(conv):
            kernel = take(f"{name}.kernel", (width, out_ch))[:, None, :]
        else:
            kernel = take(f"{name}.kernel", (in_ch, out_ch) if width == 1 else (width, in_ch, out_ch))
        load_conv(conv, kernel, take(f"{name}.bias", (out_ch,)))
    if remaining:
        raise ValueError(f"weights: unused keys {sorted(remaining)[:10]}")
    if not weight_norm:
        remove_weight_norm(reference)
    return reference.eval()


def reference_like(model, weight_norm: bool = True):
    """The reference WaveGlow holding a tfwaveglow model's own variables.

    Unlike :func:`build_reference` (folded weights in), a weight-normalised
    model's ``v`` and ``g`` go in as they are (:func:`load_layer`), so the two
    have the same gradients with respect to each, not only the same function.

    Args:
      model: a :class:`tfwaveglow.WaveGlow` with NVIDIA's upsampler and plain WNs.
      weight_norm: keep PyTorch's weight norm, else fold it (plain weights).

    Returns:
      ``glow.WaveGlow`` (in train mode, as ``glow`` builds it).
    """
    import glow
    import torch

    arch = model.architecture()
    reference = glow.WaveGlow(
        arch["n_mel_channels"],
        arch["n_flows"],
        arch["n_group"],
        arch["n_early_every"],
        arch["n_early_size"],
        {"n_layers": arch["wn_n_layers"], "n_channels": arch["wn_n_channels"], "kernel_size": arch["wn_kernel_size"]},
        upsample_kernel_size=arch["upsample_kernel_size"],
        upsample_stride=arch["upsample_stride"],
    )
    layers = model.named_layers()
    with torch.no_grad():
        reference.upsample.weight.copy_(torch.from_numpy(upsample_kernel(_numpy(layers["upsample"].kernel))))
        reference.upsample.bias.copy_(torch.from_numpy(_numpy(layers["upsample"].bias)))
        for k, inv in enumerate(reference.convinv):
            inv.conv.weight.copy_(torch.from_numpy(_numpy(layers[f"convinv.{k}"].kernel)[:, :, None]))
    for k, reference_wn in enumerate(reference.WN):
        load_wn(reference_wn, model.couplings[k].wn)
    if not weight_norm:
        remove_weight_norm(reference)
    return reference


# --------------------------------------------------------------------------- out of the reference
def reference_arrays(reference) -> dict:
    """The reference's weights in :func:`build_reference`'s name-keyed layout (weight norm folded)."""
    import torch

    def weight_of(conv):
        if hasattr(conv, "weight_v"):
            v, g = conv.weight_v, conv.weight_g
            return g * v / torch.sqrt(torch.sum(v * v, dim=(1, 2), keepdim=True))
        return conv.weight

    arrays = {}
    with torch.no_grad():
        if reference.upsampler == "transposed_conv":
            arrays["upsample.kernel"] = upsample_kernel(reference.upsample.weight.numpy())
            arrays["upsample.bias"] = reference.upsample.bias.numpy().copy()
        for k, inv in enumerate(reference.convinv):
            arrays[f"convinv.{k}.kernel"] = inv.conv.weight[:, :, 0].numpy().copy()
        for name, conv in wn_modules(reference).items():
            kernel = tf_conv_kernel(weight_of(conv).numpy())
            arrays[f"{name}.kernel"] = kernel[:, 0, :] if is_depthwise(conv) else kernel
            arrays[f"{name}.bias"] = conv.bias.numpy().copy()
    return arrays


# --------------------------------------------------------------------------- both sides by PyTorch's names
def reference_parameters(reference, grads: bool = False) -> dict:
    """The reference's parameters (or their gradients) by name, as arrays, ``weight_g`` flattened to ``[out]``."""
    arrays = {}
    for key, param in reference.named_parameters():
        value = _numpy(param.grad if grads else param).copy()
        arrays[key] = value.reshape(-1) if key.endswith("weight_g") else value
    return arrays


def model_parameters(model, values: dict | None = None) -> dict:
    """A tfwaveglow model's variables as :func:`reference_parameters` names and lays them out.

    Args:
      model: a :class:`tfwaveglow.WaveGlow` with NVIDIA's upsampler and plain WNs.
      values: ``{variable path: array}`` to lay out instead of the variables
        themselves, e.g. their gradients.

    Returns:
      ``{"upsample.weight" [in, out, k], "convinv.<k>.conv.weight" [c, c, 1],
      "WN.<k>.<conv>.weight_v" [out, in, k], "...weight_g" [out], "...weight", "...bias"}``.
    """

    def get(variable):
        return _numpy(variable if values is None else values[variable.path])

    arrays = {}
    for name, layer in model.named_layers().items():
        if name == "upsample":
            arrays["upsample.weight"] = upsample_kernel(get(layer.kernel))
            arrays["upsample.bias"] = get(layer.bias)
        elif name.startswith("convinv."):
            arrays[f"{name}.conv.weight"] = get(layer.kernel)[:, :, None]
        else:
            if layer.weight_norm:
                arrays[f"{name}.weight_v"] = conv_kernel(get(layer.kernel_v))
                arrays[f"{name}.weight_g"] = get(layer.kernel_g).reshape(-1)
            else:
                arrays[f"{name}.weight"] = conv_kernel(get(layer.kernel))
            arrays[f"{name}.bias"] = get(layer.bias)
    return arrays
