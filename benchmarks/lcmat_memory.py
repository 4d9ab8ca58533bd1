"""Memory and time of LCMat-S's per-class selection on one large class of real images.

LCMat-S keeps per-sample gradients and Hessian diagonals as outer-product factors and builds the
pairwise distances in row chunks, so a class costs one n x n float32 matrix plus O(n) arrays.
This script runs the real per-class selection (features and classifier of a seeded ConvNet) on
the first `--class-size` training images of one class and prints the wall time and the growth
of the process's peak resident memory (VmHWM, reset just before the selection; Linux).

    python benchmarks/fashion_npz.py --out runs/fashion_full.npz --test-per-class 10
    python benchmarks/lcmat_memory.py --data runs/fashion_full.npz --class-size 5000 --ipc 50
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from condense_core import load_data
from condense_core.methods.lcmat import LCMatS


def peak_mb(reset: bool = False) -> float:
    """Peak resident memory (MB) of this process; `reset` restarts the peak from now (Linux)."""
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--label", type=int, default=0)
    p.add_argument("--class-size", type=int, default=5000)
    p.add_argument("--ipc", type=int, default=50)
    p.add_argument("--k", type=int, default=100)
    a = p.parse_args(argv)
    data = load_data(a.data)
    idx = data.class_indices()[a.label][:a.class_size]
    method = LCMatS(ipc=a.ipc, k=a.k, device="cpu")
    dev = torch.device("cpu")
    net = method.network(data, dev, method.generator(dev, "train")).eval()
    f = method.features(net.embed, data.x_train[idx], dev)
    del data
    before, t0 = peak_mb(reset=True), time.time()
    picks = method.select_class(f, net, a.label)
    print(f"{a.data}: class {a.label}, {len(idx)} images, features {f.shape[1]}, "
          f"gradient dim {net.classifier.out_features * (f.shape[1] + 1)}, k={a.k}, ipc={a.ipc}: "
          f"{len(set(picks.tolist()))} distinct picks in {time.time() - t0:.1f} s; peak RSS "
          f"{before:.0f} MB -> {peak_mb():.0f} MB (+{peak_mb() - before:.0f} MB for the selection)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
