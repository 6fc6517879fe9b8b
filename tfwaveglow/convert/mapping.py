"""From NVIDIA's weight names and shapes to the architecture and to this package's variables.

The architecture is read off the weight shapes alone (state dicts carry no
config); the upsampler's stride is the one number they do not show. Each
layer of :meth:`WaveGlow.named_layers` takes its weights from the PyTorch
module of the same path (``convinv.k`` from ``convinv.k.conv``; an older
checkpoint's ``WN.k.cond_layers.0..L-1`` concatenated in layer order for
``WN.k.cond_layer``), weight norm folded as ``w = g * v / ||v||`` (norm over
every axis but the output channels), then a per-layer-type hook changes the
layout. Every source key must be used exactly once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np

from tfwaveglow.convert.errors import MissingKeysError, NotWaveGlowError, ShapeMismatchError, UnusedKeysError
from tfwaveglow.layers.dilated_conv import DilatedConv1D
from tfwaveglow.layers.invertible_conv import Invertible1x1Conv
from tfwaveglow.layers.pointwise import PointwiseConv
from tfwaveglow.layers.upsampler import Upsampler

DATA_PARALLEL_PREFIX = "module."
_PARAM_RE = re.compile(r"^(?P<module>.+)\.(?P<param>weight|weight_g|weight_v|bias)$")
_FLOW_RE = re.compile(r"^(?:WN|convinv)\.(\d+)\.")
_LAYER_RE = re.compile(r"^WN\.\d+\.(?:in_layers|res_skip_layers|cond_layers)\.(\d+)\.")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The WaveGlow hyperparameters that fix the weight shapes."""

    n_mel_channels: int
    n_flows: int
    n_group: int
    n_early_every: int
    n_early_size: int
    upsample_kernel_size: int
    upsample_stride: int
    wn_n_layers: int
    wn_n_channels: int
    wn_kernel_size: int

    def params_overrides(self) -> dict:
        """Dotted config keys (``model.*``, and the audio keys that must agree) for ``params_from_dict``."""
        return {
            "model.n_mel_channels": self.n_mel_channels,
            "model.n_flows": self.n_flows,
            "model.n_group": self.n_group,
            "model.n_early_every": self.n_early_every,
            "model.n_early_size": self.n_early_size,
            "model.upsample_kernel_size": self.upsample_kernel_size,
            "model.upsample_stride": self.upsample_stride,
            "model.wn.n_layers": self.wn_n_layers,
            "model.wn.n_channels": self.wn_n_channels,
            "model.wn.kernel_size": self.wn_kernel_size,
            "audio.n_mel_channels": self.n_mel_channels,
            "audio.hop_length": self.upsample_stride,
        }


def strip_data_parallel_prefix(tensors: dict) -> tuple[dict, bool]:
    """Drops ``module.`` (``nn.DataParallel``) when every key has it; returns the dict and whether it did."""
    if tensors and all(k.startswith(DATA_PARALLEL_PREFIX) for k in tensors):
        return {k[len(DATA_PARALLEL_PREFIX) :]: v for k, v in tensors.items()}, True
    return tensors, False


