"""Our weights in PyTorch's layouts, for loading them into the PyTorch reference (tests/reference/glow.py).

Layouts are plain transposes, written here once from the shapes alone:

- a 1x1 kernel ``[in, out]`` and a conv kernel ``[k, in, out]`` -> ``[out, in, k]``;
- the upsampler's transposed-conv kernel ``[k, out, in]`` -> ``[in, out, k]``;
- a weight-norm gain ``g [out]`` -> ``[out]`` (:func:`conv_arrays`; PyTorch keeps ``[out, 1, 1]``).
"""

from __future__ import annotations

import numpy as np


def conv_kernel(kernel) -> np.ndarray:
    """A dense ``[in, out]`` or conv ``[k, in, out]`` kernel as ``[out, in, k]``."""
    kernel = np.asarray(kernel, np.float32)
    return np.ascontiguousarray(kernel.T[:, :, None] if kernel.ndim == 2 else kernel.transpose(2, 1, 0))


def upsample_kernel(kernel) -> np.ndarray:
    """The upsampler's ``[k, out, in]`` transposed-conv kernel as PyTorch's ``[in, out, k]``."""
    return np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(2, 1, 0))


def conv_arrays(layer) -> dict:
    """A WN conv layer's variables as it holds them, by PyTorch's names.

    ``{"weight_v" [out, in, k], "weight_g" [out], "bias" [out]}`` for a
    weight-normalised layer, ``{"weight" [out, in, k], "bias" [out]}`` otherwise.
    """
    if layer.weight_norm:
        arrays = {"weight_v": conv_kernel(layer.kernel_v.numpy()), "weight_g": layer.kernel_g.numpy().reshape(-1)}
    else:
        arrays = {"weight": conv_kernel(layer.kernel.numpy())}
    arrays["bias"] = layer.bias.numpy()
    return arrays
