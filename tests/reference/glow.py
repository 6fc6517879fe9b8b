"""A small PyTorch WaveGlow, parameter-compatible with NVIDIA/waveglow's checkpoints.

Test reference only: it reproduces the published model's math (see the
project's architecture guide) with the same module tree, so that its
``state_dict`` keys, weight shapes and pickled class names
(``glow.WaveGlow``, ``glow.WN``, ``glow.Invertible1x1Conv``) are those of
NVIDIA's checkpoints. Import it as the top-level module ``glow``.

Off NVIDIA's defaults it also builds the CPU-efficient options, from their
definitions: the ``repeat`` upsampler (no weights; each group step conditioned
on its frame and ``frame_context`` frames either side, stacked slot-major) and
depthwise-separable WN layers (``in_layers[i]`` a depthwise dilated conv,
``groups = C``, then the 1x1 ``in_pointwise[i]``).

Tensors are channels-first as in PyTorch: audio groups ``[B, g, S / g]``,
mel ``[B, n_mel, F]``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F


def _weight_norm(module: nn.Module) -> nn.Module:
    """PyTorch's classic weight norm (``weight_g``/``weight_v`` keys, a pickled ``WeightNorm`` hook).

    The newer parametrization API stores different keys, so the deprecated
    function is kept on purpose: it is what NVIDIA's checkpoints were made with.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module, name="weight")


