"""Read and write MXNet's NDArray-list files (``.params``) with NumPy only, no MXNet needed.

This is the format of ``mx.nd.save`` / ``mx.nd.load``, ``gluon.Block.save_parameters`` /
``load_parameters`` and GluonCV's model-store weights. All integers are little-endian::

    file   := u64 0x112 | u64 0 (reserved) | u64 n | array * n | u64 k | name * k   (k = 0 or n)
    name   := u64 length | UTF-8 bytes
    array  := u32 magic | i32 storage type | shape | context | i32 dtype code | raw C-order data
    shape  := i32 ndim | i64 dim * ndim
    context:= i32 dev_type (1 cpu, 2 gpu, 3 cpu_pinned, 5 cpu_shared) | i32 dev_id

Array magics (MXNet 1.9.1 ``src/ndarray/ndarray.cc``):

- ``0xF993FAC9`` (V2): what MXNet writes by default (every GluonCV file). ``ndim == 0`` means an
  uninitialised array whose record stops after the shape.
- ``0xF993FACA`` (V3): written inside ``mx.util.np_shape(True)``; ``ndim == 0`` is a 0-d array with
  one element, ``ndim == -1`` is uninitialised. MXNet loads it only in np-shape mode.
- ``0xF993FAC8`` (V1): no storage-type field, otherwise as V2.
- anything else (pre-V1): the u32 *is* ndim, followed by ``ndim`` u32 dims, context, dtype, data.

Storage types: 0 dense, 1 row_sparse, 2 csr; only dense is supported. Dtype codes (mshadow's
``TypeFlag``): 0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64, 7 bool, 8 int16,
9 uint16, 10 uint32, 11 uint64, 12 bfloat16. NumPy has no bfloat16, so bfloat16 arrays are read
widened to float32 (exactly) and cannot be written.

Gluon's ``save_parameters`` writes bare structural names (``features.0.1.gamma``); the older
``Module``/``save_checkpoint`` files prefix them with ``arg:`` or ``aux:``. ``load_params`` strips
these prefixes and remembers them in ``MXNetParams.prefixes`` so ``save_params`` can put them back.
"""
from __future__ import annotations

import io
import math
import os
import struct
from typing import BinaryIO, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import GluonBofError
from ..utils.fileio import atomic_open

__all__ = ["MXNetParams", "MXNetParamsError", "load_params", "save_params", "read_ndarray_list",
           "write_ndarray_list"]

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
BF16_CODE = 12
STORAGE_NAMES = {-1: "undefined", 0: "dense", 1: "row_sparse", 2: "csr"}
DTYPE_CODES: Dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"),
    4: np.dtype("<i4"), 5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"),
    8: np.dtype("<i2"), 9: np.dtype("<u2"), 10: np.dtype("<u4"), 11: np.dtype("<u8"),
    BF16_CODE: np.dtype("<u2"),  # raw bits, widened to float32 after reading
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in DTYPE_CODES.items()
                 if code != BF16_CODE}
_MAX_NDIM = 32
PathOrFile = Union[str, os.PathLike, BinaryIO]


class MXNetParamsError(GluonBofError, ValueError):
    """A file is not a readable MXNet NDArray list, or an array cannot be written as one."""


