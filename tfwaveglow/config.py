"""Typed, strictly loaded configuration.

The YAML file has the sections ``audio``, ``model`` (with ``wn``), ``data``,
``train`` and ``export``. Every key a file leaves out takes the default below
(NVIDIA/waveglow's ``config.json``); a key the dataclasses do not know is an
error that names it, except a key listed in ``RETIRED_KEYS`` (one an earlier
version wrote, e.g. into a run directory's ``params.yaml``), which is dropped
with a warning so that old runs still resume. Values are checked against their
declared types, and strings such as ``"1e-4"`` (which PyYAML reads as a string)
become floats.

Usage::

    params = load_params("params.yaml", overrides={"model.n_flows": 4})
    save_params(params, "runs/exp1/params.yaml")
"""

from __future__ import annotations

import dataclasses
import os
import typing
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

__all__ = [
    "AudioParams",
    "ConfigError",
    "DataParams",
    "ExportParams",
    "AdversarialParams",
    "LossWeights",
    "ModelParams",
    "Params",
    "PostFilterParams",
    "SpectralParams",
    "TrainParams",
    "WNParams",
    "load_params",
    "params_from_dict",
    "save_params",
]

DILATED_CONV_CHOICES = ("time_to_batch", "shifted_matmul", "phase_conv2d", "native")
LR_SCHEDULE_CHOICES = ("constant", "exponential", "cosine")
# What a learning-rate decay counts: training steps, or the share of train.cpu_seconds_budget spent.
LR_DECAY_OVER_CHOICES = ("steps", "cpu_budget")
UPSAMPLER_CHOICES = ("transposed_conv", "repeat")
MIXED_PRECISION_DTYPES = ("float16", "bfloat16")

# Keys earlier versions accepted and no longer use: dotted key -> why it is ignored.
RETIRED_KEYS = {
    "data.shuffle_buffer": "the training order is a seeded per-epoch permutation of the whole file list",
}


class ConfigError(ValueError):
    """Raised for an unknown key, a value of the wrong type or a broken rule."""


@dataclasses.dataclass(frozen=True)
class AudioParams:
    """Audio and mel front end (NVIDIA/Tacotron 2 ``data_config``)."""

    sampling_rate: int = 22050
    filter_length: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mel_channels: int = 80
    mel_fmin: float = 0.0
    mel_fmax: float = 8000.0
    max_wav_value: float = 32768.0


@dataclasses.dataclass(frozen=True)
class WNParams:
    """The WaveNet-like network inside each affine coupling."""

    n_layers: int = 8
    n_channels: int = 256
    kernel_size: int = 3
    dilated_conv: str = "time_to_batch"
    # Depthwise-separable dilated convs: a depthwise k-tap conv, then a 1x1 to 2C channels.
    separable: bool = False


@dataclasses.dataclass(frozen=True)
class PostFilterParams:
    """An optional non-causal WN on the flow's output waveform (WG-WaveNet's post-filter).

    ``n_layers`` 0 (the default) means no post-filter: the flow's output is the model's.
    """

    n_layers: int = 0
    n_channels: int = 64
    kernel_size: int = 3


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """WaveGlow architecture (NVIDIA ``waveglow_config``)."""

    n_mel_channels: int = 80
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    upsample_kernel_size: int = 1024
    upsample_stride: int = 256
    # "transposed_conv" (NVIDIA's, upsample_kernel_size taps) or "repeat": no weights, each
    # group step conditioned on its frame and frame_context frames either side.
    upsampler: str = "transposed_conv"
    frame_context: int = 1
    wn: WNParams = dataclasses.field(default_factory=WNParams)
    postfilter: PostFilterParams = dataclasses.field(default_factory=PostFilterParams)


