"""The idx file format of the MNIST files, written independently of the reader under test."""

import struct

import numpy as np


def idx_bytes(array):
    """The bytes of an idx file holding ``array`` as unsigned bytes: magic ``0 0 8 ndim``, then
    each dimension as a big-endian uint32, then the data in C order."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array).astype(np.uint8).tobytes()
