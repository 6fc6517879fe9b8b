"""Training objectives beside the likelihood, and the discriminators they need.

- :mod:`~tfwaveglow.objectives.spectral`: multi-resolution STFT loss and log-mel L1
  between waveforms;
- :mod:`~tfwaveglow.objectives.adversarial`: least-squares GAN losses and feature
  matching (pure functions of discriminator outputs);
- :mod:`~tfwaveglow.objectives.discriminators`: CPU-sized discriminators (Keras
  models): multi-resolution spectrogram and multi-period;
- :mod:`~tfwaveglow.objectives.composite`: :class:`TrainingObjective`, the
  weighted sum of ``params.loss``'s terms that the trainer differentiates.

The likelihood itself stays in :mod:`tfwaveglow.losses`. Modules here use the model
and the audio front end, never the training package.
"""