class SourceWeights:
    """The checkpoint's tensors grouped by module path, with bookkeeping of what was used.

    Args:
      tensors: ``{key: array}`` (prefix already stripped).
      source: the file name, for messages.
    """

    def __init__(self, tensors: dict, source: str):
        self.tensors = tensors
        self.source = source
        self.modules: dict = {}
        for key, value in tensors.items():
            match = _PARAM_RE.match(key)
            if match:
                self.modules.setdefault(match["module"], {})[match["param"]] = value
        self.used: set = set()
        self.missing: list = []

    def weight_shape(self, module: str) -> tuple | None:
        """The (unfolded) weight's shape of ``module``, or None when it has no weight."""
        params = self.modules.get(module, {})
        for name in ("weight", "weight_v"):
            if name in params:
                return tuple(params[name].shape)
        return None

    def has_weight(self, module: str) -> bool:
        return self.weight_shape(module) is not None

    def take_weight(self, module: str) -> np.ndarray | None:
        """The module's applied weight (weight norm folded), marking its keys used; None if missing."""
        params = self.modules.get(module, {})
        if "weight" in params:
            self.used.add(f"{module}.weight")
            return params["weight"]
        if "weight_g" in params and "weight_v" in params:
            self.used.update({f"{module}.weight_g", f"{module}.weight_v"})
            return fold_weight_norm(params["weight_g"], params["weight_v"], f"{self.source}: '{module}'")
        if "weight_g" in params or "weight_v" in params:
            present = "weight_g" if "weight_g" in params else "weight_v"
            absent = "weight_v" if present == "weight_g" else "weight_g"
            self.missing.append(f"{module}.{absent}")
        else:
            self.missing.append(f"{module}.weight (or {module}.weight_g and {module}.weight_v)")
        return None

    def take_bias(self, module: str) -> np.ndarray | None:
        key = f"{module}.bias"
        if key in self.tensors:
            self.used.add(key)
            return self.tensors[key]
        self.missing.append(key)
        return None

    def unused(self) -> list:
        return sorted(set(self.tensors) - self.used)


def fold_weight_norm(g: np.ndarray, v: np.ndarray, where: str) -> np.ndarray:
    """``g * v / ||v||`` with the norm over every axis but 0 (PyTorch's ``weight_norm(dim=0)``).

    Args:
      g: ``[out]`` or ``[out, 1, ..., 1]``.
      v: ``[out, ...]``.
      where: names the weight in errors.
    """
    if g.size != v.shape[0]:
        raise ShapeMismatchError(f"{where}: weight_g has shape {g.shape}, weight_v has shape {v.shape}")
    v64 = v.astype(np.float64)
    norm = np.sqrt(np.sum(np.square(v64).reshape(v.shape[0], -1), axis=1))
    scale = g.astype(np.float64).reshape(-1) / norm
    return (v64 * scale.reshape((-1,) + (1,) * (v.ndim - 1))).astype(np.float32)


# --------------------------------------------------------------------------- architecture
def _indices(keys, pattern: re.Pattern) -> set:
    return {int(m.group(1)) for m in (pattern.match(k) for k in keys) if m}


def infer_architecture(weights: SourceWeights, upsample_stride: int) -> Architecture:
    """Reads the architecture off the weight shapes.

    ``n_flows`` counts the flows, ``n_group`` is the first 1x1 conv's size,
    and the flows where the 1x1 conv shrinks give ``n_early_every`` and
    ``n_early_size``; the WN sizes come from flow 0 (every other flow is
    checked against them while mapping).

    Raises:
      NotWaveGlowError, MissingKeysError, ShapeMismatchError.
    """
    source, keys = weights.source, list(weights.tensors)
    flows = _indices(keys, _FLOW_RE)
    if not flows:
        raise NotWaveGlowError(
            f"{source}: not a WaveGlow checkpoint: none of its {len(keys)} weights is named like WaveGlow's "
            f"('WN.<k>.*', 'convinv.<k>.conv.weight'); first keys: {sorted(keys)[:8]}"
        )
    n_flows = max(flows) + 1
    needed = ["upsample", "WN.0.start", "WN.0.in_layers.0"] + [f"convinv.{k}.conv" for k in range(n_flows)]
    missing = [f"{m}.weight" for m in needed if not weights.has_weight(m)]
    if missing:
        raise MissingKeysError(f"{source}: missing keys needed to tell the architecture: {missing}")

    up = weights.weight_shape("upsample")
    if len(up) != 3 or up[0] != up[1]:
        raise ShapeMismatchError(f"{source}: 'upsample.weight' has shape {up}, expected [n_mel, n_mel, kernel]")
    sizes = []
    for k in range(n_flows):
        shape = weights.weight_shape(f"convinv.{k}.conv")
        if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 1 or shape[0] % 2:
            raise ShapeMismatchError(
                f"{source}: 'convinv.{k}.conv.weight' has shape {shape}, expected [c, c, 1] with c even"
            )
        sizes.append(shape[0])
    n_early_every, n_early_size = _early_outputs(sizes, source)

    start, in_layer = weights.weight_shape("WN.0.start"), weights.weight_shape("WN.0.in_layers.0")
    n_layers = max(_indices(keys, _LAYER_RE), default=-1) + 1
    if len(start) != 3 or len(in_layer) != 3:
        raise ShapeMismatchError(f"{source}: 'WN.0.start' / 'WN.0.in_layers.0' weights are not Conv1d weights")
    return Architecture(
        n_mel_channels=up[0],
        n_flows=n_flows,
        n_group=sizes[0],
        n_early_every=n_early_every,
        n_early_size=n_early_size,
        upsample_kernel_size=up[2],
        upsample_stride=int(upsample_stride),
        wn_n_layers=n_layers,
        wn_n_channels=start[0],
        wn_kernel_size=in_layer[2],
    )