class Invertible1x1Conv(nn.Module):
    """``z = W x`` over channels; ``.conv`` holds ``W`` as a bias-free 1x1 Conv1d weight ``[c, c, 1]``."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel_size=1, bias=False)
        q, _ = torch.linalg.qr(torch.randn(c, c))
        if torch.det(q) < 0:
            q[:, 0] = -q[:, 0]
        self.conv.weight.data = q.reshape(c, c, 1)

    def forward(self, z, reverse: bool = False):
        """Forward: ``(W z, batch * groups * log det W)``; reverse: ``W^-1 z``."""
        batch, _, groups = z.shape
        w = self.conv.weight.squeeze(-1)
        if reverse:
            w_inv = torch.linalg.inv(w.float()).to(z.dtype)
            return F.conv1d(z, w_inv.unsqueeze(-1))
        log_det_w = batch * groups * torch.logdet(w.float())
        return self.conv(z), log_det_w


class WN(nn.Module):
    """Gated dilated residual network giving a coupling's ``(b, log_s)``.

    Args:
      n_in_channels: n_half, the channels of the conditioning half.
      n_mel_channels: channels of the grouped mel (n_mel * n_group).
      n_layers, n_channels, kernel_size: the residual stack.
      per_layer_cond: the older layout with one ``cond_layers[i]`` conv per
        layer instead of one shared ``cond_layer``.
      separable: depthwise ``C -> C`` dilated convs followed by 1x1 ``C -> 2C`` convs.
    """

    def __init__(
        self,
        n_in_channels: int,
        n_mel_channels: int,
        n_layers: int,
        n_channels: int,
        kernel_size: int,
        per_layer_cond: bool = False,
        separable: bool = False,
    ):
        super().__init__()
        self.separable = separable
        self.n_layers = n_layers
        self.n_channels = n_channels
        self.per_layer_cond = per_layer_cond
        self.start = _weight_norm(nn.Conv1d(n_in_channels, n_channels, 1))
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.in_pointwise = nn.ModuleList()
        if per_layer_cond:
            self.cond_layers = nn.ModuleList(
                [_weight_norm(nn.Conv1d(n_mel_channels, 2 * n_channels, 1)) for _ in range(n_layers)]
            )
        else:
            self.cond_layer = _weight_norm(nn.Conv1d(n_mel_channels, 2 * n_channels * n_layers, 1))
        for i in range(n_layers):
            dilation = 2**i
            padding = dilation * (kernel_size - 1) // 2
            if separable:
                conv = nn.Conv1d(
                    n_channels, n_channels, kernel_size, dilation=dilation, padding=padding, groups=n_channels
                )
                self.in_pointwise.append(_weight_norm(nn.Conv1d(n_channels, 2 * n_channels, 1)))
            else:
                conv = nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=dilation, padding=padding)
            self.in_layers.append(_weight_norm(conv))
            out = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(_weight_norm(nn.Conv1d(n_channels, out, 1)))
        # Zero start: each coupling begins as the identity.
        self.end = nn.Conv1d(n_channels, 2 * n_in_channels, 1)
        self.end.weight.data.zero_()
        self.end.bias.data.zero_()

    def forward(self, forward_input):
        audio, spect = forward_input
        c = self.n_channels
        x = self.start(audio)
        projected = None if self.per_layer_cond else self.cond_layer(spect)
        output = torch.zeros_like(x)
        for i in range(self.n_layers):
            if self.per_layer_cond:
                cond = self.cond_layers[i](spect)
            else:
                cond = projected[:, 2 * c * i : 2 * c * (i + 1)]
            acts = self.in_layers[i](x)
            if self.separable:
                acts = self.in_pointwise[i](acts)
            acts = acts + cond
            acts = torch.tanh(acts[:, :c]) * torch.sigmoid(acts[:, c:])
            res_skip = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                x = x + res_skip[:, :c]
                output = output + res_skip[:, c:]
            else:
                output = output + res_skip
        return self.end(output)


class WaveGlow(nn.Module):
    """NVIDIA's WaveGlow.

    Args:
      n_mel_channels, n_flows, n_group, n_early_every, n_early_size: as in
        NVIDIA's ``waveglow_config``.
      WN_config: dict with ``n_layers``, ``n_channels``, ``kernel_size``
        (and optionally ``separable``).
      per_layer_cond: build the older ``cond_layers`` layout.
      upsample_kernel_size, upsample_stride: the transposed-conv upsampler
        (NVIDIA fixes 1024 and 256); the stride is the hop for either upsampler.
      upsampler: ``"transposed_conv"`` (NVIDIA's) or ``"repeat"``.
      frame_context: frames either side of each group step's frame (``repeat``).
    """

    def __init__(
        self,
        n_mel_channels: int,
        n_flows: int,
        n_group: int,
        n_early_every: int,
        n_early_size: int,
        WN_config: dict,  # noqa: N803  (NVIDIA's config key)
        per_layer_cond: bool = False,
        upsample_kernel_size: int = 1024,
        upsample_stride: int = 256,
        upsampler: str = "transposed_conv",
        frame_context: int = 1,
    ):
        super().__init__()
        self.upsampler = upsampler
        self.hop = upsample_stride
        self.frame_context = frame_context
        if upsampler == "transposed_conv":
            self.upsample = nn.ConvTranspose1d(
                n_mel_channels, n_mel_channels, upsample_kernel_size, stride=upsample_stride
            )
            cond_channels = n_mel_channels * n_group
        elif upsampler == "repeat":
            cond_channels = n_mel_channels * (2 * frame_context + 1)
        else:
            raise ValueError(f"unknown upsampler {upsampler!r}")
        self.n_flows = n_flows
        self.n_group = n_group
        self.n_early_every = n_early_every
        self.n_early_size = n_early_size
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        remaining = n_group
        for k in range(n_flows):
            if k % n_early_every == 0 and k > 0:
                remaining -= n_early_size
            self.convinv.append(Invertible1x1Conv(remaining))
            self.WN.append(WN(remaining // 2, cond_channels, per_layer_cond=per_layer_cond, **WN_config))
        self.n_remaining_channels = remaining

    def _group_mel(self, spect):
        """``[B, n_mel, S] -> [B, n_mel * g, S / g]`` with channel ``m * g + j``."""
        batch, n_mel, samples = spect.shape
        g = self.n_group
        spect = spect.reshape(batch, n_mel, samples // g, g).permute(0, 1, 3, 2)
        return spect.reshape(batch, n_mel * g, samples // g)

    def _frame_condition(self, spect, groups):
        """``repeat``: ``[B, n_mel, F] -> [B, (2c + 1) * n_mel, groups]``.

        Channel ``q * n_mel + m`` of group step ``t`` is mel bin ``m`` of frame
        ``t * g // hop - c + q`` (zero outside the utterance).
        """
        c, frames = self.frame_context, spect.shape[2]
        padded = F.pad(spect, (c, c))
        windows = torch.cat([padded[:, :, q : q + frames] for q in range(2 * c + 1)], dim=1)
        frame_of_step = torch.arange(groups) * self.n_group // self.hop
        return windows[:, :, frame_of_step]

    def condition(self, spect, samples):
        """The WNs' condition for ``samples`` samples: ``[B, cond_channels, samples / g]``."""
        if self.upsampler == "repeat":
            return self._frame_condition(spect, samples // self.n_group)
        return self._group_mel(self.upsample(spect)[:, :, :samples])

    def forward(self, forward_input):
        """``(spect [B, n_mel, F], audio [B, S]) -> (z [B, g, S / g], log_s_list, log_det_w_list)``."""
        spect, audio = forward_input
        spect = self.condition(spect, audio.shape[1])
        batch, samples = audio.shape
        x = audio.reshape(batch, samples // self.n_group, self.n_group).permute(0, 2, 1)
        early, log_s_list, log_det_w_list = [], [], []
        for k in range(self.n_flows):
            if k % self.n_early_every == 0 and k > 0:
                early.append(x[:, : self.n_early_size])
                x = x[:, self.n_early_size :]
            x, log_det_w = self.convinv[k](x)
            log_det_w_list.append(log_det_w)
            n_half = x.shape[1] // 2
            x0, x1 = x[:, :n_half], x[:, n_half:]
            out = self.WN[k]((x0, spect))
            b, log_s = out[:, :n_half], out[:, n_half:]
            x = torch.cat([x0, torch.exp(log_s) * x1 + b], dim=1)
            log_s_list.append(log_s)
        return torch.cat(early + [x], dim=1), log_s_list, log_det_w_list

    def infer(self, spect, sigma: float = 1.0, z=None):
        """Mel ``[B, n_mel, F]`` to audio ``[B, F * stride]``.

        ``z`` (optional) is a standard-normal latent in forward's layout
        ``[B, g, F * stride / g]``; without it the noise is drawn as NVIDIA
        does (the final channels first, then each early block on the way).
        """
        spect = self.condition(spect, spect.shape[2] * self.hop)
        batch, groups = spect.shape[0], spect.shape[2]
        n_early_total = self.n_group - self.n_remaining_channels
        if z is None:
            x = sigma * torch.randn(batch, self.n_remaining_channels, groups, dtype=spect.dtype)
        else:
            x = sigma * z[:, n_early_total:]
        end = n_early_total
        for k in reversed(range(self.n_flows)):
            n_half = x.shape[1] // 2
            x0, x1 = x[:, :n_half], x[:, n_half:]
            out = self.WN[k]((x0, spect))
            b, log_s = out[:, :n_half], out[:, n_half:]
            x = torch.cat([x0, (x1 - b) * torch.exp(-log_s)], dim=1)
            x = self.convinv[k](x, reverse=True)
            if k % self.n_early_every == 0 and k > 0:
                if z is None:
                    noise = torch.randn(batch, self.n_early_size, groups, dtype=spect.dtype)
                else:
                    noise = z[:, end - self.n_early_size : end]
                x = torch.cat([sigma * noise, x], dim=1)
                end -= self.n_early_size
        return x.permute(0, 2, 1).reshape(batch, -1)


class WaveGlowLoss(nn.Module):
    """``[sum z^2 / (2 sigma^2) - sum log_s - sum log_det_W] / z.numel()`` (no Gaussian constant)."""

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        self.sigma = sigma

    def forward(self, model_output):
        z, log_s_list, log_det_w_list = model_output
        log_s_total = sum(torch.sum(log_s) for log_s in log_s_list)
        log_det_w_total = sum(log_det_w_list)
        loss = torch.sum(z * z) / (2 * self.sigma * self.sigma) - log_s_total - log_det_w_total
        return loss / (z.shape[0] * z.shape[1] * z.shape[2])
