"""Reader for the IDX format of (Fashion-)MNIST: http://yann.lecun.com/exdb/mnist/.

Layout: two zero bytes, a type code, the number of dimensions, one big-endian uint32 per
dimension, then the values in row-major order. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXError(DataError):
    """A file that is not a well-formed IDX file; the message names the file."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally .gz) into an array of its declared type and shape.

    Raises:
        IDXError: bad magic number, unknown type code, or a size that disagrees with the header.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise IDXError(f"{path}: corrupt or truncated gzip data ({err})") from None
    return parse_idx(raw, str(path))


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    if len(raw) < 4:
        raise IDXError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or type_code not in _DTYPES:
        raise IDXError(f"{name}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTNN)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{name}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions declared)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a declared size cannot overflow
    if len(raw) - header != expected:
        raise IDXError(
            f"{name}: header declares shape {shape} ({expected} bytes of data) "
            f"but the file holds {len(raw) - header} bytes; truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write `array` as an IDX file (gzip-compressed when the name ends in .gz). For tests."""
    codes = {v.newbyteorder("="): k for k, v in _DTYPES.items()}
    code = codes[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    body = array.astype(_DTYPES[code]).tobytes()
    data = header + body
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
