"""WaveGlow: mel-conditioned normalising flow from audio to Gaussian noise and back.

Tensors are channels-last. Audio ``[B, S]`` is squeezed into ``[B, S / g, g]``
(``g = n_group``; channel ``j`` at group step ``t`` holds sample ``g t + j``).
With NVIDIA's ``transposed_conv`` upsampler the mel ``[B, F, n_mel]`` is
upsampled to the sample rate and grouped the same way into
``[B, S / g, n_mel * g]`` with channel ``m * g + j`` (mel-major, NVIDIA's
order). The ``repeat`` upsampler has no weights: group step ``t`` (in frame
``f = t g / hop``) is conditioned on frames ``f - c .. f + c`` stacked,
``[B, S / g, (2c + 1) n_mel]`` (``c = frame_context``); with ``g`` up to the hop
this is frame-rate conditioning, each frame directly conditioning its steps.
Each of ``n_flows`` steps is an invertible 1x1 conv and an affine coupling;
every ``n_early_every`` flows ``n_early_size`` channels leave early. ``z``
concatenates the early outputs (first to leave first) and the final channels,
which is NVIDIA's ``z`` transposed to ``[B, S / g, g]``.

An optional post-filter (WG-WaveNet's; :class:`tfwaveglow.layers.PostFilter`)
refines the flow's output waveform in synthesis: :meth:`WaveGlow.infer` returns
``postfilter(flow output)``. It is not part of the flow: :meth:`WaveGlow.forward`
(the likelihood on real audio) does not use it, and it learns only from losses
on synthesised audio.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfwaveglow.config import Params
from tfwaveglow.layers.coupling import AffineCoupling
from tfwaveglow.layers.dilated_conv import DEFAULT_MODE
from tfwaveglow.layers.invertible_conv import Invertible1x1Conv
from tfwaveglow.layers.kernel import KernelMixin
from tfwaveglow.layers.postfilter import PostFilter
from tfwaveglow.layers.upsampler import Upsampler, centred_frame_windows, compose_with_projection, frame_windows

UPSAMPLERS = ("transposed_conv", "repeat")


@keras.saving.register_keras_serializable(package="tfwaveglow")
class WaveGlow(keras.Model):
    """WaveGlow with NVIDIA's math and conventions.

    Args:
      n_mel_channels: mel bins.
      n_flows: flow steps (1x1 conv + coupling).
      n_group: audio samples per group step (squeeze factor).
      n_early_every: an early output leaves before flows k, 2k, ... for this k.
      n_early_size: channels per early output.
      upsample_kernel_size, upsample_stride: the transposed-conv upsampler
        (the stride is the hop for every upsampler).
      upsampler: ``"transposed_conv"`` (NVIDIA's) or ``"repeat"`` (no weights,
        frames ``f - frame_context .. f + frame_context`` for every group step of
        frame ``f``).
      frame_context: frames each side for the ``repeat`` upsampler.
      wn_n_layers, wn_n_channels, wn_kernel_size: each coupling's WN.
      wn_separable: depthwise-separable dilated convs in the WNs.
      dilated_conv: how dilated convs are computed, a mode of
        :mod:`tfwaveglow.layers.dilated_conv` (the weights are the same for all).
      weight_norm: weight-normalised WN convs (training); inference models hold
        folded kernels (see :meth:`fold_weight_norm`).
      postfilter_n_layers, postfilter_n_channels, postfilter_kernel_size: the
        post-filter on the synthesised waveform (:class:`PostFilter`, its
        dilated convs computed as ``dilated_conv``); 0 layers: none.
    """

    def __init__(
        self,
        n_mel_channels: int = 80,
        n_flows: int = 12,
        n_group: int = 8,
        n_early_every: int = 4,
        n_early_size: int = 2,
        upsample_kernel_size: int = 1024,
        upsample_stride: int = 256,
        wn_n_layers: int = 8,
        wn_n_channels: int = 256,
        wn_kernel_size: int = 3,
        dilated_conv: str = DEFAULT_MODE,
        weight_norm: bool = False,
        upsampler: str = "transposed_conv",
        frame_context: int = 1,
        wn_separable: bool = False,
        postfilter_n_layers: int = 0,
        postfilter_n_channels: int = 64,
        postfilter_kernel_size: int = 3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")
        self.upsampler = upsampler
        self.frame_context = int(frame_context)
        self.wn_separable = bool(wn_separable)
        self.n_mel_channels = int(n_mel_channels)
        self.n_flows = int(n_flows)
        self.n_group = int(n_group)
        self.n_early_every = int(n_early_every)
        self.n_early_size = int(n_early_size)
        self.upsample_kernel_size = int(upsample_kernel_size)
        self.upsample_stride = int(upsample_stride)
        self.wn_n_layers = int(wn_n_layers)
        self.wn_n_channels = int(wn_n_channels)
        self.wn_kernel_size = int(wn_kernel_size)
        self.dilated_conv = dilated_conv
        self.weight_norm = bool(weight_norm)
        self.postfilter_n_layers = int(postfilter_n_layers)
        self.postfilter_n_channels = int(postfilter_n_channels)
        self.postfilter_kernel_size = int(postfilter_kernel_size)
        if self.postfilter_n_layers < 0:
            raise ValueError(f"postfilter_n_layers must be >= 0, got {postfilter_n_layers}")
        if self.upsample_stride % self.n_group != 0:
            raise ValueError(f"upsample_stride ({upsample_stride}) must be divisible by n_group ({n_group})")

        if self.upsampler == "transposed_conv":
            self.upsample = Upsampler(
                self.n_mel_channels, self.upsample_kernel_size, self.upsample_stride, name="upsample"
            )
            cond_channels = self.n_mel_channels * self.n_group
        else:
            self.upsample = None
            cond_channels = self.n_mel_channels * (2 * self.frame_context + 1)
        self.cond_channels = cond_channels
        self.convinv = []
        self.couplings = []
        wn_options = {
            "n_layers": self.wn_n_layers,
            "n_channels": self.wn_n_channels,
            "kernel_size": self.wn_kernel_size,
            "dilated_conv": self.dilated_conv,
            "weight_norm": self.weight_norm,
            "separable": self.wn_separable,
        }
        remaining = self.n_group
        for k in range(self.n_flows):
            if self._early_output_before(k):
                remaining -= self.n_early_size
            self.convinv.append(Invertible1x1Conv(remaining, name=f"convinv_{k}"))
            self.couplings.append(AffineCoupling(remaining, cond_channels, wn_options=wn_options, name=f"coupling_{k}"))
        self.n_remaining_channels = remaining
        object.__setattr__(self, "_compiled_infer", None)
        # tf.train.Checkpoint does not follow Keras' tracked lists: name each flow step as an
        # attribute too, so checkpoints hold them under stable names (convinv_0, coupling_0, ...).
        for k in range(self.n_flows):
            setattr(self, f"convinv_{k}", self.convinv[k])
            setattr(self, f"coupling_{k}", self.couplings[k])
        if self.postfilter_n_layers > 0:
            self.postfilter = PostFilter(
                self.postfilter_n_layers,
                self.postfilter_n_channels,
                self.postfilter_kernel_size,
                dilated_conv=self.dilated_conv,
                weight_norm=self.weight_norm,
                name="postfilter",
            )
        else:
            self.postfilter = None
        self.build(None)

    @classmethod
    def from_params(
        cls, params: Params, weight_norm: bool = False, dilated_conv: str | None = None, **kwargs
    ) -> "WaveGlow":
        """Builds the model of ``params.model`` (weights freshly initialised).

        Args:
          params: the config; ``params.model`` fixes the architecture.
          weight_norm: weight-normalised WN convs (as in training).
          dilated_conv: override ``params.model.wn.dilated_conv`` (the WNs' and
            the post-filter's dilated convs).
        """
        m = params.model
        return cls(
            n_mel_channels=m.n_mel_channels,
            n_flows=m.n_flows,
            n_group=m.n_group,
            n_early_every=m.n_early_every,
            n_early_size=m.n_early_size,
            upsample_kernel_size=m.upsample_kernel_size,
            upsample_stride=m.upsample_stride,
            wn_n_layers=m.wn.n_layers,
            wn_n_channels=m.wn.n_channels,
            wn_kernel_size=m.wn.kernel_size,
            dilated_conv=dilated_conv or m.wn.dilated_conv,
            weight_norm=weight_norm,
            upsampler=m.upsampler,
            frame_context=m.frame_context,
            wn_separable=m.wn.separable,
            postfilter_n_layers=m.postfilter.n_layers,
            postfilter_n_channels=m.postfilter.n_channels,
            postfilter_kernel_size=m.postfilter.kernel_size,
            **kwargs,
        )

    def build(self, input_shape=None):
        if self.upsample is not None:
            self.upsample.build(None)
        for conv, coupling in zip(self.convinv, self.couplings):
            conv.build(None)
            coupling.build(None)
        if self.postfilter is not None:
            self.postfilter.build(None)
        self.built = True

    # ------------------------------------------------------------------ helpers
    def _early_output_before(self, k: int) -> bool:
        return k > 0 and k % self.n_early_every == 0

    @property
    def hop_length(self) -> int:
        return self.upsample_stride

    def _check_mel(self, mel):
        mel = tf.convert_to_tensor(mel)
        if mel.dtype != tf.float32 and mel.dtype != tf.float16 and mel.dtype != tf.bfloat16:
            raise TypeError(f"mel must be a float tensor, got dtype {mel.dtype.name}")
        if mel.shape.rank is not None and mel.shape.rank != 3:
            raise ValueError(f"mel must be [batch, frames, n_mel={self.n_mel_channels}], got shape {mel.shape}")
        if mel.shape[-1] is not None and mel.shape[-1] != self.n_mel_channels:
            raise ValueError(
                f"mel has {mel.shape[-1]} channels, the model expects {self.n_mel_channels}: "
                f"mel must be [batch, frames, {self.n_mel_channels}], got shape {mel.shape}"
            )
        if mel.shape[1] is not None and mel.shape[1] == 0:
            raise ValueError(f"mel has zero frames: shape {mel.shape}")
        tf.debugging.assert_all_finite(mel, f"mel contains NaN or Inf values (mel shape {mel.shape})")
        return mel

    def group_mel(self, upsampled):
        """``[B, S, n_mel] -> [B, S / g, n_mel * g]``, channel ``m * g + j`` (NVIDIA's order)."""
        shape = tf.shape(upsampled)
        g, n_mel = self.n_group, self.n_mel_channels
        x = tf.reshape(upsampled, [shape[0], shape[1] // g, g, n_mel])
        x = tf.transpose(x, [0, 1, 3, 2])
        return tf.reshape(x, [shape[0], shape[1] // g, n_mel * g])

    def condition(self, mel, samples):
        """The couplings' condition for ``samples`` samples: ``[B, samples / g, cond_channels]`` in ``mel``'s dtype.

        ``transposed_conv``: the upsampled mel cropped to ``samples`` and grouped
        (``cond_channels = n_mel * g``); ``repeat``: each group step's frame
        window (``cond_channels = (2c + 1) * n_mel``).
        """
        if self.upsample is None:
            windows = centred_frame_windows(mel, self.frame_context)
            steps_per_frame = self.hop_length // self.n_group
            if steps_per_frame > 1:
                windows = tf.repeat(windows, steps_per_frame, axis=1)
            return windows[:, : samples // self.n_group, :]
        # .call, not __call__: Keras would cast a float16/bfloat16 mel to the layer's float32.
        return self.group_mel(self.upsample.call(mel)[:, :samples, :])

    # ------------------------------------------------------------------ flows
    def forward(self, mel, audio):
        """Audio to latent (training direction).

        The post-filter (if any) takes no part: the likelihood is the flow's.

        The conditioning and the WNs run in ``mel``'s dtype (float16 or
        bfloat16 under training's mixed precision); the flow itself (audio,
        1x1 convs, the affine steps), ``log_s_sum`` and the log-determinants
        are float32.

        Args:
          mel: ``[B, F, n_mel]`` float.
          audio: ``[B, S]`` in [-1, 1]; ``S % n_group == 0`` and
            ``(F - 2) * hop < S <= F * hop`` (the mel covers the audio).

        Returns:
          dict with ``z`` ``[B, S / g, g]``, ``log_s_sum`` (scalar, sum of every
          flow's log_s), ``log_det_w_sum`` (scalar, sum of the 1x1 log-dets),
          and ``log_s`` (list of per-flow ``[B, S / g, n_half]``).
        """
        mel = self._check_mel(mel)
        compute_dtype = _compute_dtype(mel)
        audio = tf.cast(tf.convert_to_tensor(audio), tf.float32)
        self._check_audio(mel, audio)
        batch, samples = tf.shape(audio)[0], tf.shape(audio)[1]
        spect = self.condition(mel, samples)
        x = tf.reshape(audio, [batch, samples // self.n_group, self.n_group])

        early, log_s_list = [], []
        log_det_w_sum = tf.zeros((), tf.float32)
        log_s_sum = tf.zeros((), tf.float32)
        for k in range(self.n_flows):
            if self._early_output_before(k):
                leaving, x = tf.split(x, [self.n_early_size, -1], axis=-1)
                early.append(leaving)
            x, log_det_w = self.convinv[k].forward(x)
            x, log_s = self.couplings[k].forward(x, spect, compute_dtype=compute_dtype)
            log_s_list.append(log_s)
            log_det_w_sum += log_det_w
            log_s_sum += tf.reduce_sum(tf.cast(log_s, tf.float32))
        z = tf.concat(early + [x], axis=-1)
        return {"z": z, "log_s_sum": log_s_sum, "log_det_w_sum": log_det_w_sum, "log_s": log_s_list}

    def _check_audio(self, mel, audio):
        hop, g = self.hop_length, self.n_group
        if audio.shape.rank is not None and audio.shape.rank != 2:
            raise ValueError(f"audio must be [batch, samples], got shape {audio.shape}")
        frames, samples = mel.shape[1], audio.shape[1]
        if samples is not None and samples % g != 0:
            raise ValueError(f"audio length {samples} (shape {audio.shape}) must be divisible by n_group={g}")
        if frames is not None and samples is not None and not (frames - 2) * hop < samples <= frames * hop:
            raise ValueError(
                f"audio of shape {audio.shape} does not match mel of shape {mel.shape}: {frames} frames "
                f"at hop {hop} need ({(frames - 2) * hop}, {frames * hop}] samples"
            )
        if mel.shape[0] is not None and audio.shape[0] is not None and mel.shape[0] != audio.shape[0]:
            raise ValueError(f"batch sizes differ: mel shape {mel.shape}, audio shape {audio.shape}")
        tf.debugging.assert_all_finite(audio, f"audio contains NaN or Inf values (audio shape {audio.shape})")
        if frames is None or samples is None:
            f, s = tf.shape(mel)[1], tf.shape(audio)[1]
            tf.debugging.assert_equal(s % g, 0, message=f"audio length must be divisible by n_group={g}")
            tf.debugging.assert_greater(s, (f - 2) * hop, message="audio is shorter than the mel frames describe")
            tf.debugging.assert_less_equal(s, f * hop, message="audio is longer than the mel frames cover")

    def latent_shape(self, mel):
        """``[B, F * hop / g, g]`` for a mel ``[B, F, n_mel]`` (a tensor)."""
        shape = tf.shape(mel)
        return tf.stack([shape[0], shape[1] * self.hop_length // self.n_group, self.n_group])

    def infer(self, mel, sigma=0.6, z=None, seed=None, conditioning=None, inverse_kernels=None, apply_postfilter=True):
        """Mel to audio (synthesis direction): the inverse flow, then the post-filter if the model has one.

        The flow runs in float32; a float16/bfloat16 ``mel`` runs the upsampler,
        the WNs and the post-filter's network in that dtype (mixed precision),
        the post-filter's sum with the flow's output in float32. :meth:`infer_function` gives
        a compiled version that does not retrace for new lengths.

        Args:
          mel: ``[B, F, n_mel]``.
          sigma: scalar or ``[B]``: the latent's standard deviation.
          z: optional standard-normal latent ``[B, F * hop / g, g]`` in
            forward's layout; it is scaled by ``sigma`` here. Drawn when None.
          seed: optional int seed: the drawn latent is then a pure function of
            (seed, shape) (stateless RNG); without it a fresh latent is drawn.
          conditioning: optional :class:`ComposedConditioning` from
            :meth:`compose_conditioning`: the same audio from fewer operations,
            at the price of its memory.
          inverse_kernels: optional per-flow ``W^-1`` (``[n_remaining, n_remaining]``
            float32 each, e.g. constants for a graph without a matrix inverse,
            or computed once for many calls); by default each 1x1 conv inverts
            its kernel here.
          apply_postfilter: False returns the flow's output alone (the
            post-filter's input); no effect without a post-filter.

        Returns:
          ``[B, F * hop]`` float32 audio (NVIDIA drops the upsampler's last
          ``kernel_size - stride`` samples).
        """
        mel = self._check_mel(mel)
        compute_dtype = _compute_dtype(mel)
        batch, frames = tf.shape(mel)[0], tf.shape(mel)[1]
        samples = frames * self.hop_length
        if z is None and seed is None:
            z = tf.random.normal(self.latent_shape(mel), dtype=tf.float32)
        elif z is None:
            seed_pair = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
            z = tf.random.stateless_normal(self.latent_shape(mel), seed=seed_pair, dtype=tf.float32)
        else:
            z = tf.convert_to_tensor(z)
            z = tf.cast(z, tf.float32) if z.dtype != tf.float32 else z
            self._check_latent(mel, z)
        sigma = tf.reshape(tf.cast(sigma, tf.float32), [-1, 1, 1])
        if conditioning is None:
            spect = self.condition(mel, samples)

            def flow_condition(k):
                return {"spect": spect}
        else:
            conditioning.check_matches(self)
            windows = conditioning.windows(mel)

            def flow_condition(k):
                return {"layer_condition": lambda i, bias: conditioning.layer_condition(windows, k, i, bias)}

        n_early_total = self.n_group - self.n_remaining_channels
        x = sigma * z[:, :, n_early_total:]
        end = n_early_total
        for k in reversed(range(self.n_flows)):
            x = self.couplings[k].inverse(x, compute_dtype=compute_dtype, **flow_condition(k))
            x = self.convinv[k].inverse(x, None if inverse_kernels is None else inverse_kernels[k])
            if self._early_output_before(k):
                x = tf.concat([sigma * z[:, :, end - self.n_early_size : end], x], axis=-1)
                end -= self.n_early_size
        audio = tf.reshape(x, [batch, samples])
        if self.postfilter is not None and apply_postfilter:
            # .call, not __call__: Keras would cast the float32 audio to a mixed policy's dtype.
            audio = self.postfilter.call(audio, compute_dtype=compute_dtype)
        return audio

    def infer_function(self, conditioning=None, mel_dtype=tf.float32):
        """A compiled :meth:`infer` (post-filter included) with a pinned signature.

        New lengths and batch sizes do not retrace.

        Args:
          conditioning: optional :class:`ComposedConditioning` to synthesise with.
          mel_dtype: the mel's dtype (float16/bfloat16: mixed precision).

        Returns:
          ``fn(mel [B, F, n_mel], sigma (scalar or [B]) float32, z [B, F * hop / g, g] float32) -> [B, F * hop]``.
        """

        def synthesize(mel, sigma, z):
            return self.infer(mel, sigma, z=z, conditioning=conditioning)

        return tf.function(
            synthesize,
            input_signature=[
                tf.TensorSpec([None, None, self.n_mel_channels], mel_dtype, name="mel"),
                tf.TensorSpec(None, tf.float32, name="sigma"),
                tf.TensorSpec([None, None, self.n_group], tf.float32, name="z"),
            ],
        )

    @property
    def infer_fn(self):
        """The compiled float32 :meth:`infer` (built on first use; see :meth:`infer_function`)."""
        if self._compiled_infer is None:
            # Set through object.__setattr__: Keras must not track the function as model state.
            object.__setattr__(self, "_compiled_infer", self.infer_function())
        return self._compiled_infer

    def compose_conditioning(self) -> "ComposedConditioning":
        """Precomputes the upsampler composed with every flow's ``cond_layer`` (see :class:`ComposedConditioning`).

        Raises:
          ValueError: the model has no transposed-conv upsampler (its condition
            is already frame windows: nothing to compose).
        """
        if self.upsample is None:
            raise ValueError(f"composed conditioning needs the transposed_conv upsampler, not {self.upsampler!r}")
        return ComposedConditioning(self)

    def _check_latent(self, mel, z):
        expected = f"[batch, frames * hop / n_group, n_group={self.n_group}]"
        if z.shape.rank is not None and z.shape.rank != 3:
            raise ValueError(f"z must be {expected}, got shape {z.shape}")
        frames = mel.shape[1]
        if z.shape[-1] is not None and z.shape[-1] != self.n_group:
            raise ValueError(f"z must be {expected}, got shape {z.shape} for mel shape {mel.shape}")
        if frames is not None and z.shape[1] is not None and z.shape[1] != frames * self.hop_length // self.n_group:
            raise ValueError(
                f"z must be {expected} = [batch, {frames * self.hop_length // self.n_group}, {self.n_group}] "
                f"for mel shape {mel.shape}, got shape {z.shape}"
            )

    def call(self, mel, audio):
        return self.forward(mel, audio)

    # ------------------------------------------------------------------ weights
    def named_layers(self) -> dict:
        """Every weight-holding layer by NVIDIA's module path (``WN.3.in_layers.5``, ...).

        A post-filter's layers follow as ``postfilter.start``,
        ``postfilter.in_layers.<i>``, ``postfilter.res_skip_layers.<i>`` and
        ``postfilter.end`` (NVIDIA's WaveGlow has none).
        """
        named = {} if self.upsample is None else {"upsample": self.upsample}
        for k in range(self.n_flows):
            wn = self.couplings[k].wn
            named[f"convinv.{k}"] = self.convinv[k]
            named[f"WN.{k}.start"] = wn.start
            named[f"WN.{k}.cond_layer"] = wn.cond_layer
            for i in range(wn.n_layers):
                named[f"WN.{k}.in_layers.{i}"] = wn.in_layers[i]
                if wn.separable:
                    named[f"WN.{k}.in_pointwise.{i}"] = wn.in_pointwise[i]
                named[f"WN.{k}.res_skip_layers.{i}"] = wn.res_skip_layers[i]
            named[f"WN.{k}.end"] = wn.end
        if self.postfilter is not None:
            pf = self.postfilter
            named["postfilter.start"] = pf.start
            for i in range(pf.n_layers):
                named[f"postfilter.in_layers.{i}"] = pf.in_layers[i]
                named[f"postfilter.res_skip_layers.{i}"] = pf.res_skip_layers[i]
            named["postfilter.end"] = pf.end
        return named

    def architecture(self) -> dict:
        """The constructor arguments that fix the weights' shapes.

        The post-filter's three appear only for a model that has one, so a
        model without is described exactly as before the option existed.
        """
        config = self.get_config()
        keys = _ARCH_KEYS + (_POSTFILTER_KEYS if self.postfilter_n_layers > 0 else ())
        return {k: config[k] for k in keys}

    def copy_weights_from(self, other: "WaveGlow", flow_only: bool = False) -> None:
        """Copies ``other``'s weights by layer path, folding or adding weight norm as needed.

        Args:
          other: a model of the same architecture.
          flow_only: copy the flow (upsampler, 1x1 convs, WNs) alone: the two
            may differ in their post-filters, and this model's keeps its own
            weights (a fresh one is the identity, so a model warm-started from
            a flow-only one synthesises exactly as that one did).
        """
        mine, theirs = self.architecture(), other.architecture()
        if flow_only:
            mine, theirs = ({k: a[k] for k in _ARCH_KEYS} for a in (mine, theirs))
        if mine != theirs:
            raise ValueError(f"architectures differ: {mine} vs {theirs}")
        src = other.named_layers()
        for name, layer in self.named_layers().items():
            if flow_only and name.startswith("postfilter."):
                continue
            copy_layer_weights(layer, src[name])

    def fold_weight_norm(self) -> "WaveGlow":
        """A copy with plain kernels ``g * v / ||v||`` (self when there is no weight norm)."""
        if not self.weight_norm:
            return self
        config = {k: getattr(self, k) for k in _CONFIG_KEYS}
        config["weight_norm"] = False
        folded = WaveGlow(**config)
        folded.copy_weights_from(self)
        return folded

    def receptive_field(self) -> int:
        """Group steps one WN output depends on, per side (one coupling)."""
        return sum((self.wn_kernel_size - 1) // 2 * 2**i for i in range(self.wn_n_layers))

    def postfilter_receptive_field(self) -> int:
        """Samples of the flow's output one output sample depends on, per side, through the post-filter.

        ``(k - 1) / 2 * (2**L - 1)`` for the post-filter's ``L`` layers of ``k``
        taps (its whole receptive field is twice that plus one); 0 without one.
        """
        return 0 if self.postfilter is None else self.postfilter.context

    def get_config(self):
        config = super().get_config()
        config.update({k: getattr(self, k) for k in _CONFIG_KEYS})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("trainable", "dtype"):
            config.pop(key, None)
        return cls(**config)


def copy_layer_weights(layer, source) -> None:
    """Copies one layer's weights from ``source`` (same shapes), folding or adding weight norm as needed."""
    if isinstance(layer, KernelMixin):
        layer.assign_kernel(source.effective_kernel(), source.bias)
    else:
        for dst_var, src_var in zip(layer.weights, source.weights, strict=True):
            dst_var.assign(src_var)


_ARCH_KEYS = (
    "n_mel_channels",
    "n_flows",
    "n_group",
    "n_early_every",
    "n_early_size",
    "upsample_kernel_size",
    "upsample_stride",
    "wn_n_layers",
    "wn_n_channels",
    "wn_kernel_size",
    "upsampler",
    "frame_context",
    "wn_separable",
)
_POSTFILTER_KEYS = ("postfilter_n_layers", "postfilter_n_channels", "postfilter_kernel_size")
# Weights do not depend on how the dilated conv is computed or whether weight norm is on.
_CONFIG_KEYS = (*_ARCH_KEYS, *_POSTFILTER_KEYS, "dilated_conv", "weight_norm")


def _compute_dtype(mel):
    """The dtype the upsampler and the WNs run in: the mel's (None for float32: no casts)."""
    return None if mel.dtype == tf.float32 else mel.dtype


class ComposedConditioning(tf.Module):
    """The upsampler and each flow's ``cond_layer``, multiplied into one linear map per WN layer.

    The grouped mel is linear in the mel, and each group step ``t`` reads only
    ``Q = ceil(upsample_kernel_size / hop)`` consecutive frames, with a matrix that
    depends on its phase ``t mod (hop / g)`` alone. So WN layer ``i`` of flow ``k``
    gets its condition as ``windows @ kernels[k][i]``: a ``[B, F, Q * n_mel]``
    window of frames times a ``[Q * n_mel, (hop / g) * 2C]`` matrix whose output
    reshapes to ``[B, F * hop / g, 2C]``. That is ``Q * n_mel`` (320) multiply-adds
    per condition value instead of ``n_mel * g`` (640) for ``cond_layer`` plus the
    upsampler's own, exactly the same function (up to float rounding).

    It is a snapshot of the weights: building it costs ``O(flows * layers *
    hop * kernel * n_mel^2 * C)`` multiply-adds (about 0.3 T for the default
    model, a few seconds) and holds ``4 * Q * n_mel * hop / g * 2C * L * flows``
    bytes (2.0 GB for the default model, 0.25 GB for ``configs/small.yaml``).
    :meth:`check_matches` compares the weights it was built from with the
    model's current ones and fails if they differ, so a changed model cannot
    be synthesised with a stale copy.

    Args:
      model: the :class:`WaveGlow` to compose (float32 weights).
    """

    @staticmethod
    def size_bytes(model: "WaveGlow") -> int:
        """Bytes the composed kernels of ``model`` would hold (float32), without building them (0: not composable)."""
        up = model.upsample
        if up is None:
            return 0
        window_frames = -(-up.kernel_size // up.stride)
        per_layer = window_frames * model.n_mel_channels * (up.stride // model.n_group) * 2 * model.wn_n_channels
        return 4 * per_layer * model.wn_n_layers * model.n_flows

    def __init__(self, model: "WaveGlow"):
        super().__init__(name="composed_conditioning")
        up = model.upsample
        self.stride = up.stride
        self.n_group = model.n_group
        self.n_mel_channels = model.n_mel_channels
        self.window_frames = -(-up.kernel_size // up.stride)
        width = 2 * model.wn_n_channels
        self.kernels, self.biases = [], []
        for coupling in model.couplings:
            layer = coupling.wn.cond_layer
            projection, projection_bias = layer.effective_kernel(), tf.convert_to_tensor(layer.bias)
            kernels, biases = [], []
            for i in range(model.wn_n_layers):
                columns = slice(width * i, width * (i + 1))
                kernel, bias = compose_with_projection(
                    up.kernel, up.bias, projection[:, columns], projection_bias[columns], up.stride, model.n_group
                )
                # Variables, not constants: a graph that captures them stays small.
                kernels.append(tf.Variable(kernel, trainable=False, name=f"kernel_{len(self.kernels)}_{i}"))
                biases.append(tf.Variable(bias, trainable=False, name=f"bias_{len(self.kernels)}_{i}"))
            self.kernels.append(kernels)
            self.biases.append(biases)
        # What it was built from, to refuse a model whose weights have changed since.
        self._sources = [tf.Variable(v, trainable=False) for v in self._source_values(model)]

    @staticmethod
    def _source_values(model):
        values = [tf.convert_to_tensor(model.upsample.kernel), tf.convert_to_tensor(model.upsample.bias)]
        for coupling in model.couplings:
            layer = coupling.wn.cond_layer
            values += [layer.effective_kernel(), tf.convert_to_tensor(layer.bias)]
        return values

    def check_matches(self, model: "WaveGlow") -> None:
        """Fails (InvalidArgumentError, in graphs too) unless ``model`` still has the weights composed here."""
        current = self._source_values(model)
        if len(current) != len(self._sources) or any(a.shape != b.shape for a, b in zip(current, self._sources)):
            raise ValueError("this ComposedConditioning was built for a model of another architecture")
        same = tf.reduce_all(
            [tf.reduce_all(tf.equal(a, tf.convert_to_tensor(b))) for a, b in zip(current, self._sources)]
        )
        tf.debugging.assert_equal(
            same,
            True,
            message="the model's upsampler or cond_layer weights changed since compose_conditioning(): compose again",
        )

    def windows(self, mel):
        """``[B, F, n_mel] -> [B, F, Q * n_mel]``: each frame with the ``Q - 1`` before it (zeros before frame 0)."""
        return frame_windows(mel, self.window_frames)

    def layer_condition(self, windows, flow: int, layer: int, bias=None):
        """WN layer ``layer`` of flow ``flow``'s projected condition ``[B, F * hop / g, 2C]`` (+ ``bias`` [2C]).

        Args:
          windows: :meth:`windows` of the mel.
          flow, layer: which WN layer.
          bias: optional extra ``[2C]`` bias (WN adds its dilated conv's here).
        """
        kernel = tf.cast(self.kernels[flow][layer], windows.dtype)
        shape = tf.shape(windows)
        phases = self.stride // self.n_group
        width = kernel.shape[1] // phases
        out = tf.linalg.matmul(tf.reshape(windows, [-1, kernel.shape[0]]), kernel)
        out = tf.reshape(out, [-1, width])  # rows: (batch, frame, phase) = (batch, group step)
        total_bias = tf.convert_to_tensor(self.biases[flow][layer])
        if bias is not None:
            total_bias = total_bias + bias
        out = tf.nn.bias_add(out, tf.cast(total_bias, out.dtype))
        return tf.reshape(out, [shape[0], shape[1] * phases, width])


def count_parameters(model: keras.Model) -> int:
    """Scalars in the model's variables (the post-filter's included; ``v`` and ``g`` under weight norm)."""
    return int(sum(np.prod(v.shape) for v in model.weights))


def multiply_adds_per_sample(model: WaveGlow) -> float:
    """Multiply-adds of one synthesis pass per output sample, counted on the architecture as defined.

    Per group step and flow: the condition's 1x1 (``cond_channels x 2CL``), ``start``
    (``n_half x C``), each WN layer's dilated conv (``2 k C^2``, or ``k C + 2 C^2``
    separable) and residual/skip 1x1 (``2 C^2``, the last ``C^2``), ``end``
    (``C x 2 n_half``) and the 1x1 invertible conv (``channels^2``); divided by
    ``n_group``, plus the transposed-conv upsampler's ``n_mel^2 kernel / hop``, plus
    the post-filter's (:meth:`PostFilter.multiply_adds_per_sample`, at the sample rate).
    Synthesis may regroup these exactly into fewer (e.g. composed conditioning);
    training's forward and backward take about three times as many.
    """
    total = 0.0
    c, layers, k = model.wn_n_channels, model.wn_n_layers, model.wn_kernel_size
    dilated = k * c + 2 * c * c if model.wn_separable else 2 * k * c * c
    for conv, coupling in zip(model.convinv, model.couplings):
        n_half = coupling.n_half
        per_step = model.cond_channels * 2 * c * layers + n_half * c + layers * dilated
        per_step += (layers - 1) * 2 * c * c + c * c + c * 2 * n_half + conv.channels**2
        total += per_step / model.n_group
    if model.upsample is not None:
        total += model.n_mel_channels**2 * model.upsample_kernel_size / model.hop_length
    if model.postfilter is not None:
        total += model.postfilter.multiply_adds_per_sample()
    return total
