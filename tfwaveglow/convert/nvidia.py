"""Reading NVIDIA/waveglow PyTorch checkpoints, in every form they come in, without NVIDIA's code.

Forms read:

* the pickled whole model NVIDIA's ``train.py`` writes,
  ``{"model": <glow.WaveGlow>, "iteration", "optimizer", "learning_rate"}``
  (or a bare pickled module, or one wrapped in ``DataParallel``);
* a bare ``state_dict``;
* ``{"state_dict": state_dict, ...}`` and ``{"model": state_dict, ...}``.

Unpickling a whole model normally needs the module that defined its classes
(``glow``). Here every class outside a short allow-list of PyTorch, NumPy and
standard-library names is replaced by an inert stand-in: a
``torch.nn.Module`` subclass whose pickled state (parameters, sub-modules) is
restored but whose code is never imported or run. So NVIDIA's code need not be
installed, and a checkpoint cannot run code of its own while it is read.

torch is imported inside the functions only.
"""

from __future__ import annotations

import _compat_pickle
import dataclasses
import os
import pickle
import types
import warnings
from collections.abc import Mapping

import numpy as np

from tfwaveglow.convert.errors import ConversionError, NotACheckpointError, NotWaveGlowError

FORM_PICKLED_MODEL = "pickled model"
FORM_STATE_DICT = "state_dict"
FORM_WRAPPED_STATE_DICT = "{'state_dict': state_dict}"
FORM_MODEL_STATE_DICT = "{'model': state_dict}"

_SAFE_BUILTINS = frozenset(
    {"set", "frozenset", "slice", "range", "complex", "bytearray", "dict", "list", "tuple", "int", "float", "bool"}
    | {"str", "bytes", "object"}
)
_SAFE_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),  # protocol-2 pickles spell bytes this way
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConversionError(
            "reading a PyTorch checkpoint needs PyTorch: pip install torch (CPU build is enough)"
        ) from e
    return torch


@dataclasses.dataclass
class TorchCheckpoint:
    """The weights of a checkpoint file as NumPy arrays.

    Attributes:
      path: the file.
      form: how the weights were stored (one of the ``FORM_*`` names).
      tensors: ``{key: array}`` with the keys as stored (a ``module.``
        prefix is kept); floating-point weights are float32.
      model_class: the pickled model's class (``glow.WaveGlow``) or None.
      metadata: scalar entries beside the weights (``iteration``, ``learning_rate``).
      upsample_stride: a pickled model's upsampler stride (state dicts do not hold it), or None.
    """

    path: str
    form: str
    tensors: dict
    model_class: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    upsample_stride: int | None = None


# --------------------------------------------------------------------------- unpickling
_STAND_IN_CLASSES: dict = {}


def _stand_in_class(module: str, name: str):
    """An inert ``torch.nn.Module`` subclass standing in for ``module.name``."""
    key = (module, name)
    if key not in _STAND_IN_CLASSES:
        torch = _torch()

        def __init__(self, *args, **kwargs):
            # Reached only when a file calls a name that is not allowed (pickle's REDUCE):
            # the arguments are kept and nothing runs.
            torch.nn.Module.__init__(self)
            self.__dict__["_stand_in_args"] = (args, kwargs)

        _STAND_IN_CLASSES[key] = type(
            name,
            (torch.nn.Module,),
            {"__init__": __init__, "__module__": f"<stand-in for {module}>", "stand_in_for": f"{module}.{name}"},
        )
    return _STAND_IN_CLASSES[key]


def _allowed_torch_global(torch, obj, module: str, name: str) -> bool:
    if isinstance(obj, type):
        if issubclass(obj, (torch.nn.Module, torch.Tensor)) or obj in (torch.Size, torch.device):
            return True
        return module == "torch.nn.utils.weight_norm" and name == "WeightNorm"
    if isinstance(obj, (torch.dtype, torch.layout, torch.memory_format)):
        return True
    if module in ("torch._utils", "torch._tensor") and name.startswith("_rebuild"):
        return True
    return (module, name) == ("torch.serialization", "_get_layout")


def _restricted_pickle_module():
    """A ``pickle_module`` for ``torch.load`` that resolves only allow-listed globals."""
    torch = _torch()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            # Protocol-2 files use Python 2 names (``__builtin__``); normalise them first.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            root = module.split(".")[0]
            if (module, name) in _SAFE_GLOBALS or (module == "builtins" and name in _SAFE_BUILTINS):
                return super().find_class(module, name)
            if root == "torch":
                try:
                    obj = super().find_class(module, name)
                except (ImportError, AttributeError):
                    # E.g. a hook class a later PyTorch removed: its state is not needed.
                    return _stand_in_class(module, name)
                if _allowed_torch_global(torch, obj, module, name):
                    return obj
            return _stand_in_class(module, name)

    def load(file, **kwargs):
        return Unpickler(file, **kwargs).load()

    namespace = types.SimpleNamespace(
        __name__="tfwaveglow_restricted_pickle", Unpickler=Unpickler, load=load, UnpicklingError=pickle.UnpicklingError
    )
    return namespace


