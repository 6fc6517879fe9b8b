"""Converting an NVIDIA/waveglow checkpoint into a tfwaveglow inference model directory."""

from __future__ import annotations

import dataclasses
import os

from tfwaveglow.config import ConfigError, Params, params_from_dict
from tfwaveglow.convert.errors import ConversionError
from tfwaveglow.convert.mapping import (
    Architecture,
    SourceWeights,
    infer_architecture,
    map_weights,
    strip_data_parallel_prefix,
)
from tfwaveglow.convert.nvidia import read_checkpoint
from tfwaveglow.convert.parity import LayerParity, check_layer_parity
from tfwaveglow.model import WaveGlow, count_parameters
from tfwaveglow.model_io import ModelLoadError, assign_arrays, save_model


@dataclasses.dataclass
class ConversionReport:
    """What a conversion read, inferred and wrote.

    Attributes:
      checkpoint: the source file.
      form: how its weights were stored (``pickled model``, ``state_dict``, ...).
      model_class: the pickled model's class, or None for state dicts.
      metadata: scalars stored beside the weights (``iteration``, ``learning_rate``).
      data_parallel_prefix: whether a ``module.`` prefix was stripped.
      architecture: the inferred architecture.
      upsample_stride_from: where the stride came from (it is not in the weights).
      source_keys: how many tensors the checkpoint holds; ``keys_mapped`` of them were used.
      keys_mapped: source keys used (always all of them after a successful conversion).
      variables: our variables written.
      weight_norm_folded: PyTorch modules whose ``weight_g``/``weight_v`` were folded.
      cond_layers_concatenated: flows whose per-layer ``cond_layers`` became one ``cond_layer``.
      parameters: our model's parameter count (weight norm folded).
      layer_parity: the layer-by-layer check against PyTorch, or None when skipped.
      output: the directory written, or None.
    """

    checkpoint: str
    form: str
    model_class: str | None
    metadata: dict
    data_parallel_prefix: bool
    architecture: Architecture
    upsample_stride_from: str
    source_keys: int
    keys_mapped: int
    variables: int
    weight_norm_folded: int
    cond_layers_concatenated: int
    parameters: int
    layer_parity: LayerParity | None
    output: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def format(self) -> str:
        """A human-readable summary."""
        arch = dataclasses.asdict(self.architecture)
        source = self.form + (f" ({self.model_class})" if self.model_class else "")
        lines = [
            f"checkpoint:     {self.checkpoint}",
            f"stored as:      {source}" + (", 'module.' prefix stripped" if self.data_parallel_prefix else ""),
        ]
        if self.metadata:
            lines.append("metadata:       " + ", ".join(f"{k}={v}" for k, v in sorted(self.metadata.items())))
        lines += [
            "architecture:   " + ", ".join(f"{k}={v}" for k, v in arch.items()),
            f"upsample stride: {self.architecture.upsample_stride} ({self.upsample_stride_from})",
            f"keys mapped:    {self.keys_mapped} of {self.source_keys} source keys -> {self.variables} variables "
            f"({self.weight_norm_folded} weight-normed convs folded, "
            f"{self.cond_layers_concatenated} cond_layer(s) assembled from per-layer cond_layers)",
            f"parameters:     {self.parameters:,}",
        ]
        if self.layer_parity is not None:
            p = self.layer_parity
            lines.append(
                f"layer parity:   {p.layers} layers match PyTorch on the source weights; worst relative error "
                f"{p.max_relative_error:.2e} ({p.worst_layer})"
            )
        else:
            lines.append("layer parity:   skipped")
        if self.output:
            lines.append(f"written to:     {self.output}")
        return "\n".join(lines)


@dataclasses.dataclass
class ConversionResult:
    """Attributes: the converted ``model`` (folded), its ``params`` and the ``report``."""

    model: WaveGlow
    params: Params
    report: ConversionReport


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike | None = None,
    base_params: Params | None = None,
    upsample_stride: int | None = None,
    check_layers: bool = True,
) -> ConversionResult:
    """Converts an NVIDIA/waveglow PyTorch checkpoint.

    Args:
      checkpoint: the ``.pt`` file (any form :func:`read_checkpoint` reads).
      output: when given, write an inference model directory there
        (``params.yaml`` + ``weights.npz``, loadable with ``load_model``).
      base_params: the config whose non-model sections to keep (defaults if None);
        its ``model`` section is replaced by the inferred architecture.
      upsample_stride: the upsampler's stride (the hop). Weights do not hold
        it: by default a pickled model's own value is used, else
        ``base_params.model.upsample_stride``.
      check_layers: run :func:`check_layer_parity`.

    Returns:
      ConversionResult.

    Raises:
      ConversionError (or a subclass): the message names the file and the problem.
    """
    ckpt = read_checkpoint(checkpoint)
    base_params = base_params or params_from_dict({})
    tensors, stripped = strip_data_parallel_prefix(ckpt.tensors)
    weights = SourceWeights(tensors, ckpt.path)

    if upsample_stride is not None:
        stride, stride_from = int(upsample_stride), "given"
    elif ckpt.upsample_stride is not None:
        stride, stride_from = ckpt.upsample_stride, "read from the pickled model"
    else:
        stride = base_params.model.upsample_stride
        stride_from = "not stored in a state_dict; taken from the base params"
    arch = infer_architecture(weights, stride)

    try:
        params = params_from_dict(base_params.to_dict(), arch.params_overrides())
    except ConfigError as e:
        raise ConversionError(
            f"{ckpt.path}: the inferred architecture does not fit the base config: {e} (pass a "
            "params file that suits it)"
        ) from e

    model = WaveGlow.from_params(params, weight_norm=False)
    mapped = map_weights(weights, model)
    try:
        assign_arrays(model, mapped.arrays, source=ckpt.path)
    except ModelLoadError as e:  # map_weights checked shapes already; this guards the two tables agreeing
        raise ConversionError(str(e)) from e

    parity = check_layer_parity(model, weights, mapped.sources) if check_layers else None
    report = ConversionReport(
        checkpoint=ckpt.path,
        form=ckpt.form,
        model_class=ckpt.model_class,
        metadata=ckpt.metadata,
        data_parallel_prefix=stripped,
        architecture=arch,
        upsample_stride_from=stride_from,
        source_keys=len(tensors),
        keys_mapped=len(mapped.used_keys),
        variables=len(mapped.arrays),
        weight_norm_folded=mapped.folded,
        cond_layers_concatenated=mapped.concatenated,
        parameters=count_parameters(model),
        layer_parity=parity,
    )
    if output is not None:
        report.output = save_model(model, output, params)
    return ConversionResult(model=model, params=params, report=report)
