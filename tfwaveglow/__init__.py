"""tfwaveglow: WaveGlow, the flow-based neural vocoder, in TensorFlow 2 / Keras 3.

The exports that need TensorFlow (the model, its loss, loading and saving) are
imported on first use, so that ``import tfwaveglow`` alone does not load it: the
command-line tools quiet TensorFlow's start-up logging
(:mod:`tfwaveglow.quiet_import`) before anything imports it.
"""

import importlib as _importlib
import os as _os
import typing as _typing

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfwaveglow.config import ConfigError, Params, load_params, save_params  # noqa: E402

if _typing.TYPE_CHECKING:
    from tfwaveglow.losses import nll_loss, nll_terms
    from tfwaveglow.model import WaveGlow, count_parameters
    from tfwaveglow.model_io import ModelLoadError, load_model, save_model

__version__ = "0.1.0"

# Export -> the module that defines it (each imports TensorFlow).
_LAZY_EXPORTS = {
    "nll_loss": "tfwaveglow.losses",
    "nll_terms": "tfwaveglow.losses",
    "WaveGlow": "tfwaveglow.model",
    "count_parameters": "tfwaveglow.model",
    "ModelLoadError": "tfwaveglow.model_io",
    "load_model": "tfwaveglow.model_io",
    "save_model": "tfwaveglow.model_io",
}

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


def __getattr__(name: str):
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_EXPORTS})
