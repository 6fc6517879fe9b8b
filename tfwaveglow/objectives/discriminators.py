"""CPU-sized GAN discriminators on waveforms: multi-resolution spectrogram and multi-period.

Every discriminator here takes waveforms ``[B, T]`` (float32, the ``[-1, 1]`` scale)
and returns ``(scores, features)``:

- ``scores``: a list with one score map per sub-discriminator (one per STFT
  resolution, one per period), each ``[B, ..., 1]`` float32; the LSGAN losses of
  :mod:`tfwaveglow.objectives.adversarial` average over their elements;
- ``features``: a list (one entry per sub-discriminator, same order) of lists of
  the hidden activations (after each hidden conv's leaky ReLU; the score map is
  not repeated among them), for feature matching.

Kinds:

- :class:`SpectrogramDiscriminator`: UnivNet's multi-resolution spectrogram
  discriminator (Vocos adopts it). Per resolution the magnitude of a Hann-windowed
  STFT, compressed by ``log(1 + |X|)`` (see :func:`stft_magnitude`), laid out as an
  image ``[B, frames, bins, 1]``, then 2-D convs: (3, 9) stride 1, three (3, 9)
  convs strided by ``stride`` along frequency, a (3, 3) conv, each ``channels``
  wide with leaky ReLU (slope 0.1), and a (3, 3) conv to one channel (the score).
- :class:`PeriodDiscriminator`: HiFi-GAN's multi-period discriminator. Per period
  ``p`` the waveform is reflect-padded to a multiple of ``p`` and folded to
  ``[B, T / p, p, 1]`` (:func:`fold_periods`); one (k, 1) conv with stride (s, 1)
  per width in ``channels``, one more (k, 1) conv at stride 1 and the last width
  (HiFi-GAN's fifth layer), leaky ReLU 0.1 after each, and a (3, 1) conv to one
  channel. The columns (phases of the period) never mix.
- :class:`Discriminators`: the kinds an :class:`~tfwaveglow.config.AdversarialParams`
  enables, their outputs concatenated (spectrogram resolutions first, then periods).

Design notes:

- No weight norm (or spectral norm): plain kernels and biases. HiFi-GAN and
  UnivNet reparametrise with weight norm, which changes the optimisation, not
  the function; it can be added later without changing these interfaces.
- Kernels start with PyTorch's default init (uniform in ``±1 / sqrt(fan_in)``),
  biases likewise, as the reference implementations' discriminators do.
- Everything computes and holds variables in float32, whatever the global Keras
  dtype policy (mixed precision applies to the flow only).
- Every variable is created in the constructor (each conv is built for its known
  input channels; time and frequency extents stay free), so constructing the
  discriminators inside ``strategy.scope()`` places them, and calls inside
  ``tf.function`` / ``strategy.run`` create nothing. Sub-layers are attributes as
  well as list items so that ``tf.train.Checkpoint`` saves them.
- Differences from the papers' reference code: UnivNet lays the magnitude out as
  ``[bins, frames]`` (its 9-tap kernels and strides run along time, and it frames
  with ``(n_fft - hop) / 2`` reflect padding); here the image is ``[frames, bins]``
  and the 9 taps and strides run along frequency, which shrinks the longest axis
  (1025 bins against 33 frames at FFT size 2048, hop 512 for a 16384-sample
  segment). The feature lists leave out the score map, which HiFi-GAN and UnivNet also append to
  theirs. Leaky ReLU slope 0.1 everywhere (UnivNet uses 0.2).
- Padding is "same" along both axes (HiFi-GAN pads (k - 1) / 2 along time, UnivNet
  (1, 4) for its (3, 9) kernels: same output sizes, ``ceil(n / stride)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from tfwaveglow.layers.kernel import torch_default_initializer
from tfwaveglow.objectives import spectral

__all__ = [
    "COMPRESSIONS",
    "LEAKY_RELU_SLOPE",
    "Discriminators",
    "PeriodDiscriminator",
    "PeriodSubDiscriminator",
    "SpectrogramDiscriminator",
    "SpectrogramSubDiscriminator",
    "fold_periods",
    "stft_magnitude",
]

LEAKY_RELU_SLOPE = 0.1
# How the STFT magnitude is compressed before the convs: "log1p" = log(1 + |X|), "none" = |X|.
COMPRESSIONS = ("log1p", "none")

# UnivNet's conv stack per resolution: (kernel over [frames, bins], strided along frequency).
_SPECTROGRAM_LAYERS = (((3, 9), False), ((3, 9), True), ((3, 9), True), ((3, 9), True), ((3, 3), False))


def stft_magnitude(waveforms, fft_size: int, hop_size: int, win_length: int, compression: str = "log1p"):
    """Compressed STFT magnitude with centred frames: the spectrogram discriminator's first stage.

    The magnitude is the spectral losses' (:func:`tfwaveglow.objectives.spectral.stft_magnitude`:
    frame ``t`` centred on sample ``t * hop_size`` after reflect padding, a periodic Hann window
    of ``win_length`` centred in the FFT buffer, ``sqrt(|X|^2 + 1e-7)``), then

        out = log(1 + |X|)  (compression "log1p")  or  |X|  (compression "none")

    Args:
      waveforms: ``[B, T]`` float32, ``T > fft_size // 2``.
      fft_size, hop_size, win_length: the resolution (``win_length <= fft_size``).
      compression: one of :data:`COMPRESSIONS`.

    Returns:
      float32 ``[B, 1 + T // hop_size, fft_size // 2 + 1]``.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if not (hop_size > 0 and 0 < win_length <= fft_size):
        raise ValueError(f"need hop > 0 and 0 < window <= FFT size, got {hop_size}, {win_length}, {fft_size}")
    magnitude = spectral.stft_magnitude(tf.cast(waveforms, tf.float32), fft_size, hop_size, win_length)
    return tf.math.log1p(magnitude) if compression == "log1p" else magnitude


def fold_periods(waveforms, period: int):
    """Reflect-pads ``[B, T]`` on the right to a multiple of ``period`` and folds it into rows of ``period``.

        out[b, i, j] = x_padded[b, i * period + j]

    Args:
      waveforms: ``[B, T]``; ``T > period - T % period`` when ``T`` is not a multiple (reflection needs it).
      period: ``p >= 1``.

    Returns:
      ``[B, ceil(T / p), p]``, same dtype.
    """
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    waveforms = tf.convert_to_tensor(waveforms)
    length = tf.shape(waveforms)[1]
    extra = (period - length % period) % period
    padded = tf.pad(waveforms, [[0, 0], [0, extra]], mode="REFLECT")
    return tf.reshape(padded, [tf.shape(waveforms)[0], -1, period])


def _conv2d(in_channels: int, out_channels: int, kernel_size, strides, name: str) -> keras.layers.Conv2D:
    """A float32 "same" Conv2D over ``[B, H, W, C]``, built now for ``in_channels`` (H and W free)."""
    fan_in = in_channels * kernel_size[0] * kernel_size[1]
    conv = keras.layers.Conv2D(
        out_channels,
        kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer=torch_default_initializer(fan_in),
        bias_initializer=torch_default_initializer(fan_in),
        dtype="float32",
        name=name,
    )
    conv.build((None, None, None, in_channels))
    return conv


def _run_stack(x, hidden: Sequence[keras.layers.Layer], output: keras.layers.Layer):
    """Hidden convs with leaky ReLU (each activation kept), then the output conv: ``(score, features)``."""
    features = []
    for conv in hidden:
        x = tf.nn.leaky_relu(conv(x), alpha=LEAKY_RELU_SLOPE)
        features.append(x)
    return output(x), features


class _Composite(keras.layers.Layer):
    """Shared plumbing of the multi-discriminators: a list of sub-discriminators, outputs concatenated."""

    def _track(self, subs: list) -> None:
        self.subs = subs
        for i, sub in enumerate(subs):
            setattr(self, f"sub_{i}", sub)  # tf.train.Checkpoint does not follow Keras' tracked lists
        self.built = True

    def call(self, waveforms):
        scores, features = [], []
        for sub in self.subs:
            score, feature_maps = sub(waveforms)
            scores.append(score)
            features.append(feature_maps)
        return scores, features

    @property
    def num_discriminators(self) -> int:
        """The number of sub-discriminators (entries of ``scores``)."""
        return len(self.subs)


class SpectrogramSubDiscriminator(keras.layers.Layer):
    """UnivNet's discriminator for one STFT resolution (see the module docstring).

    Args:
      fft_size, hop_size, win_length: the resolution.
      channels: width of every hidden conv (UnivNet: 32; the CPU default 8).
      stride: stride along frequency of the three strided convs (UnivNet: 2).
      compression: the magnitude's compression, one of :data:`COMPRESSIONS`.

    Shapes: ``[B, T] -> (score [B, F, ceil(N / stride^3), 1], features)``, where
    ``F`` frames and ``N = fft_size // 2 + 1`` bins come from :func:`stft_magnitude`;
    features: five maps ``[B, F, n_l, channels]``, ``n_l`` = ``N``, then ``N``
    divided by ``stride`` once, twice, three times (rounded up), then the same.
    """

    def __init__(
        self,
        fft_size: int,
        hop_size: int,
        win_length: int,
        channels: int = 8,
        stride: int = 2,
        compression: str = "log1p",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if not (hop_size > 0 and 0 < win_length <= fft_size):
            raise ValueError(f"need hop > 0 and 0 < window <= FFT size, got {hop_size}, {win_length}, {fft_size}")
        self.fft_size, self.hop_size, self.win_length = int(fft_size), int(hop_size), int(win_length)
        self.channels, self.stride, self.compression = int(channels), int(stride), compression
        self.convs = []
        in_channels = 1
        with keras.name_scope(self.name):  # variable paths: <name>/conv_<i>/kernel
            for i, (kernel, strided) in enumerate(_SPECTROGRAM_LAYERS):
                conv = _conv2d(in_channels, self.channels, kernel, (1, self.stride if strided else 1), f"conv_{i}")
                setattr(self, f"conv_{i}", conv)
                self.convs.append(conv)
                in_channels = self.channels
            self.conv_post = _conv2d(in_channels, 1, (3, 3), (1, 1), "conv_post")
        self.built = True

    def spectrogram(self, waveforms):
        """The first stage: ``[B, T] -> [B, frames, fft_size // 2 + 1]`` (:func:`stft_magnitude`)."""
        return stft_magnitude(waveforms, self.fft_size, self.hop_size, self.win_length, self.compression)

    def call(self, waveforms):
        return _run_stack(self.spectrogram(waveforms)[..., tf.newaxis], self.convs, self.conv_post)

    def get_config(self):
        config = super().get_config()
        config.update(
            fft_size=self.fft_size,
            hop_size=self.hop_size,
            win_length=self.win_length,
            channels=self.channels,
            stride=self.stride,
            compression=self.compression,
        )
        return config


class PeriodSubDiscriminator(keras.layers.Layer):
    """HiFi-GAN's discriminator for one period (see the module docstring).

    Args:
      period: ``p``, the width of the fold.
      channels: widths of the strided convs (HiFi-GAN: 32, 128, 512, 1024); a last
        stride-1 conv keeps the last width.
      kernel_size: ``k`` taps along time (HiFi-GAN: 5).
      stride: ``s``, the stride along time of the strided convs (HiFi-GAN: 3).

    Shapes: ``[B, T] -> (score [B, R_n, p, 1], features)`` with ``R_0 = ceil(T / p)``
    rows and ``R_l = ceil(R_(l-1) / s)``, ``n = len(channels)``; features:
    ``len(channels) + 1`` maps ``[B, R_l, p, channels[l]]`` (the last ``[B, R_n, p, channels[-1]]``).
    """

    def __init__(
        self, period: int, channels: Sequence[int] = (8, 16, 32, 64), kernel_size: int = 5, stride: int = 3, **kwargs
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if period < 1 or not channels or kernel_size < 1 or stride < 1:
            raise ValueError(f"bad period discriminator: {period=}, {channels=}, {kernel_size=}, {stride=}")
        self.period, self.channels = int(period), tuple(int(c) for c in channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        widths = [*self.channels, self.channels[-1]]
        strides = [self.stride] * len(self.channels) + [1]
        self.convs = []
        in_channels = 1
        with keras.name_scope(self.name):
            for i, (width, step) in enumerate(zip(widths, strides)):
                conv = _conv2d(in_channels, width, (self.kernel_size, 1), (step, 1), f"conv_{i}")
                setattr(self, f"conv_{i}", conv)
                self.convs.append(conv)
                in_channels = width
            self.conv_post = _conv2d(in_channels, 1, (3, 1), (1, 1), "conv_post")
        self.built = True

    def fold(self, waveforms):
        """The first stage: ``[B, T] -> [B, ceil(T / p), p]`` (:func:`fold_periods`)."""
        return fold_periods(tf.cast(waveforms, tf.float32), self.period)

    def call(self, waveforms):
        return _run_stack(self.fold(waveforms)[..., tf.newaxis], self.convs, self.conv_post)

    def get_config(self):
        config = super().get_config()
        config.update(period=self.period, channels=self.channels, kernel_size=self.kernel_size, stride=self.stride)
        return config


class SpectrogramDiscriminator(_Composite):
    """Multi-resolution spectrogram discriminator: one :class:`SpectrogramSubDiscriminator` per resolution.

    Args:
      fft_sizes, hop_sizes, win_lengths: the resolutions, equally long (at least one).
      channels, stride, compression: as :class:`SpectrogramSubDiscriminator`.

    Shapes: ``[B, T] -> (scores, features)``, lists with one entry per resolution, in order.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (128, 256, 512),
        win_lengths: Sequence[int] = (512, 1024, 2048),
        channels: int = 8,
        stride: int = 2,
        compression: str = "log1p",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths) >= 1:
            raise ValueError("fft_sizes, hop_sizes and win_lengths must be equally long and not empty")
        self.resolutions = tuple((int(n), int(h), int(w)) for n, h, w in zip(fft_sizes, hop_sizes, win_lengths))
        with keras.name_scope(self.name):
            self._track(
                [
                    SpectrogramSubDiscriminator(n, h, w, channels, stride, compression, name=f"resolution_{n}_{h}_{w}")
                    for n, h, w in self.resolutions
                ]
            )


class PeriodDiscriminator(_Composite):
    """Multi-period discriminator: one :class:`PeriodSubDiscriminator` per period.

    Args:
      periods: at least one (HiFi-GAN: 2, 3, 5, 7, 11).
      channels, kernel_size, stride: as :class:`PeriodSubDiscriminator`.

    Shapes: ``[B, T] -> (scores, features)``, lists with one entry per period, in order.
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: Sequence[int] = (8, 16, 32, 64),
        kernel_size: int = 5,
        stride: int = 3,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not periods:
            raise ValueError("periods must not be empty")
        self.periods = tuple(int(p) for p in periods)
        with keras.name_scope(self.name):
            self._track(
                [PeriodSubDiscriminator(p, channels, kernel_size, stride, name=f"period_{p}") for p in self.periods]
            )


class Discriminators(keras.Model):
    """Every enabled discriminator kind, outputs concatenated: spectrogram resolutions, then periods.

    Args:
      spectrogram: a :class:`SpectrogramDiscriminator`, or None to leave the kind out.
      period: a :class:`PeriodDiscriminator`, or None.

    Shapes: ``[B, T] float32 -> (scores, features)``: ``scores`` a list of
    ``num_discriminators`` score maps ``[B, ..., 1]``, ``features`` a list of as many lists
    of feature maps ``[B, ..., C]`` (see the two kinds for their extents).

    Usage::

        with strategy.scope():
            discriminators = Discriminators.from_params(params.adversarial)
        real_scores, real_features = discriminators(audio)
        fake_scores, fake_features = discriminators(x_hat)
    """

    def __init__(
        self, spectrogram: SpectrogramDiscriminator | None = None, period: PeriodDiscriminator | None = None, **kwargs
    ):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("name", "discriminators")
        super().__init__(**kwargs)
        if spectrogram is None and period is None:
            raise ValueError("no discriminator: give a spectrogram discriminator, a period discriminator or both")
        self.kinds = []
        if spectrogram is not None:
            self.spectrogram = spectrogram
            self.kinds.append(spectrogram)
        if period is not None:
            self.period = period
            self.kinds.append(period)
        self.built = True

    @classmethod
    def from_params(cls, adversarial_params, **kwargs) -> Discriminators:
        """The kinds an ``AdversarialParams`` (or a whole ``Params``) enables.

        ``mrd_fft_sizes`` / ``mrd_hop_sizes`` / ``mrd_win_lengths``, ``mrd_channels``,
        ``mrd_stride`` make the spectrogram discriminator (left out when
        ``mrd_fft_sizes`` is empty); ``mpd_periods``, ``mpd_channels``,
        ``mpd_kernel_size``, ``mpd_stride`` the period discriminator (left out when
        ``mpd_periods`` is empty). Nothing depends on the audio params: resolutions
        and periods are in samples.

        Raises:
          ValueError: both kinds are left out.
        """
        a = getattr(adversarial_params, "adversarial", adversarial_params)
        kwargs.setdefault("name", "discriminators")
        with keras.name_scope(kwargs["name"]):  # unique variable paths: discriminators/period/period_2/conv_0/...
            spectrogram, period = cls._kinds(a)
        return cls(spectrogram, period, **kwargs)

    @staticmethod
    def _kinds(a):
        spectrogram = period = None
        if a.mrd_fft_sizes:
            spectrogram = SpectrogramDiscriminator(
                a.mrd_fft_sizes,
                a.mrd_hop_sizes,
                a.mrd_win_lengths,
                channels=a.mrd_channels,
                stride=a.mrd_stride,
                name="spectrogram",
            )
        if a.mpd_periods:
            period = PeriodDiscriminator(
                a.mpd_periods,
                channels=a.mpd_channels,
                kernel_size=a.mpd_kernel_size,
                stride=a.mpd_stride,
                name="period",
            )
        return spectrogram, period

    def call(self, waveforms):
        waveforms = tf.cast(waveforms, tf.float32)
        scores, features = [], []
        for kind in self.kinds:
            kind_scores, kind_features = kind(waveforms)
            scores += kind_scores
            features += kind_features
        return scores, features

    @property
    def num_discriminators(self) -> int:
        """The number of sub-discriminators (entries of ``scores``)."""
        return sum(kind.num_discriminators for kind in self.kinds)
