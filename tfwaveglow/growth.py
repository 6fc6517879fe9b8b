"""Function-preserving growth of a trained model: wider WN layers.

A model whose WNs have ``C`` residual channels is copied into one of the same
architecture with ``C' > C`` channels that synthesises exactly as it did, so
that training the wider model starts where the narrower one stopped (the
capacity arm of ``docs/objective_pilots.md``). Every old weight keeps its
place; the new channels get the target model's own fresh weights, except the
paths from a new channel into an old one, which are zero:

- the rows of each ``in_pointwise`` (separable WN) or dilated ``in_layers``
  kernel that read a new residual channel, towards the old gated units;
- every row of each ``res_skip_layers`` kernel that reads a new gated unit;
- the rows of ``end`` that read a new skip channel.

So the old units compute what they computed, the new ones feed nothing that
reaches the output, and the output, the log-determinant and the inverse are
unchanged; the zero rows have non-zero gradients (their inputs are the new
units' activations), so training grows them like ``end``'s zero start.

Channel layouts (``C`` old, ``C'`` new, ``L`` layers), all on the last axis
of a kernel ``[..., in, out]`` and on biases ``[out]``:

- residual / skip channels ``[C']``: old ``j`` stays at ``j``;
- gated pre-activations ``[2C'] = [tanh C' | sigmoid C']``: old ``j < C`` at
  ``j``, old ``C + j`` at ``C' + j``; the same for ``[res C' | skip C']``;
- ``cond_layer``'s ``[2C'L]``: layer ``i``'s gated block at ``i * 2C'``.
"""

from __future__ import annotations

import numpy as np

from tfwaveglow.model import WaveGlow, copy_layer_weights


def channel_index(old: int) -> np.ndarray:
    """Where the ``old`` residual (or skip) channels sit among the new ones: the first ``old``."""
    return np.arange(old)


def gated_index(old: int, new: int) -> np.ndarray:
    """Where the ``2 * old`` gated channels ``[tanh | sigmoid]`` sit among ``2 * new``: ``[2 old]``."""
    return np.concatenate([np.arange(old), new + np.arange(old)])


def condition_index(old: int, new: int, n_layers: int) -> np.ndarray:
    """Where ``cond_layer``'s ``2 * old * n_layers`` outputs sit among ``2 * new * n_layers``."""
    return np.concatenate([i * 2 * new + gated_index(old, new) for i in range(n_layers)])


def embed(target: np.ndarray, source: np.ndarray, rows=None, cols=None, zero_new_rows_of=None) -> np.ndarray:
    """``source`` written into a copy of ``target`` on its last two axes (or its last alone).

    Args:
      target: the wider layer's kernel ``[..., in', out']``, or a bias ``[out']``
        or depthwise kernel ``[k, out']``.
      source: the narrower one's ``[..., in, out]`` (or ``[out]``, ``[k, out]``).
      rows: ``[in]`` positions of the source's input channels; ``None``: only
        the last axis maps.
      cols: ``[out]`` positions of its output channels.
      zero_new_rows_of: ``"old"``: the new input rows are zeroed in the old
        output columns; ``"all"``: in every column; ``None``: left as they are.

    Returns:
      An array shaped like ``target``.
    """
    out = np.array(target, dtype=np.float32, copy=True)
    if rows is None:  # a bias, or a depthwise kernel [k, C]: only the last axis maps
        out[..., cols] = source
        return out
    new_rows = np.setdiff1d(np.arange(out.shape[-2]), rows)
    if zero_new_rows_of == "all":
        out[..., new_rows, :] = 0.0
    elif zero_new_rows_of == "old":
        out[..., new_rows[:, None], cols[None, :]] = 0.0
    out[..., rows[:, None], cols[None, :]] = source
    return out


def widen_wn(source: WaveGlow, target: WaveGlow) -> None:
    """Copies ``source`` into ``target``, whose WNs are wider, so that both synthesise alike.

    Args:
      source: a model with WN residual channels ``C``.
      target: a built model of the same architecture but ``wn_n_channels``
        ``C' >= C`` (weight norm or not); its fresh weights fill the new channels.

    Raises:
      ValueError: the two differ in anything but the WN width, or ``C' < C``.
    """
    mine, theirs = target.architecture(), source.architecture()
    old, new = theirs.pop("wn_n_channels"), mine.pop("wn_n_channels")
    if mine != theirs:
        raise ValueError(f"only the WN width may differ: {theirs} vs {mine}")
    if new < old:
        raise ValueError(f"the target's WNs are narrower than the source's ({new} < {old} channels)")
    chan, gated = channel_index(old), gated_index(old, new)
    src_layers, dst_layers = source.named_layers(), target.named_layers()
    for name, layer in dst_layers.items():
        src = src_layers[name]
        if not name.startswith("WN."):  # the upsampler, the 1x1 convs, a post-filter: same shapes
            copy_layer_weights(layer, src)
            continue
        part = name.split(".")[2]
        kernel, bias = layer.effective_kernel().numpy(), layer.bias.numpy()
        src_kernel, src_bias = src.effective_kernel().numpy(), src.bias.numpy()
        if part == "start":
            rows, cols, zero = np.arange(src_kernel.shape[-2]), chan, None
        elif part == "cond_layer":
            rows, cols, zero = np.arange(src_kernel.shape[-2]), condition_index(old, new, target.wn_n_layers), None
        elif part == "in_layers" and kernel.ndim == 2:  # depthwise [k, C]: one filter per channel
            layer.assign_kernel(embed(kernel, src_kernel, cols=chan), embed(bias, src_bias, cols=chan))
            continue
        elif part in ("in_layers", "in_pointwise"):  # [C, 2C], or a plain dilated conv's [k, C, 2C]
            rows, cols, zero = chan, gated, "old"
        elif part == "res_skip_layers":
            last = src_kernel.shape[-1] == old  # the last layer has skip channels only
            rows, cols, zero = chan, (chan if last else gated), "all"
        elif part == "end":
            rows, cols, zero = chan, np.arange(src_kernel.shape[-1]), "all"
        else:
            raise ValueError(f"{name}: a WN layer this growth does not know")
        layer.assign_kernel(
            embed(kernel, src_kernel, rows=rows, cols=cols, zero_new_rows_of=zero), embed(bias, src_bias, cols=cols)
        )