def _torch_load(path: str):
    torch = _torch()
    try:
        with warnings.catch_warnings():
            # The legacy format checks pickled class sources against the installed ones: noise here.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle_module())
    except Exception as e:  # torch reports a non-checkpoint in many ways; all mean the same here
        raise NotACheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------- finding the weights
def _is_module(torch, obj) -> bool:
    return isinstance(obj, torch.nn.Module)


def _module_tensors(module, prefix: str = ""):
    """``(key, tensor)`` of a module tree, read from its pickled state (no module code runs)."""
    state = vars(module)
    non_persistent = state.get("_non_persistent_buffers_set", set())
    for name, param in state.get("_parameters", {}).items():
        if param is not None:
            yield prefix + name, param
    for name, buffer in state.get("_buffers", {}).items():
        if buffer is not None and name not in non_persistent:
            yield prefix + name, buffer
    for name, child in state.get("_modules", {}).items():
        if child is not None:
            yield from _module_tensors(child, prefix + name + ".")


def _find_submodule(module, suffix: str):
    """The first sub-module whose name is ``suffix`` (``upsample``), searching breadth first."""
    queue = [module]
    while queue:
        node = queue.pop(0)
        children = vars(node).get("_modules", {})
        if children.get(suffix) is not None:
            return children[suffix]
        queue.extend(c for c in children.values() if c is not None)
    return None


def _class_name(obj) -> str:
    cls = type(obj)
    return getattr(cls, "stand_in_for", None) or f"{cls.__module__}.{cls.__qualname__}"


def _to_numpy(torch, tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()
    return tensor.numpy().copy()


def _scalar_metadata(checkpoint: Mapping, skip: str) -> dict:
    meta = {}
    for key, value in checkpoint.items():
        if key == skip or not isinstance(key, str):
            continue
        if isinstance(value, (bool, int, float, str)):
            meta[key] = value
        elif isinstance(value, np.generic):
            meta[key] = value.item()
    return meta


def _is_state_dict(torch, obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_checkpoint(path: str | os.PathLike) -> TorchCheckpoint:
    """Reads a WaveGlow checkpoint file in any of the forms above.

    Args:
      path: the ``.pt`` file.

    Returns:
      the weights as NumPy arrays with how they were stored.

    Raises:
      NotACheckpointError: missing file, or not something ``torch.load`` reads.
      NotWaveGlowError: a PyTorch checkpoint without model weights in it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NotACheckpointError(f"{path}: no such file")
    torch = _torch()
    obj = _torch_load(path)

    metadata: dict = {}
    model_class = upsample_stride = None
    if isinstance(obj, Mapping) and "model" in obj and _is_module(torch, obj["model"]):
        form, module = FORM_PICKLED_MODEL, obj["model"]
        metadata = _scalar_metadata(obj, skip="model")
    elif _is_module(torch, obj):
        form, module = FORM_PICKLED_MODEL, obj
    else:
        module = None

    if module is not None:
        model_class = _class_name(module)
        # DataParallel and similar wrappers hold the model as ``.module``.
        upsample = _find_submodule(module, "upsample")
        if upsample is not None and isinstance(getattr(upsample, "stride", None), (tuple, list)):
            upsample_stride = int(upsample.stride[0])
        tensors = {key: _to_numpy(torch, t) for key, t in _module_tensors(module)}
    elif isinstance(obj, Mapping) and _is_state_dict(torch, obj.get("state_dict")):
        form, tensors = FORM_WRAPPED_STATE_DICT, obj["state_dict"]
        metadata = _scalar_metadata(obj, skip="state_dict")
    elif isinstance(obj, Mapping) and _is_state_dict(torch, obj.get("model")):
        form, tensors = FORM_MODEL_STATE_DICT, obj["model"]
        metadata = _scalar_metadata(obj, skip="model")
    elif _is_state_dict(torch, obj):
        form, tensors = FORM_STATE_DICT, obj
    else:
        what = f"a {type(obj).__name__}"
        if isinstance(obj, Mapping):
            keys = [str(k) for k in list(obj)[:10]]
            what += f" with keys {keys}{' ...' if len(obj) > 10 else ''}"
        raise NotWaveGlowError(
            f"{path}: a PyTorch file, but no model weights in it: found {what}; expected a pickled model under "
            "'model', a state_dict, or a dict with 'state_dict'"
        )

    if module is None:
        tensors = {str(k): _to_numpy(torch, t) for k, t in tensors.items()}
    if not tensors:
        raise NotWaveGlowError(f"{path}: the pickled {model_class} holds no weights")
    return TorchCheckpoint(path, form, tensors, model_class, metadata, upsample_stride)
