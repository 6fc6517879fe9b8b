"""tfwaveglow: WaveGlow, the flow-based neural vocoder, in TensorFlow 2 / Keras 3."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfwaveglow.config import ConfigError, Params, load_params, save_params  # noqa: E402
from tfwaveglow.losses import nll_loss, nll_terms  # noqa: E402
from tfwaveglow.model import WaveGlow, count_parameters  # noqa: E402
from tfwaveglow.model_io import ModelLoadError, load_model, save_model  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ModelLoadError",
    "Params",
    "WaveGlow",
    "count_parameters",
    "load_model",
    "load_params",
    "nll_loss",
    "nll_terms",
    "save_model",
    "save_params",
]