class MXNetParams(dict):
    """An ordered ``name -> np.ndarray`` dict.

    ``prefixes[name]`` is ``'arg'``, ``'aux'`` or ``''``: the prefix the name had in the file.
    """

    def __init__(self, *args, prefixes: Optional[Mapping[str, str]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.prefixes: Dict[str, str] = dict(prefixes or {})


class _Reader:
    """Bounds-checked little-endian reads from a bytes buffer; errors name the file."""

    def __init__(self, buf: bytes, name: str):
        self.buf, self.pos, self.name = memoryview(buf), 0, name

    def fail(self, what: str) -> MXNetParamsError:
        return MXNetParamsError(f"{self.name}: {what} (at byte {self.pos} of {len(self.buf)})")

    def take(self, nbytes: int, what: str) -> memoryview:
        if nbytes < 0 or self.pos + nbytes > len(self.buf):
            raise self.fail(f"truncated file: {what} needs {nbytes} bytes, "
                            f"{len(self.buf) - self.pos} left")
        out = self.buf[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return out

    def unpack(self, fmt: str, what: str):
        vals = struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))
        return vals if len(vals) > 1 else vals[0]


def _read_array(r: _Reader, index: int) -> np.ndarray:
    what = f"array #{index}"
    magic = r.unpack("I", f"{what} magic")
    if magic in (V2_MAGIC, V3_MAGIC):
        stype = r.unpack("i", f"{what} storage type")
        if stype != 0:
            raise r.fail(f"{what} has storage type {stype} ({STORAGE_NAMES.get(stype, 'unknown')})"
                         f"; only dense arrays are supported")
    if magic in (V1_MAGIC, V2_MAGIC, V3_MAGIC):
        ndim = r.unpack("i", f"{what} ndim")
        if ndim > _MAX_NDIM or ndim < -1:
            raise r.fail(f"{what} has ndim {ndim}: not an MXNet NDArray file or corrupt")
        dims = r.unpack(f"{max(ndim, 0)}q", f"{what} shape") if ndim > 0 else ()
        uninitialised = ndim == -1 or (ndim == 0 and magic != V3_MAGIC)
    else:  # pre-V1 records: the first u32 is ndim, dims are u32
        ndim = magic
        if ndim > _MAX_NDIM:
            raise r.fail(f"{what} starts with 0x{magic:08X}, not an NDArray magic "
                         f"(0xF993FAC8/9/A): not an MXNet NDArray file or corrupt")
        dims = r.unpack(f"{ndim}I", f"{what} shape") if ndim else ()
        uninitialised = ndim == 0
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if uninitialised or any(d < 0 for d in dims):
        raise r.fail(f"{what} is an uninitialised NDArray (shape {dims or 'none'}); MXNet writes a "
                     f"0-d array this way outside np-shape mode and cannot read it back either")
    r.unpack("ii", f"{what} context")
    code = r.unpack("i", f"{what} dtype")
    if code not in DTYPE_CODES:
        raise r.fail(f"{what} has unknown dtype code {code} (known: {sorted(DTYPE_CODES)})")
    dtype = DTYPE_CODES[code]
    count = math.prod(dims)  # Python ints: a corrupt shape cannot wrap around to a small size
    left = len(r.buf) - r.pos
    if count * dtype.itemsize > left:
        raise r.fail(f"truncated file: {what} claims shape {dims} ({count} {dtype.name} values, "
                     f"{count * dtype.itemsize} bytes) but {left} bytes are left (or a corrupt shape)")
    data = np.frombuffer(r.take(count * dtype.itemsize, f"{what} data {dims}"), dtype, count)
    if code == BF16_CODE:
        return (data.astype(np.uint32) << 16).view(np.float32).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _label(source: PathOrFile) -> str:
    """The file name used in error messages."""
    if hasattr(source, "read") or hasattr(source, "write"):
        return str(getattr(source, "name", "<stream>"))
    return os.fspath(source)


def _read_bytes(source: PathOrFile) -> Tuple[bytes, str]:
    if hasattr(source, "read"):
        return source.read(), _label(source)
    with open(source, "rb") as f:
        return f.read(), _label(source)


def read_ndarray_list(source: PathOrFile) -> Tuple[List[np.ndarray], List[str]]:
    """Reads every array of an MXNet NDArray-list file, as ``mx.nd.load`` does.

    Returns ``(arrays, names)``; ``names`` is empty for a file saved from a list, else holds the
    stored names verbatim (``arg:``/``aux:`` prefixes included). Raises ``MXNetParamsError``
    naming the file for a foreign, truncated or unsupported file.
    """
    buf, name = _read_bytes(source)
    r = _Reader(buf, name)
    if len(buf) < 24:
        raise r.fail(f"truncated or foreign file: {len(buf)} bytes is shorter than the "
                     f"24-byte header")
    header, _reserved = r.unpack("QQ", "header")
    if header != LIST_MAGIC:
        raise r.fail(f"not an MXNet NDArray file: header 0x{header:X}, expected 0x{LIST_MAGIC:X}")
    count = r.unpack("Q", "array count")
    if count > len(buf):
        raise r.fail(f"corrupt array count {count}")
    arrays = [_read_array(r, i) for i in range(count)]
    nnames = r.unpack("Q", "name count")
    if nnames not in (0, count):
        raise r.fail(f"{nnames} names for {count} arrays")
    names = []
    for i in range(nnames):
        length = r.unpack("Q", f"name #{i} length")
        raw = bytes(r.take(length, f"name #{i}"))
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise r.fail(f"name #{i} is not UTF-8 ({err})") from None
    return arrays, names


def load_params(source: PathOrFile) -> MXNetParams:
    """Loads a named ``.params`` file as an ordered ``MXNetParams`` (``name -> np.ndarray``).

    Names lose an ``arg:``/``aux:`` prefix (kept in ``.prefixes``). Arrays keep their stored dtype
    (bfloat16 is widened to float32) and shape, 0-d and empty arrays included.
    """
    arrays, names = read_ndarray_list(source)
    label = _label(source)
    if arrays and not names:
        raise MXNetParamsError(f"{label}: holds an unnamed list of {len(arrays)} arrays "
                               f"(mx.nd.save of a list); read it with read_ndarray_list")
    out = MXNetParams()
    for full, arr in zip(names, arrays):
        prefix, sep, rest = full.partition(":")
        if sep and prefix in ("arg", "aux"):
            key = rest
        else:
            prefix, key = "", full
        if key in out:
            raise MXNetParamsError(f"{label}: name {key!r} occurs twice (after removing arg:/aux:)")
        out[key] = arr
        out.prefixes[key] = prefix
    return out


def _code_of(arr: np.ndarray, what: str) -> int:
    code = _CODE_OF_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None or arr.dtype.kind not in "fiub":
        raise MXNetParamsError(f"{what}: dtype {arr.dtype} has no MXNet dtype code "
                               f"(supported: {sorted({str(d) for d in DTYPE_CODES.values()})})")
    return code


def write_ndarray_list(target: PathOrFile, arrays: Sequence[np.ndarray],
                       names: Sequence[str] = (), *, np_shape: Optional[bool] = None) -> None:
    """Writes arrays (and optional names, one per array) in MXNet's NDArray-list format.

    Records use the V2 magic, which ``mx.nd.load`` reads by default, unless ``np_shape`` is True
    or (``np_shape=None``) some array is 0-d: V2 cannot hold a 0-d array, so then every record
    uses V3, which MXNet loads only inside ``mx.util.np_shape(True)``. Data is written
    little-endian, C order, with a cpu(0) context.
    """
    label = _label(target)
    arrays = [np.asarray(a) for a in arrays]
    if names and len(names) != len(arrays):
        raise MXNetParamsError(f"{label}: {len(names)} names for {len(arrays)} arrays")
    has_0d = any(a.ndim == 0 for a in arrays)
    if np_shape is None:
        np_shape = has_0d
    elif has_0d and not np_shape:
        raise MXNetParamsError(f"{label}: a 0-d array needs np_shape=True "
                               f"(V2 records cannot hold it)")
    magic = V3_MAGIC if np_shape else V2_MAGIC
    out = io.BytesIO()
    out.write(struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays)))
    for i, arr in enumerate(arrays):
        what = f"{label}: array {names[i] if names else i!r}"
        code = _code_of(arr, what)
        if arr.ndim > _MAX_NDIM:
            raise MXNetParamsError(f"{what}: {arr.ndim} dimensions (at most {_MAX_NDIM})")
        out.write(struct.pack(f"<Iii{arr.ndim}q", magic, 0, arr.ndim, *arr.shape))
        out.write(struct.pack("<iii", 1, 0, code))
        out.write(np.ascontiguousarray(arr, dtype=DTYPE_CODES[code]).tobytes())
    out.write(struct.pack("<Q", len(names)))
    for name in names:
        raw = name.encode("utf-8")
        out.write(struct.pack("<Q", len(raw)) + raw)
    if hasattr(target, "write"):
        target.write(out.getvalue())
        return
    with atomic_open(target, "wb") as f:
        f.write(out.getvalue())


def save_params(target: PathOrFile, params: Mapping[str, np.ndarray], *,
                prefixes: Optional[Mapping[str, str]] = None,
                np_shape: Optional[bool] = None) -> None:
    """Saves ``name -> array`` as a named ``.params`` file that ``mx.nd.load`` and Gluon's
    ``load_parameters`` read (the file is replaced atomically).

    ``prefixes`` (default: ``params.prefixes`` when ``params`` came from ``load_params``) maps a
    name to ``'arg'``/``'aux'`` to write it as ``arg:name``/``aux:name``. Arrays may be anything
    ``np.asarray`` accepts (detach torch tensors first). See ``write_ndarray_list`` for
    ``np_shape``.
    """
    if prefixes is None:
        prefixes = getattr(params, "prefixes", {})
    names = [f"{prefixes[k]}:{k}" if prefixes.get(k) else k for k in params]
    write_ndarray_list(target, list(params.values()), names, np_shape=np_shape)
