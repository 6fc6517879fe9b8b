"""Import of NVIDIA/waveglow PyTorch checkpoints (torch is imported only while converting).

from tfwaveglow.convert import convert_checkpoint
result = convert_checkpoint("waveglow_256channels.pt", output="models/waveglow")
print(result.report.format())
"""

from tfwaveglow.convert.errors import (
    ConversionError,
    MissingKeysError,
    NotACheckpointError,
    NotWaveGlowError,
    ParityError,
    ShapeMismatchError,
    UnusedKeysError,
)
from tfwaveglow.convert.importer import ConversionReport, ConversionResult, convert_checkpoint
from tfwaveglow.convert.mapping import Architecture
from tfwaveglow.convert.nvidia import TorchCheckpoint, read_checkpoint

__all__ = [
    "Architecture",
    "ConversionError",
    "ConversionReport",
    "ConversionResult",
    "MissingKeysError",
    "NotACheckpointError",
    "NotWaveGlowError",
    "ParityError",
    "ShapeMismatchError",
    "TorchCheckpoint",
    "UnusedKeysError",
    "convert_checkpoint",
    "read_checkpoint",
]
