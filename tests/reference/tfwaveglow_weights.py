"""tfwaveglow's name-keyed weights in and out of the PyTorch reference WaveGlow (``glow.py``).

tfwaveglow stores every kernel under NVIDIA's module path (``WN.0.in_layers.2.kernel``,
``convinv.3.kernel``, ``upsample.kernel``) in its own layouts: 1x1 convs ``[in, out]``,
dilated convs ``[k, in, out]``, the upsampler ``[k, out, in]``, each 1x1 invertible conv's
``W [c, c]``. This module maps them onto ``glow.WaveGlow`` with NumPy transposes only, so
the parity checks, the PyTorch training script and the benchmarks share one mapping that
does not go through tfwaveglow's own loader.

Import with ``tests/reference`` on ``sys.path``; torch and ``glow`` are imported when used.
"""

from __future__ import annotations

import warnings

import numpy as np


def waveglow_config(model_params) -> dict:
    """NVIDIA's ``waveglow_config`` keyword arguments for ``params.model``."""
    m = model_params
    return {
        "n_mel_channels": m.n_mel_channels,
        "n_flows": m.n_flows,
        "n_group": m.n_group,
        "n_early_every": m.n_early_every,
        "n_early_size": m.n_early_size,
        "WN_config": {"n_layers": m.wn.n_layers, "n_channels": m.wn.n_channels, "kernel_size": m.wn.kernel_size},
        "upsample_kernel_size": m.upsample_kernel_size,
        "upsample_stride": m.upsample_stride,
    }


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
    return modules


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

    def tensor(value):
        return torch.from_numpy(np.ascontiguousarray(value, np.float32))

    with torch.no_grad():
        up = reference.upsample
        in_ch, out_ch, k = up.weight.shape
        up.weight.copy_(tensor(take("upsample.kernel", (k, out_ch, in_ch)).transpose(2, 1, 0)))
        up.bias.copy_(tensor(take("upsample.bias", (out_ch,))))
        for k, inv in enumerate(reference.convinv):
            c = inv.conv.weight.shape[0]
            inv.conv.weight.copy_(tensor(take(f"convinv.{k}.kernel", (c, c))[:, :, None]))
        for name, conv in wn_modules(reference).items():
            out_ch, in_ch, width = conv.weight_v.shape if hasattr(conv, "weight_v") else conv.weight.shape
            ours = (in_ch, out_ch) if width == 1 else (width, in_ch, out_ch)
            kernel = take(f"{name}.kernel", ours)
            weight = kernel.T[:, :, None] if width == 1 else kernel.transpose(2, 1, 0)
            if hasattr(conv, "weight_v"):
                conv.weight_v.copy_(tensor(weight))
                conv.weight_g.copy_(tensor(np.linalg.norm(weight.reshape(out_ch, -1), axis=1)[:, None, None]))
            else:
                conv.weight.copy_(tensor(weight))
            conv.bias.copy_(tensor(take(f"{name}.bias", (out_ch,))))
    if remaining:
        raise ValueError(f"weights: unused keys {sorted(remaining)[:10]}")
    if not weight_norm:
        remove_weight_norm(reference)
    return reference.eval()


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
        arrays["upsample.kernel"] = reference.upsample.weight.numpy().transpose(2, 1, 0).copy()
        arrays["upsample.bias"] = reference.upsample.bias.numpy().copy()
        for k, inv in enumerate(reference.convinv):
            arrays[f"convinv.{k}.kernel"] = inv.conv.weight[:, :, 0].numpy().copy()
        for name, conv in wn_modules(reference).items():
            weight = weight_of(conv).numpy()
            arrays[f"{name}.kernel"] = weight[:, :, 0].T.copy() if weight.shape[2] == 1 else weight.transpose(2, 1, 0)
            arrays[f"{name}.bias"] = conv.bias.numpy().copy()
    return arrays