@dataclasses.dataclass(frozen=True)
class DataParams:
    """Training data: segments cut from the preprocessed corpus."""

    segment_length: int = 16000
    valid_fraction: float = 0.05
    split_seed: int = 1234


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """Optimisation (NVIDIA ``train_config``)."""

    batch_size: int = 12
    learning_rate: float = 1e-4
    sigma: float = 1.0
    seed: int = 1234
    # Train with PyTorch-style weight normalisation (w = g * v / ||v||) as NVIDIA
    # does; inference models and exports always hold the folded kernels.
    weight_norm: bool = True
    steps: int = 500000
    # Stop (validate and checkpoint) once the run has spent this many seconds of process
    # CPU time in training, summed over resumes; 0 = no limit. Equal budgets make equal-cost
    # comparisons of configurations.
    cpu_seconds_budget: float = 0.0
    # Adam at learning_rate, optionally warmed up linearly over lr_warmup_steps and then
    # decayed: "exponential" multiplies by lr_decay_rate every lr_decay_steps; "cosine"
    # falls to learning_rate * lr_decay_rate over lr_decay_steps and stays there. The
    # decay begins at step max(lr_warmup_steps, lr_decay_start): a later start anneals a
    # run that has trained at a constant rate so far.
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    lr_decay_start: int = 0
    lr_decay_steps: int = 100000
    lr_decay_rate: float = 0.5
    grad_clip_norm: float = 0.0  # clip the global gradient norm to this; 0 turns clipping off
    jit_compile: bool = False
    # true: mixed_float16 with dynamic loss scaling, applied only where a GPU is present;
    # "float16" / "bfloat16": that compute dtype on any device (bfloat16 for CPUs with
    # AVX-512 BF16 or AMX); false: float32. The flow and the log-dets stay float32.
    mixed_precision: bool | str = True
    # Op determinism and per-epoch data seeds: a resumed run repeats an unbroken one.
    deterministic: bool = False
    # Non-finite steps are skipped; this many in a row stops training.
    max_consecutive_nonfinite: int = 10
    checkpoint_every: int = 2000
    max_to_keep: int = 5
    log_every: int = 100
    summary_every: int = 100
    validate_every: int = 2000
    audio_summary_every: int = 10000
    valid_filelist: str = ""  # utterance ids for validation NLL and audio; "" = no validation
    valid_max_clips: int = 0  # validate on the first N ids of valid_filelist; 0 = all
    # The decay of lr_schedule counts training steps (lr_decay_steps), or with "cpu_budget" the
    # share of cpu_seconds_budget spent (the whole decay over the budget; lr_decay_steps unused).
    lr_decay_over: str = "steps"
    # Reduce-on-plateau: after lr_plateau_patience validations in a row whose score (lr_plateau_metric
    # of the validation, lower is better) did not beat the best by lr_plateau_min_delta, the rate
    # of every optimizer is multiplied by lr_plateau_factor; patience 0 turns it off.
    lr_plateau_patience: int = 0
    lr_plateau_factor: float = 0.5
    lr_plateau_min_delta: float = 0.0
    lr_plateau_metric: str = "loss/total"
    # Divergence guard (0 = off): a step whose total loss rises more than guard_factor running
    # deviations above its running mean, or whose gradient norm exceeds guard_factor times its
    # running mean, is skipped like a non-finite one; guard_max_skips skipped steps in a row roll
    # the whole state back to the last good checkpoint and multiply the learning rates by
    # guard_lr_factor. The running levels follow finite steps with weight guard_decay and start
    # judging after guard_warmup_steps of them.
    guard_factor: float = 0.0
    guard_decay: float = 0.99
    guard_warmup_steps: int = 50
    guard_max_skips: int = 5
    guard_lr_factor: float = 0.5


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The weight of each training term in the generator's objective (``loss`` section).

    NVIDIA's recipe is the default: the NLL alone. ``stft`` (multi-resolution STFT loss),
    ``mel`` (log-mel L1) act on reverse-pass samples (section ``spectral``); ``adv``
    (least-squares GAN) and ``fm`` (feature matching) need the discriminators of section
    ``adversarial``.
    """

    nll: float = 1.0
    stft: float = 0.0
    mel: float = 0.0
    adv: float = 0.0
    fm: float = 0.0


@dataclasses.dataclass(frozen=True)
class SpectralParams:
    """Reverse-pass sampling and the multi-resolution STFT loss (``spectral`` section).

    The reverse pass ``x_hat = infer(mel, sigma, z ~ N(0, I))`` is taken every ``every``-th
    step (and then the STFT, mel and adversarial terms with it); resolutions are
    Parallel WaveGAN's three by default (FFT / hop / window).
    """

    sigma: float = 0.6
    every: int = 1
    fft_sizes: tuple[int, ...] = (1024, 2048, 512)
    hop_sizes: tuple[int, ...] = (120, 240, 50)
    win_lengths: tuple[int, ...] = (600, 1200, 240)


@dataclasses.dataclass(frozen=True)
class AdversarialParams:
    """CPU-sized discriminators, their optimizer and its rules (``adversarial`` section).

    A discriminator kind with an empty list is left out: ``mrd_fft_sizes`` (multi-resolution
    spectrogram discriminator, one 2-D conv stack per resolution over the STFT magnitude) and
    ``mpd_periods`` (multi-period discriminator, the waveform folded into ``[T / p, p]``).
    The discriminators train alone for their first ``warmup_steps`` steps (the generator's
    adversarial and feature-matching weights are 0 meanwhile), then those weights ramp up
    linearly over ``ramp_steps``.
    """

    mrd_fft_sizes: tuple[int, ...] = (512, 1024, 2048)
    mrd_hop_sizes: tuple[int, ...] = (128, 256, 512)
    mrd_win_lengths: tuple[int, ...] = (512, 1024, 2048)
    mrd_channels: int = 8
    mrd_stride: int = 2
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (8, 16, 32, 64)
    mpd_kernel_size: int = 5
    mpd_stride: int = 3
    learning_rate: float = 2e-4
    beta_1: float = 0.8
    beta_2: float = 0.99
    lr_schedule: str = "constant"
    lr_decay_steps: int = 100000
    lr_decay_rate: float = 0.5
    warmup_steps: int = 0
    ramp_steps: int = 0


@dataclasses.dataclass(frozen=True)
class ExportParams:
    """Values baked into an exported synthesis graph."""

    sigma: float = 0.6
    denoiser_strength: float = 0.0


@dataclasses.dataclass(frozen=True)
class Params:
    """All sections of a configuration."""

    audio: AudioParams = dataclasses.field(default_factory=AudioParams)
    model: ModelParams = dataclasses.field(default_factory=ModelParams)
    data: DataParams = dataclasses.field(default_factory=DataParams)
    train: TrainParams = dataclasses.field(default_factory=TrainParams)
    export: ExportParams = dataclasses.field(default_factory=ExportParams)
    loss: LossWeights = dataclasses.field(default_factory=LossWeights)
    spectral: SpectralParams = dataclasses.field(default_factory=SpectralParams)
    adversarial: AdversarialParams = dataclasses.field(default_factory=AdversarialParams)

    def to_dict(self) -> dict:
        """Nested plain dicts, tuples as lists (as YAML writes and reads them)."""
        return _lists_for_tuples(dataclasses.asdict(self))

    def _objective_rules(self) -> list:
        """Rules of the ``loss``, ``spectral``, ``adversarial`` and ``model.postfilter`` sections."""
        w, sp, adv, pf = self.loss, self.spectral, self.adversarial, self.model.postfilter
        rules = [
            (
                all(v >= 0 for v in dataclasses.asdict(w).values()),
                f"loss: every weight must be >= 0, got {dataclasses.asdict(w)}",
            ),
            (
                any(v > 0 for v in dataclasses.asdict(w).values()),
                "loss: at least one weight must be > 0",
            ),
            (sp.sigma > 0, f"spectral.sigma must be > 0, got {sp.sigma}"),
            (sp.every >= 1, f"spectral.every must be >= 1, got {sp.every}"),
            (
                len(sp.fft_sizes) == len(sp.hop_sizes) == len(sp.win_lengths) >= 1,
                "spectral.fft_sizes, hop_sizes and win_lengths must be equally long lists (one per resolution)",
            ),
            (
                all(0 < h <= wl <= n for n, h, wl in zip(sp.fft_sizes, sp.hop_sizes, sp.win_lengths)),
                "spectral: each resolution needs 0 < hop <= window <= FFT size",
            ),
            (
                len(adv.mrd_fft_sizes) == len(adv.mrd_hop_sizes) == len(adv.mrd_win_lengths),
                "adversarial.mrd_fft_sizes, mrd_hop_sizes and mrd_win_lengths must be equally long lists",
            ),
            (
                all(0 < h <= wl <= n for n, h, wl in zip(adv.mrd_fft_sizes, adv.mrd_hop_sizes, adv.mrd_win_lengths)),
                "adversarial: each resolution needs 0 < hop <= window <= FFT size",
            ),
            (all(p >= 1 for p in adv.mpd_periods), f"adversarial.mpd_periods must be >= 1, got {adv.mpd_periods}"),
            (
                not adv.mpd_periods or (len(adv.mpd_channels) >= 1 and all(c >= 1 for c in adv.mpd_channels)),
                f"adversarial.mpd_channels must be a non-empty list of widths >= 1, got {adv.mpd_channels}",
            ),
            (adv.mrd_channels >= 1, f"adversarial.mrd_channels must be >= 1, got {adv.mrd_channels}"),
            (adv.mrd_stride >= 1 and adv.mpd_stride >= 1, "adversarial strides must be >= 1"),
            (adv.mpd_kernel_size >= 1, f"adversarial.mpd_kernel_size must be >= 1, got {adv.mpd_kernel_size}"),
            (adv.learning_rate > 0, f"adversarial.learning_rate must be > 0, got {adv.learning_rate}"),
            (
                adv.lr_schedule in LR_SCHEDULE_CHOICES,
                f"adversarial.lr_schedule must be one of {LR_SCHEDULE_CHOICES}, got {adv.lr_schedule!r}",
            ),
            (adv.lr_decay_steps >= 1, f"adversarial.lr_decay_steps must be >= 1, got {adv.lr_decay_steps}"),
            (0 < adv.lr_decay_rate <= 1, f"adversarial.lr_decay_rate must be in (0, 1], got {adv.lr_decay_rate}"),
            (adv.warmup_steps >= 0 and adv.ramp_steps >= 0, "adversarial.warmup_steps and ramp_steps must be >= 0"),
            (
                (w.adv == 0 and w.fm == 0) or bool(adv.mrd_fft_sizes or adv.mpd_periods),
                "loss.adv / loss.fm need a discriminator: adversarial.mrd_fft_sizes or adversarial.mpd_periods",
            ),
            (pf.n_layers >= 0, f"model.postfilter.n_layers must be >= 0 (0 = none), got {pf.n_layers}"),
            (pf.n_channels >= 1, f"model.postfilter.n_channels must be >= 1, got {pf.n_channels}"),
            (
                pf.kernel_size % 2 == 1,
                f"model.postfilter.kernel_size must be odd (non-causal, centred), got {pf.kernel_size}",
            ),
        ]
        return rules

    def validate(self) -> "Params":
        """Checks rules that span fields; returns self or raises ConfigError."""
        a, m, d, t = self.audio, self.model, self.data, self.train
        rules = [
            (m.n_group % 2 == 0 and m.n_group >= 2, f"model.n_group must be even and >= 2, got {m.n_group}"),
            (
                m.n_mel_channels == a.n_mel_channels,
                f"model.n_mel_channels ({m.n_mel_channels}) must equal audio.n_mel_channels ({a.n_mel_channels})",
            ),
            (
                m.upsample_stride == a.hop_length,
                f"model.upsample_stride ({m.upsample_stride}) must equal audio.hop_length ({a.hop_length})",
            ),
            (
                m.upsample_kernel_size >= m.upsample_stride,
                f"model.upsample_kernel_size ({m.upsample_kernel_size}) must be >= model.upsample_stride "
                f"({m.upsample_stride})",
            ),
            (
                a.hop_length % m.n_group == 0,
                f"audio.hop_length ({a.hop_length}) must be divisible by model.n_group ({m.n_group})",
            ),
            # NVIDIA's default segment (16000) is not a multiple of the hop (256): a
            # segment takes ceil(segment / hop) mel frames and the upsampled mel is
            # cropped to the segment, so only the squeeze needs divisibility.
            (
                d.segment_length % m.n_group == 0 and d.segment_length >= a.hop_length,
                f"data.segment_length ({d.segment_length}) must be divisible by model.n_group "
                f"({m.n_group}) and at least audio.hop_length ({a.hop_length})",
            ),
            (m.n_flows >= 1, f"model.n_flows must be >= 1, got {m.n_flows}"),
            (
                m.upsampler in UPSAMPLER_CHOICES,
                f"model.upsampler must be one of {UPSAMPLER_CHOICES}, got {m.upsampler!r}",
            ),
            (m.frame_context >= 0, f"model.frame_context must be >= 0, got {m.frame_context}"),
            (m.n_early_every >= 1, f"model.n_early_every must be >= 1, got {m.n_early_every}"),
            (m.n_early_size >= 0, f"model.n_early_size must be >= 0, got {m.n_early_size}"),
            (m.wn.n_layers >= 1, f"model.wn.n_layers must be >= 1, got {m.wn.n_layers}"),
            (m.wn.n_channels >= 1, f"model.wn.n_channels must be >= 1, got {m.wn.n_channels}"),
            (
                m.wn.kernel_size % 2 == 1,
                f"model.wn.kernel_size must be odd for centred ('same') padding, got {m.wn.kernel_size}",
            ),
            (
                m.wn.dilated_conv in DILATED_CONV_CHOICES,
                f"model.wn.dilated_conv must be one of {DILATED_CONV_CHOICES}, got {m.wn.dilated_conv!r}",
            ),
            (a.win_length <= a.filter_length, "audio.win_length must be <= audio.filter_length"),
            (
                0.0 <= a.mel_fmin < a.mel_fmax <= a.sampling_rate / 2,
                f"need 0 <= audio.mel_fmin < audio.mel_fmax <= sampling_rate / 2, got "
                f"{a.mel_fmin}, {a.mel_fmax}, {a.sampling_rate}",
            ),
            (0.0 <= d.valid_fraction < 1.0, f"data.valid_fraction must be in [0, 1), got {d.valid_fraction}"),
            (t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}"),
            (t.learning_rate > 0, f"train.learning_rate must be > 0, got {t.learning_rate}"),
            (t.sigma > 0, f"train.sigma must be > 0, got {t.sigma}"),
            (t.steps >= 1, f"train.steps must be >= 1, got {t.steps}"),
            (
                t.cpu_seconds_budget >= 0,
                f"train.cpu_seconds_budget must be >= 0 (0 = none), got {t.cpu_seconds_budget}",
            ),
            (
                t.lr_schedule in LR_SCHEDULE_CHOICES,
                f"train.lr_schedule must be one of {LR_SCHEDULE_CHOICES}, got {t.lr_schedule!r}",
            ),
            (t.lr_warmup_steps >= 0, f"train.lr_warmup_steps must be >= 0, got {t.lr_warmup_steps}"),
            (t.lr_decay_start >= 0, f"train.lr_decay_start must be >= 0, got {t.lr_decay_start}"),
            (t.lr_decay_steps >= 1, f"train.lr_decay_steps must be >= 1, got {t.lr_decay_steps}"),
            (0 < t.lr_decay_rate <= 1, f"train.lr_decay_rate must be in (0, 1], got {t.lr_decay_rate}"),
            (
                isinstance(t.mixed_precision, bool) or t.mixed_precision in MIXED_PRECISION_DTYPES,
                f"train.mixed_precision must be true, false, float16 or bfloat16, got {t.mixed_precision!r}",
            ),
            (t.grad_clip_norm >= 0, f"train.grad_clip_norm must be >= 0 (0 = off), got {t.grad_clip_norm}"),
            (
                t.max_consecutive_nonfinite >= 1,
                f"train.max_consecutive_nonfinite must be >= 1, got {t.max_consecutive_nonfinite}",
            ),
            (t.max_to_keep >= 1, f"train.max_to_keep must be >= 1, got {t.max_to_keep}"),
            (t.valid_max_clips >= 0, f"train.valid_max_clips must be >= 0 (0 = all), got {t.valid_max_clips}"),
            (
                t.lr_decay_over in LR_DECAY_OVER_CHOICES,
                f"train.lr_decay_over must be one of {LR_DECAY_OVER_CHOICES}, got {t.lr_decay_over!r}",
            ),
            (
                t.lr_decay_over != "cpu_budget" or t.cpu_seconds_budget > 0,
                "train.lr_decay_over: cpu_budget needs train.cpu_seconds_budget > 0",
            ),
            (t.lr_plateau_patience >= 0, f"train.lr_plateau_patience must be >= 0, got {t.lr_plateau_patience}"),
            (0 < t.lr_plateau_factor <= 1, f"train.lr_plateau_factor must be in (0, 1], got {t.lr_plateau_factor}"),
            (t.guard_factor >= 0, f"train.guard_factor must be >= 0 (0 = off), got {t.guard_factor}"),
            (0 < t.guard_decay < 1, f"train.guard_decay must be in (0, 1), got {t.guard_decay}"),
            (t.guard_warmup_steps >= 0, f"train.guard_warmup_steps must be >= 0, got {t.guard_warmup_steps}"),
            (t.guard_max_skips >= 1, f"train.guard_max_skips must be >= 1, got {t.guard_max_skips}"),
            (0 < t.guard_lr_factor <= 1, f"train.guard_lr_factor must be in (0, 1], got {t.guard_lr_factor}"),
            *self._objective_rules(),
        ]
        for key in ("checkpoint_every", "log_every", "summary_every", "validate_every", "audio_summary_every"):
            value = getattr(t, key)
            rules.append((value >= 1, f"train.{key} must be >= 1, got {value}"))
        # The channels left after every early output must still split into two equal halves.
        remaining = m.n_group
        for k in range(1, m.n_flows):
            if k % m.n_early_every == 0:
                remaining -= m.n_early_size
        rules.append(
            (
                remaining >= 2 and m.n_early_size % 2 == 0,
                f"model: {m.n_flows} flows with {m.n_early_size} early channels every {m.n_early_every} "
                f"flows leave {remaining} of n_group={m.n_group} channels; the channels left must stay "
                "even and at least 2 (n_early_size even)",
            )
        )
        for ok, message in rules:
            if not ok:
                raise ConfigError(message)
        return self


def _lists_for_tuples(tree):
    if isinstance(tree, dict):
        return {k: _lists_for_tuples(v) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return [_lists_for_tuples(v) for v in tree]
    return tree


def _coerce(value: Any, type_, key: str) -> Any:
    if dataclasses.is_dataclass(type_):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping (section), got {type(value).__name__}")
        return _build(type_, value, key + ".")
    if type_ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if type_ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if type_ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if type_ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if typing.get_origin(type_) is tuple:
        # tuple[T, ...]: a YAML list (or one value) of T.
        (item_type, _) = typing.get_args(type_)
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(items))
    return value


def _build(cls, data: Mapping, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    retired = [key for key in data if key not in names and prefix + key in RETIRED_KEYS]
    for key in retired:
        warnings.warn(f"ignoring the retired key '{prefix}{key}': {RETIRED_KEYS[prefix + key]}", stacklevel=4)
    data = {key: value for key, value in data.items() if key not in retired}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            + ", ".join(f"'{prefix}{u}'" for u in unknown)
            + f"; known keys here: {', '.join(sorted(names))}"
        )
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def params_from_dict(data: Mapping | None, overrides: Mapping[str, Any] | None = None) -> Params:
    """Builds validated Params from a nested dict plus dotted-key overrides.

    Override values given as strings (from a command line) are parsed as YAML
    scalars, so ``"4"`` becomes 4 and ``"1e-4"`` becomes 1e-4.
    """
    tree: dict = _deep_copy(dict(data or {}))
    for dotted, value in (overrides or {}).items():
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else value
        _set_dotted(tree, dotted, value)
    return _build(Params, tree).validate()


def _deep_copy(tree: Mapping) -> dict:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in tree.items()}


def load_params(
    path: str | os.PathLike | Sequence[str | os.PathLike] | None = None, overrides: Mapping[str, Any] | None = None
) -> Params:
    """Loads a YAML config (or the defaults when ``path`` is None).

    Args:
      path: a YAML file, or several layered in order (a later file's keys
        replace an earlier one's, section by section); keys none of them
        sets take their defaults.
      overrides: dotted keys, e.g. ``{"model.n_flows": 4, "train.learning_rate": "1e-3"}``.

    Raises:
      ConfigError: unknown key, wrong type or a violated cross-field rule.
      FileNotFoundError: a file does not exist.
    """
    paths = [] if path is None else [path] if isinstance(path, str | os.PathLike) else list(path)
    data: dict = {}
    for one in paths:
        data = _merge(data, _read_yaml(os.fspath(one)))
    where = ", ".join(os.fspath(p) for p in paths)
    try:
        return params_from_dict(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


def _read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"params file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return dict(data)


def _merge(base: Mapping, top: Mapping) -> dict:
    """``top`` over ``base``, recursing into sections both have."""
    merged = _deep_copy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = _deep_copy(value) if isinstance(value, Mapping) else value
    return merged


def save_params(params: Params, path: str | os.PathLike) -> None:
    """Writes the resolved params as YAML (atomically)."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(params.to_dict(), f, sort_keys=False)
    os.replace(tmp, path)
