"""The .npy wire format of /v1/translate: reading a request body into a float 2-D array without trusting its
header, and writing translated rows as little-endian float32."""

from __future__ import annotations

import io

import numpy as np
from numpy.lib import format as npy_format

from vecbridge.service.errors import ApiError

NPY = "application/x-npy"


def read_npy(body: bytes) -> np.ndarray:
    """A float 2-D array from .npy bytes; the header is checked against the body's length before any array is
    made, so a header that claims a huge shape costs nothing."""
    buf = io.BytesIO(body)
    try:
        version = npy_format.read_magic(buf)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version} (numpy.save writes 1.0)")
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read_header(buf, max_header_size=2**16)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ApiError(400, f"the body is not a readable .npy array ({reason}); send a float 2-D array written with "
                            "numpy.save", param="body", code="invalid_npy") from None
    if len(shape) != 2 or dtype.kind != "f" or min(shape) < 0:
        raise ApiError(400, f"the .npy body holds {dtype} {shape}; send a float 2-D array (rows = vectors)",
                       param="body", code="invalid_npy")
    if shape[0] == 0:
        raise ApiError(400, "the .npy body holds no vectors", param="body", code="empty_input")
    data = len(body) - buf.tell()
    if data != shape[0] * shape[1] * dtype.itemsize:
        raise ApiError(400, f"the .npy body is damaged: its header says {shape} {dtype} but {data} bytes of data "
                            "follow", param="body", code="invalid_npy")
    return np.frombuffer(body, dtype=dtype, offset=buf.tell()).reshape(shape, order="F" if fortran else "C")


def npy_bytes(vectors: np.ndarray) -> bytes:
    """`vectors` as a .npy file of little-endian float32, the format clients read back with numpy.load."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vectors, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()
