"""Write Fashion-MNIST (real 28x28 images, 10 classes) as a dcapps `.npz`, optionally subsampled.

The second real data set of the benchmarks (the first is the bundled `digits`). It reads the IDX
files of Debian's `dataset-fashion-mnist` package (`apt-get install dataset-fashion-mnist`) or of
any folder holding the four `*-ubyte.gz` files; nothing is downloaded.

    python benchmarks/fashion_npz.py --out runs/fashion.npz --per-class 500 --test-per-class 200
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys

import numpy as np

from condense_core.reduced import atomic_write

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def subsample(x, y, per_class: int | None, rng: np.random.Generator):
    if not per_class:
        return x, y
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    keep.sort()
    return x[keep], y[keep]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=DEFAULT_DIR)
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, default=None, help="training images per class (all if unset)")
    p.add_argument("--test-per-class", type=int, default=None, help="test images per class (all if unset)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    files = {k: os.path.join(a.src, f"{k}-ubyte.gz") for k in
             ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")}
    missing = [f for f in files.values() if not os.path.isfile(f)]
    if missing:
        print(f"fashion_npz: missing {missing[0]} (apt-get install dataset-fashion-mnist)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(a.seed)
    x_tr, y_tr = subsample(read_idx(files["train-images-idx3"]), read_idx(files["train-labels-idx1"]), a.per_class, rng)
    x_te, y_te = subsample(read_idx(files["t10k-images-idx3"]), read_idx(files["t10k-labels-idx1"]), a.test_per_class, rng)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    arrays = dict(x_train=x_tr, y_train=y_tr.astype(np.int64), x_test=x_te, y_test=y_te.astype(np.int64))

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a bare name
            np.savez_compressed(f, **arrays)
    atomic_write(a.out, write)
    print(f"wrote {a.out}: {len(x_tr)} train, {len(x_te)} test, images {x_tr.shape[1:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