def _early_outputs(sizes: list, source: str) -> tuple[int, int]:
    """``(n_early_every, n_early_size)`` from the 1x1 conv sizes per flow (e.g. 8 8 8 8 6 6 6 6 4 4 4 4)."""
    drops = [k for k in range(1, len(sizes)) if sizes[k] != sizes[k - 1]]
    if not drops:
        # No early output: any period past the last flow describes the same model.
        return len(sizes), 2
    every, size = drops[0], sizes[drops[0] - 1] - sizes[drops[0]]
    expected = [sizes[0] - size * (k // every) for k in range(len(sizes))]
    if size <= 0 or sizes != expected:
        raise ShapeMismatchError(
            f"{source}: the 1x1 conv sizes per flow {sizes} do not follow WaveGlow's rule of n_early_size "
            "channels leaving every n_early_every flows"
        )
    return every, size


# --------------------------------------------------------------------------- layer mapping
def _pointwise_kernel(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w[:, :, 0].T)  # [out, in, 1] -> [in, out]


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 1, 0))  # [out, in, k] -> [k, in, out]


def _transposed_conv_kernel(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 1, 0))  # [in, out, k] -> [k, out, in]


def _invertible_kernel(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w[:, :, 0])  # [c, c, 1] -> W [c, c]


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """How one of our layer types takes a PyTorch module's weights.

    Attributes:
      kernel_hook: PyTorch weight -> our kernel layout.
      torch_shape: our kernel shape -> the PyTorch weight shape it comes from.
      has_bias: whether the PyTorch module has a bias.
    """

    kernel_hook: Callable
    torch_shape: Callable
    has_bias: bool = True


LAYER_RULES = {
    PointwiseConv: LayerRule(_pointwise_kernel, lambda s: (s[1], s[0], 1)),
    DilatedConv1D: LayerRule(_conv_kernel, lambda s: (s[2], s[1], s[0])),
    Upsampler: LayerRule(_transposed_conv_kernel, lambda s: (s[2], s[1], s[0])),
    Invertible1x1Conv: LayerRule(_invertible_kernel, lambda s: (s[0], s[1], 1), has_bias=False),
}


def _rule_for(layer) -> LayerRule:
    for cls, rule in LAYER_RULES.items():
        if isinstance(layer, cls):
            return rule
    raise TypeError(f"no conversion rule for layer type {type(layer).__name__}")


def _our_kernel_shape(layer) -> tuple:
    kernel = layer.effective_kernel() if hasattr(layer, "effective_kernel") else layer.kernel
    return tuple(int(d) for d in kernel.shape)


def source_modules(path: str, weights: SourceWeights, n_layers: int) -> list:
    """The PyTorch module paths whose weights make our layer ``path``, in concatenation order."""
    if path.startswith("convinv."):
        return [f"{path}.conv"]
    if path.endswith(".cond_layer") and not weights.has_weight(path):
        per_layer = [f"{path}s.{i}" for i in range(n_layers)]
        if any(weights.has_weight(m) for m in per_layer):
            return per_layer
    return [path]


