"""Layer-by-layer parity: each converted layer against the PyTorch op on the checkpoint's own weights.

For every layer of the converted model, the same random input goes through
our layer and through PyTorch's functional op (``conv1d`` with NVIDIA's
dilation ``2**i`` and padding, ``conv_transpose1d``) on the source weights,
with weight norm applied by PyTorch itself. This checks the key mapping, the
layout hooks and the weight-norm fold without NVIDIA's code. torch is
imported inside the function only.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import tensorflow as tf

from tfwaveglow.convert.errors import ParityError
from tfwaveglow.convert.mapping import SourceWeights

_IN_LAYER_RE = re.compile(r"\.in_layers\.(\d+)$")


@dataclasses.dataclass
class LayerParity:
    """Attributes: layers checked, the worst relative error and the layer it was in."""

    layers: int
    max_relative_error: float
    worst_layer: str


def _torch_weight(torch, weights: SourceWeights, module: str):
    params = weights.modules[module]
    if "weight" in params:
        return torch.from_numpy(params["weight"])
    v = torch.from_numpy(params["weight_v"])
    g = torch.from_numpy(params["weight_g"]).reshape((-1,) + (1,) * (v.dim() - 1))
    return torch._weight_norm(v, g, 0)


def check_layer_parity(model, weights: SourceWeights, sources: dict, tolerance: float = 1e-4, seed: int = 0):
    """Runs every layer of ``model`` against PyTorch on the source weights.

    Args:
      model: the converted WaveGlow (folded kernels).
      weights: the checkpoint's tensors (``SourceWeights``).
      sources: ``{layer path: [PyTorch module paths]}`` from ``map_weights``.
      tolerance: the largest relative error (max |ours - torch| / max |torch|) allowed.
      seed: for the random inputs.

    Returns:
      LayerParity.

    Raises:
      ParityError: a layer is off by more than ``tolerance``.
    """
    import torch
    from torch.nn import functional as F

    rng = np.random.default_rng(seed)
    worst, worst_layer = 0.0, ""
    with torch.no_grad():
        for path, layer in model.named_layers().items():
            modules = sources[path]
            w = torch.cat([_torch_weight(torch, weights, m) for m in modules], dim=0)
            bias = None
            if f"{modules[0]}.bias" in weights.tensors:
                bias = torch.cat([torch.from_numpy(weights.tensors[f"{m}.bias"]) for m in modules], dim=0)
            if path == "upsample":
                x = rng.standard_normal((1, 3, w.shape[0])).astype(np.float32)
                ours = layer(tf.constant(x)).numpy()
                stride = model.upsample_stride
                theirs = F.conv_transpose1d(torch.from_numpy(x).transpose(1, 2), w, bias, stride=stride)
            else:
                match = _IN_LAYER_RE.search(path)
                dilation = 2 ** int(match.group(1)) if match else 1
                kernel_size = w.shape[2]
                steps = 2 * dilation * (kernel_size - 1) + 5  # longer than the taps' span: padding and interior
                x = rng.standard_normal((1, steps, w.shape[1])).astype(np.float32)
                out = layer.forward(tf.constant(x)) if path.startswith("convinv.") else layer(tf.constant(x))
                ours = (out[0] if isinstance(out, tuple) else out).numpy()
                padding = dilation * (kernel_size - 1) // 2
                theirs = F.conv1d(torch.from_numpy(x).transpose(1, 2), w, bias, dilation=dilation, padding=padding)
            theirs = theirs.transpose(1, 2).numpy()
            if ours.shape != theirs.shape:
                raise ParityError(f"layer '{path}': output shape {ours.shape}, PyTorch gives {theirs.shape}")
            error = float(np.max(np.abs(ours - theirs)) / max(float(np.max(np.abs(theirs))), 1e-12))
            if error > worst:
                worst, worst_layer = error, path
            if error > tolerance:
                raise ParityError(
                    f"{weights.source}: layer '{path}' (from {modules}) differs from PyTorch by {error:.3g} "
                    f"(relative), more than {tolerance:g}"
                )
    return LayerParity(layers=len(model.named_layers()), max_relative_error=worst, worst_layer=worst_layer)
