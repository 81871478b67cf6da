"""Datasets that exist offline: Fashion-MNIST IDX files, scikit-learn's 8×8 digits, synthetic.

All return :class:`Dataset` with float32 NCHW tensors, normalised, in memory.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import QCompileError

DATASETS = ("fashion-mnist", "digits", "synthetic")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetNotFoundError(QCompileError, FileNotFoundError):
    """A dataset's files are not where they were looked for."""


@dataclass
class Dataset:
    """Train and test tensors plus what a model needs to know about them."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        data = f.read()
    zero, dtype_code, ndim = data[0:2], data[2], data[3]
    if zero != b"\0\0" or dtype_code != 0x08:
        raise QCompileError(f"{path}: expected an IDX file of unsigned bytes (magic 0x0000 08), "
                            f"got magic {data[:4].hex()}")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise QCompileError(f"{path}: header says {dims} ({int(np.prod(dims))} values), "
                            f"file holds {arr.size}")
    return arr.reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST from its four IDX files (gzip'd or not) in ``data_dir``.

    Default directory: /usr/share/datasets/fashion-mnist (Debian's ``dataset-fashion-mnist``).
    Pixels scaled to [0, 1] then normalised with the training set's mean 0.2860 / std 0.3530.
    """
    d = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find(d, s) for s in stems]
    missing = [s for s, p in zip(stems, paths, strict=False) if p is None]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found in {d}: expected {', '.join(m + '.gz' for m in missing)}. "
            f"Install it with `apt-get install dataset-fashion-mnist` (files go to "
            f"{FASHION_MNIST_DIR}) or point --data-dir at a directory holding the IDX files.")
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)  # type: ignore[arg-type]

    def prep(x: np.ndarray) -> Tensor:
        t = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
        return (t - 0.2860) / 0.3530

    return Dataset("fashion-mnist", prep(xtr), torch.from_numpy(ytr.astype(np.int64)),
                   prep(xte), torch.from_numpy(yte.astype(np.int64)), 10)


def load_digits(test_fraction: float = 0.25, split_seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 images), split train/test with ``split_seed``."""
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = torch.from_numpy((d.images.astype(np.float32) / 16.0 - 0.3) / 0.4).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    g = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(len(y), generator=g)
    n_test = round(len(y) * test_fraction)
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset("digits", x[tr], y[tr], x[te], y[te], 10)


def load_synthetic(n_train: int = 512, n_test: int = 256, shape: tuple[int, int, int] = (1, 8, 8),
                   num_classes: int = 10, noise: float = 0.5, seed: int = 0) -> Dataset:
    """Class templates (random ±1 patterns) plus Gaussian noise: learnable, any shape."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, *shape, generator=g).sign()

    def make(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=g)
        return templates[y] + noise * torch.randn(n, *shape, generator=g), y

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return Dataset("synthetic", xtr, ytr, xte, yte, num_classes)


def _subset(ds: Dataset, subset: int | None, test_subset: int | None, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    if subset is not None and subset < len(ds.y_train):
        idx = torch.randperm(len(ds.y_train), generator=g)[:subset]
        ds.x_train, ds.y_train = ds.x_train[idx], ds.y_train[idx]
    if test_subset is not None and test_subset < len(ds.y_test):
        idx = torch.randperm(len(ds.y_test), generator=g)[:test_subset]
        ds.x_test, ds.y_test = ds.x_test[idx], ds.y_test[idx]
    return ds


def load_dataset(name: str, data_dir: str | os.PathLike | None = None,
                 subset: int | None = None, test_subset: int | None = None,
                 seed: int = 0) -> Dataset:
    """Load ``name`` (fashion-mnist, digits, synthetic); ``subset`` caps the training set and
    ``test_subset`` the test set (random, fixed by ``seed``)."""
    if name == "fashion-mnist":
        ds = load_fashion_mnist(data_dir)
    elif name == "digits":
        ds = load_digits()
    elif name == "synthetic":
        ds = load_synthetic(seed=seed)
    else:
        raise QCompileError(f"expected --data in {DATASETS}, got {name!r}")
    return _subset(ds, subset, test_subset, seed)
