"""A PyTorch state dict (`.pth`) read into numpy arrays, without torch.

S3E trains with Keras and the device runs TFLite; torch is never installed, yet the pretrained
weights the registries ship are torch files. Both of torch's formats are read: the legacy one
(a pickle stream followed by each storage's raw bytes) and the zip one (`data.pkl` beside one
file per storage). The unpickler resolves only the names a state dict needs (an ordered dict,
tensors, typed storages): a file that asks for anything else is refused, so reading a weights
file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


DAMAGED = (
    pickle.UnpicklingError,
    EOFError,
    struct.error,
    KeyError,
    IndexError,
    AttributeError,
    ValueError,
    TypeError,
    OverflowError,
    MemoryError,
)
"""What reading a damaged or hostile file raises before this module can say why."""


class TorchFileError(ValueError):
    """Not a state dict this reader can take, with why."""


class _Storage:
    """A storage's dtype and, once read, its flat data."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.data: np.ndarray | None = None


def _tensor(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> Callable[[], np.ndarray]:
    """A tensor as a deferred view: legacy files hold the storages' bytes after the pickle."""

    def make() -> np.ndarray:
        if not isinstance(storage, _Storage) or storage.data is None:
            raise TorchFileError("a tensor's storage is missing from the file")
        item = storage.dtype.itemsize
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if 0 not in size and (
            offset < 0 or min(stride, default=0) < 0 or last >= len(storage.data)
        ):
            raise TorchFileError("a tensor reaches past the end of its storage")
        return np.lib.stride_tricks.as_strided(
            storage.data[offset:],
            shape=size,
            strides=tuple(s * item for s in stride),
        ).copy()

    return make


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(f)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _tensor
        if module == "torch" and name in DTYPES:
            return DTYPES[name]
        raise TorchFileError(f"refusing {module}.{name}: not part of a state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, dtype, key = pid[0], pid[1], str(pid[2])
        if kind != "storage":
            raise TorchFileError(f"refusing a persistent {kind!r}: not a tensor's storage")
        if key not in self.storages:
            self.storages[key] = _Storage(dtype)
        return self.storages[key]


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of the file by its name, as numpy arrays."""
    raw = Path(path).read_bytes()
    storages: dict[str, _Storage] = {}
    try:
        if zipfile.is_zipfile(io.BytesIO(raw)):
            state = _load_zip(raw, storages)
        else:
            state = _load_legacy(raw, storages)
        if not isinstance(state, dict):
            raise TorchFileError(f"{path}: holds a {type(state).__name__}, not a state dict")
        tensors = {str(name): make() for name, make in state.items()}
    except (*DAMAGED, zipfile.BadZipFile) as e:
        if isinstance(e, TorchFileError):
            raise
        raise TorchFileError(f"{path}: damaged or cut short ({type(e).__name__}: {e})") from None
    odd = [name for name, t in tensors.items() if not isinstance(t, np.ndarray)]
    if odd:
        raise TorchFileError(f"{path}: {', '.join(odd[:5])} are not tensors")
    return tensors


def _load_legacy(raw: bytes, storages: dict[str, _Storage]) -> Any:
    f = io.BytesIO(raw)

    def load() -> Any:  # every pickle of the file through the same refusing unpickler
        return _Unpickler(f, storages).load()

    if load() != LEGACY_MAGIC:
        raise TorchFileError("not a torch file (bad magic number)")
    load()  # the protocol version
    load()  # the saving machine's type sizes
    state = load()
    for key in load():  # the storages' keys, in the order of their bytes
        (n,) = struct.unpack("<q", f.read(8))
        s = storages[str(key)]
        data = f.read(n * s.dtype.itemsize)
        if len(data) != n * s.dtype.itemsize:
            raise EOFError(f"a storage of {n} items holds {len(data)} bytes")
        s.data = np.frombuffer(data, dtype=s.dtype)
    return state


def _load_zip(raw: bytes, storages: dict[str, _Storage]) -> Any:
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise TorchFileError("a zip without data.pkl: not a torch file")
        root = pkl[: -len("data.pkl")]
        state = _Unpickler(io.BytesIO(z.read(pkl)), storages).load()
        for key, s in storages.items():
            s.data = np.frombuffer(z.read(f"{root}data/{key}"), dtype=s.dtype)
    return state
