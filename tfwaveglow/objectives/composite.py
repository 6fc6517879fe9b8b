"""The training objective composed from the config: the NLL, spectral and adversarial terms, weighted.

:class:`TrainingObjective` is what the trainer differentiates. One call computes
every term a step needs and returns them by name, so adding a term touches the
config and one loss module, not the training loop::

    objective = TrainingObjective(params, discriminators)
    terms = objective(model, mel, audio, mode="reverse", adversarial_scale=1.0)
    terms["objective/generator"]      # sum_k loss_k * weight_k
    terms["objective/discriminator"]  # the discriminators' LSGAN loss (with discriminators)

Modes, chosen by the loop per step (:meth:`TrainingObjective.mode_for_step`):

- ``"nll"``: the forward (likelihood) terms only;
- ``"reverse"``: also a reverse-pass sample ``x_hat = infer(mel, spectral.sigma,
  z ~ N(0, I))`` and the terms on it (STFT, log-mel, adversarial, feature
  matching), gradients flowing back through the reverse pass;
- ``"discriminator"``: the discriminators' warm-up: the sample without the
  generator's gradient; only the discriminators learn.
"""

from __future__ import annotations

import tensorflow as tf

from tfwaveglow.losses import nll_terms
from tfwaveglow.objectives import adversarial, spectral

MODES = ("nll", "reverse", "discriminator")
# Terms on the reverse-pass sample, by their loss-section weight.
REVERSE_PASS_WEIGHTS = ("stft", "mel", "adv", "fm")


class TrainingObjective:
    """The weighted training terms of ``params.loss`` (see the module docstring).

    Args:
      params: the resolved config (``loss``, ``spectral``, ``adversarial``,
        ``train.sigma``, ``audio``).
      discriminators: the discriminators (:mod:`tfwaveglow.objectives.discriminators`),
        required when ``loss.adv`` or ``loss.fm`` is above 0, else None.
    """

    def __init__(self, params, discriminators=None):
        self.params = params
        self.weights = params.loss
        self.discriminators = discriminators
        if self.uses_discriminators and discriminators is None:
            raise ValueError("loss.adv / loss.fm are above 0: the objective needs discriminators")

    @property
    def uses_reverse_pass(self) -> bool:
        return any(getattr(self.weights, name) > 0 for name in REVERSE_PASS_WEIGHTS)

    @property
    def uses_discriminators(self) -> bool:
        return self.weights.adv > 0 or self.weights.fm > 0

    def mode_for_step(self, step: int) -> str:
        """The mode of the step that takes the run from ``step`` to ``step + 1``."""
        if not self.uses_reverse_pass or step % self.params.spectral.every != 0:
            return "nll"
        if self.uses_discriminators and step < self.params.adversarial.warmup_steps:
            return "discriminator"
        return "reverse"

    def adversarial_scale(self, step: int) -> float:
        """0 during the discriminators' warm-up, then a linear ramp to 1 over ``adversarial.ramp_steps``."""
        a = self.params.adversarial
        after = step - a.warmup_steps
        if after < 0:
            return 0.0
        return 1.0 if a.ramp_steps == 0 else min(1.0, (after + 1) / a.ramp_steps)

    def __call__(self, model, mel, audio, *, mode: str, adversarial_scale=1.0, z=None) -> dict:
        """Every term of one step.

        Args:
          model: the :class:`tfwaveglow.WaveGlow` being trained.
          mel: ``[B, F, n_mel]`` (the compute dtype).
          audio: ``[B, S]`` float32, ``S <= F * hop``.
          mode: one of :data:`MODES`.
          adversarial_scale: float32 scalar multiplying ``loss.adv`` and ``loss.fm``.
          z: the reverse pass's standard-normal latent ``[B, F * hop / g, g]``
            (drawn when None).

        Returns:
          dict of float32 scalars: ``objective/generator`` (the weighted sum the
          generator minimises), ``loss/total`` (the same, for logs), every term
          computed (``loss/nll``, ``loss/z``, ``loss/log_s``, ``loss/log_det_w``,
          ``loss/stft``, ``loss/stft_sc``, ``loss/stft_mag``, ``loss/mel``,
          ``loss/adv``, ``loss/fm``, ``loss/disc``) and, with discriminators in
          a reverse or discriminator step, ``objective/discriminator``.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        w = self.weights
        terms, weighted = {}, []
        if w.nll > 0 and mode != "discriminator":
            nll = nll_terms(model.forward(mel, audio), sigma=self.params.train.sigma)
            terms["loss/nll"] = nll.pop("loss/total")
            terms.update(nll)
            weighted.append(w.nll * terms["loss/nll"])
        if mode != "nll":
            weighted += self._reverse_pass_terms(model, mel, audio, mode, adversarial_scale, z, terms)
        total = tf.add_n(weighted) if weighted else tf.constant(0.0)
        terms["objective/generator"] = total
        terms["loss/total"] = total
        return terms

    def spectral_terms(self, real, fake, every: bool = False) -> dict:
        """The STFT (``loss/stft``, ``loss/stft_sc``, ``loss/stft_mag``) and ``loss/mel`` terms.

        Args:
          real, fake: ``[B, T]`` float32 waveforms.
          every: compute both kinds, not only those with a weight (validation).

        Returns:
          dict of float32 scalars.
        """
        w, s = self.weights, self.params.spectral
        terms = {}
        if every or w.stft > 0:
            terms.update(spectral.multi_resolution_stft_loss(real, fake, s.fft_sizes, s.hop_sizes, s.win_lengths))
        if every or w.mel > 0:
            terms["loss/mel"] = spectral.log_mel_l1(real, fake, self.params.audio)
        return terms

    def _reverse_pass_terms(self, model, mel, audio, mode, adversarial_scale, z, terms) -> list:
        w, s = self.weights, self.params.spectral
        fake = model.infer(mel, sigma=s.sigma, z=z)[:, : audio.shape[1] or tf.shape(audio)[1]]
        if mode == "discriminator":
            fake = tf.stop_gradient(fake)
        real = tf.cast(audio, tf.float32)
        terms.update(self.spectral_terms(real, fake))
        weighted = [getattr(w, name) * terms[f"loss/{name}"] for name in ("stft", "mel") if getattr(w, name) > 0]
        if self.uses_discriminators:
            real_scores, real_features = self.discriminators(real)
            fake_scores, fake_features = self.discriminators(fake)
            terms["loss/disc"] = adversarial.discriminator_loss(real_scores, fake_scores)
            terms["objective/discriminator"] = terms["loss/disc"]
            terms["loss/adv"] = adversarial.generator_adversarial_loss(fake_scores)
            terms["loss/fm"] = adversarial.feature_matching_loss(real_features, fake_features)
            scale = tf.cast(adversarial_scale, tf.float32)
            if w.adv > 0:
                weighted.append(scale * w.adv * terms["loss/adv"])
            if w.fm > 0:
                weighted.append(scale * w.fm * terms["loss/fm"])
        return weighted