@dataclasses.dataclass
class MappedWeights:
    """Our variables' values and where each came from.

    Attributes:
      arrays: ``{"<layer path>.kernel" | "<layer path>.bias": array}`` in
        :func:`tfwaveglow.model_io.assign_arrays`' format.
      sources: ``{layer path: [PyTorch module paths]}``.
      used_keys: the source keys consumed (all of them).
      folded: how many PyTorch modules had weight norm folded.
      concatenated: how many ``cond_layer`` were assembled from per-layer ``cond_layers``.
    """

    arrays: dict
    sources: dict
    used_keys: list
    folded: int
    concatenated: int


def map_weights(weights: SourceWeights, model) -> MappedWeights:
    """Maps every source key onto ``model.named_layers()``.

    Args:
      weights: the grouped checkpoint tensors.
      model: a WaveGlow of the inferred architecture (its shapes are the
        reference for shape checks).

    Raises:
      ShapeMismatchError: a weight does not fit the architecture.
      MissingKeysError: a weight the model needs is absent.
      UnusedKeysError: a key is left over.
    """
    arrays, sources = {}, {}
    folded = concatenated = 0
    for path, layer in model.named_layers().items():
        rule = _rule_for(layer)
        modules = source_modules(path, weights, model.wn_n_layers)
        kernels, biases = [], []
        for module in modules:
            if "weight_g" in weights.modules.get(module, {}) and "weight" not in weights.modules[module]:
                folded += 1
            kernels.append(weights.take_weight(module))
            biases.append(weights.take_bias(module) if rule.has_bias else None)
        if any(k is None for k in kernels) or (rule.has_bias and any(b is None for b in biases)):
            continue
        if len(modules) > 1:
            concatenated += 1
        _check_shapes(path, modules, kernels, biases, rule.torch_shape(_our_kernel_shape(layer)), weights.source)
        kernel = np.concatenate(kernels, axis=0) if len(kernels) > 1 else kernels[0]
        arrays[f"{path}.kernel"] = rule.kernel_hook(kernel).astype(np.float32)
        if rule.has_bias:
            arrays[f"{path}.bias"] = np.concatenate(biases, axis=0).astype(np.float32)
        sources[path] = modules

    unused = weights.unused()
    if weights.missing:
        also = f"; unused keys: {unused[:10]}{' ...' if len(unused) > 10 else ''}" if unused else ""
        raise MissingKeysError(
            f"{weights.source}: missing {len(weights.missing)} key(s) the inferred architecture needs: "
            f"{weights.missing[:10]}{' ...' if len(weights.missing) > 10 else ''}{also}"
        )
    if unused:
        raise UnusedKeysError(
            f"{weights.source}: {len(unused)} key(s) fit no part of the inferred WaveGlow: "
            f"{unused[:10]}{' ...' if len(unused) > 10 else ''}"
        )
    return MappedWeights(arrays, sources, sorted(weights.used), folded, concatenated)


def _check_shapes(path, modules, kernels, biases, expected, source) -> None:
    """Each source module's weight must be its share of the PyTorch weight our layer corresponds to."""
    share = expected[0] // len(modules)
    expected_part = (share, *expected[1:])
    for module, kernel, bias in zip(modules, kernels, biases):
        if tuple(kernel.shape) != expected_part or share * len(modules) != expected[0]:
            raise ShapeMismatchError(
                f"{source}: '{module}' weight has shape {tuple(kernel.shape)}, the inferred architecture needs "
                f"{expected_part} (for our layer '{path}')"
            )
        if bias is not None and tuple(bias.shape) != (share,):
            raise ShapeMismatchError(
                f"{source}: '{module}.bias' has shape {tuple(bias.shape)}, the inferred architecture needs ({share},)"
            )
