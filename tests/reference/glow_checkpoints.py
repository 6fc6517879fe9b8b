"""Reference WaveGlows with random weights, saved the ways NVIDIA's checkpoints come, and their outputs.

Import with ``tests/reference`` on ``sys.path`` (beside ``glow``).
"""

from __future__ import annotations

import copy
import math
import warnings

import glow
import numpy as np
import torch
from torch.nn.utils.weight_norm import WeightNorm

# Forms a checkpoint file can take (see tfwaveglow/convert/nvidia.py).
FORMS = ("pickled", "pickled_legacy", "state_dict", "wrapped_state_dict", "data_parallel_plain")


def randomize_(model: glow.WaveGlow, seed: int) -> glow.WaveGlow:
    """Gives every parameter random non-zero values (``end`` too), in place.

    ``weight_g`` is drawn apart from ``weight_v`` so the fold ``g * v / ||v||``
    matters; each 1x1 conv ``W`` is a rotation plus noise with ``det W > 0``
    so ``log|det W| != 0``. Scales keep activations O(1) at any width and
    ``log_s`` near 0.2 (std), so that float32 stays accurate to ~1e-6 through
    12 flows, as for a trained model; larger ``log_s`` compounds into
    float32 rounding of 1e-4 and more in the reference itself.
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=gen)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("convinv."):
                c = p.shape[0]
                q, _ = torch.linalg.qr(randn((c, c)))
                w = q + 0.3 * randn((c, c)) / math.sqrt(c)
                if torch.det(w) < 0:
                    w[:, 0] = -w[:, 0]
                p.copy_(w.reshape(c, c, 1))
            elif name.endswith("weight_g"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("weight_v"):
                p.copy_(randn(p.shape))
            elif name == "upsample.weight":
                # Each output sample sums n_mel * kernel / stride taps.
                n_mel, _, kernel = p.shape
                stride = model.upsample.stride[0]
                p.copy_(randn(p.shape) / math.sqrt(n_mel * kernel / stride))
            elif name.endswith("weight"):  # WN.k.end.weight: plain, non-zero
                p.copy_(0.1 * randn(p.shape) / math.sqrt(p.shape[1] * p.shape[2]))
            else:  # biases
                p.copy_(0.1 * randn(p.shape))
        # Recompute each weight-normed ``weight`` from the new g and v (as a plain tensor, so the
        # module can be deep-copied and its pickled ``weight`` attribute is current).
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, WeightNorm):
                    hook(module, None)
    return model


def build(config: dict, seed: int = 0, **kwargs) -> glow.WaveGlow:
    """A reference WaveGlow of ``config`` (NVIDIA's ``waveglow_config`` keys) with random weights."""
    torch.manual_seed(seed)
    return randomize_(glow.WaveGlow(**config, **kwargs), seed).eval()


def without_weight_norm(model: glow.WaveGlow) -> glow.WaveGlow:
    """A copy with PyTorch's own weight-norm removal applied (plain ``weight`` keys)."""
    model = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for module in model.modules():
            if hasattr(module, "weight_g"):
                torch.nn.utils.remove_weight_norm(module)
    return model


def save(model: glow.WaveGlow, path, form: str) -> str:
    """Writes ``model`` to ``path`` as one of :data:`FORMS`; returns the path."""
    path = str(path)
    if form == "pickled":  # NVIDIA train.py's layout
        torch.save({"model": model, "iteration": 1234, "optimizer": {"state": {}}, "learning_rate": 1e-4}, path)
    elif form == "pickled_legacy":  # the same, in the pre-1.6 serialization of the published checkpoints
        checkpoint = {"model": model, "iteration": 580000, "optimizer": {}, "learning_rate": 1e-4}
        torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    elif form == "state_dict":
        torch.save(model.state_dict(), path)
    elif form == "wrapped_state_dict":
        torch.save({"state_dict": model.state_dict(), "epoch": 3, "config": "waveglow"}, path)
    elif form == "data_parallel_plain":  # weight norm removed, saved from nn.DataParallel
        state = without_weight_norm(model).state_dict()
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        raise ValueError(f"unknown form {form!r}")
    return path


def outputs(model: glow.WaveGlow, mel: np.ndarray, audio: np.ndarray, z: np.ndarray, sigma: float) -> dict:
    """The reference's forward, loss and inference, channels-last like tfwaveglow.

    Args:
      mel: ``[B, F, n_mel]``; audio: ``[B, S]``; z: ``[B, F * hop / g, g]`` standard normal.

    Returns:
      ``z`` ``[B, S / g, g]``, ``log_s_sum``, ``log_det_w_sum``, ``loss`` (floats) and
      ``audio`` ``[B, F * hop]`` from ``infer(mel, sigma, z)``.
    """
    spect = torch.from_numpy(mel).transpose(1, 2)
    with torch.no_grad():
        z_out, log_s_list, log_det_w_list = model((spect, torch.from_numpy(audio)))
        loss = glow.WaveGlowLoss(sigma=1.0)((z_out, log_s_list, log_det_w_list))
        synthesized = model.infer(spect, sigma=sigma, z=torch.from_numpy(z).transpose(1, 2))
    return {
        "z": z_out.transpose(1, 2).numpy(),
        "log_s_sum": float(sum(ls.double().sum() for ls in log_s_list)),
        "log_det_w_sum": float(sum(ld.double() for ld in log_det_w_list)),
        "loss": float(loss),
        "audio": synthesized.numpy(),
    }
