"""Image data on local disk: the IDX reader, Fashion-MNIST (the committed slice; the full set when installed),
CIFAR-10 batches, and clear errors for a missing, truncated or corrupt file."""

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simstress.data import DataError, ImageSet, load_images
from simstress.data import cifar10 as cifar_module
from simstress.data import fashion_mnist as fm
from simstress.data.idx import read_idx, sha256_file, write_idx


@pytest.mark.parametrize("split, per_class", [("train", 300), ("test", 100)])
def test_the_slice_is_stratified_fashion_mnist(split: str, per_class: int) -> None:
    s = load_images("fashion_mnist_slice", split)
    assert isinstance(s, ImageSet) and s.split == split and s.classes == fm.CLASSES
    assert s.images.shape == (10 * per_class, 28, 28, 1) and s.images.dtype == np.uint8
    assert s.labels.dtype == np.int64 and np.bincount(s.labels).tolist() == [per_class] * 10
    assert 0.25 < s.images.mean() / 255 < 0.32  # Fashion-MNIST's mean pixel is 0.286
    assert len(s.sha256) == 64


def test_tensor_pads_with_the_background_and_normalises() -> None:
    s = load_images("fashion_mnist_slice", "test").subset(np.arange(5))
    x = s.tensor(32)
    assert x.shape == (5, 1, 32, 32) and x.dtype == torch.float32
    background = (0.0 - fm.MEAN[0]) / fm.STD[0]
    assert torch.allclose(x[:, :, :2, :], torch.tensor(background))  # the two padded rows on top
    inner = torch.from_numpy(s.images[..., 0].astype(np.float32)) / 255
    assert torch.allclose(x[:, 0, 2:30, 2:30], (inner - fm.MEAN[0]) / fm.STD[0], atol=1e-6)
    with pytest.raises(ValueError, match="larger than the network input"):
        s.tensor(16)


def test_stratified_draws_are_seeded_and_balanced() -> None:
    s = load_images("fashion_mnist_slice", "test")
    a, b, c = s.stratified(7, 0), s.stratified(7, 0), s.stratified(7, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(s.labels[a]).tolist() == [7] * 10
    with pytest.raises(ValueError, match="fewer than"):
        s.stratified(101, 0)


def test_idx_round_trip(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz", (2, 3, 4)), a)
    write_idx(tmp_path / "b.gz", a)
    assert sha256_file(tmp_path / "a.gz") == sha256_file(tmp_path / "b.gz")  # deterministic bytes


def test_idx_errors_name_the_file_and_the_remedy(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    with pytest.raises(DataError, match=r"missing data file .*x\.gz; install me"):
        read_idx(path, (2,), remedy="install me")
    write_idx(path, np.zeros((2, 3), np.uint8))
    with pytest.raises(DataError, match=r"holds shape \(2, 3\), expected \(4, 3\)"):
        read_idx(path, (4, 3))
    with pytest.raises(DataError, match="not the expected file"):
        read_idx(path, (2, 3), sha256="0" * 64)
    raw = gzip.decompress(path.read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "short.gz", (2, 3))
    (tmp_path / "plain.gz").write_bytes(raw)
    with pytest.raises(DataError, match="not a readable gzip"):
        read_idx(tmp_path / "plain.gz", (2, 3))
    (tmp_path / "float.gz").write_bytes(gzip.compress(b"\0\0\x0d\x01" + raw[4:]))
    with pytest.raises(DataError, match="not an IDX file of unsigned bytes"):
        read_idx(tmp_path / "float.gz", (2, 3))


def test_a_corrupt_fashion_mnist_file_gives_the_install_command(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "fm"
    shutil.copytree(fm.SLICE_DIR, folder)
    monkeypatch.setenv(fm.ENV, str(folder))
    assert fm.data_dir() == folder
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is not the expected file.*apt-get install "
                                        r"dataset-fashion-mnist"):
        load_images("fashion_mnist", "test")  # the slice's files are not the full set's
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing data file .*t10k-images.*dataset-fashion-mnist"):
        load_images("fashion_mnist", "test")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_images("mnist", "test")
    with pytest.raises(ValueError, match="splits"):
        load_images("fashion_mnist_slice", "validation")


def test_the_committed_slice_is_drawn_from_the_full_set(tmp_path: Path) -> None:
    if not (fm.data_dir() / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("the full Fashion-MNIST is not installed here (`make setup` installs it)")
    fm.write_slice(tmp_path)  # compare the pixels, not the gzip bytes (another zlib may compress differently)
    for name, shape in [("train-images-idx3-ubyte.gz", (3000, 28, 28)), ("train-labels-idx1-ubyte.gz", (3000,)),
                        ("t10k-images-idx3-ubyte.gz", (1000, 28, 28)), ("t10k-labels-idx1-ubyte.gz", (1000,))]:
        assert np.array_equal(read_idx(tmp_path / name, shape), read_idx(fm.SLICE_DIR / name, shape))
    full = load_images("fashion_mnist", "test")
    assert len(full) == 10000 and np.bincount(full.labels).tolist() == [1000] * 10


def _cifar_folder(root: Path, per_batch: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for name in (*cifar_module.BATCHES["train"], *cifar_module.BATCHES["test"]):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per_batch).tolist()}
        (root / name).write_bytes(pickle.dumps(batch))
    return root


def test_cifar10_reads_local_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cifar_module.ENV, raising=False)
    with pytest.raises(DataError, match="SIMSTRESS_CIFAR10"):
        load_images("cifar10", "train")
    folder = _cifar_folder(tmp_path)
    monkeypatch.setenv(cifar_module.ENV, str(folder))
    train, test = load_images("cifar10", "train"), load_images("cifar10", "test")
    assert train.images.shape == (15, 32, 32, 3) and test.images.shape == (3, 32, 32, 3)
    raw = pickle.loads((folder / "test_batch").read_bytes())
    assert np.array_equal(test.images[1, :, :, 2], raw[b"data"][1, 2048:].reshape(32, 32))  # blue plane
    assert test.labels.tolist() == raw[b"labels"] and test.tensor(32).shape == (3, 3, 32, 32)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 python batch"):
        load_images("cifar10", "train")
