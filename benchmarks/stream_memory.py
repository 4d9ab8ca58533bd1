"""Peak memory of DM with the real data loaded whole vs streamed from an ImageFolder.

Writes the training split of an `.npz` as an ImageFolder of PNG files (once), then runs
`dcapps bench condense` on it twice in fresh processes, once loading the folder into memory and
once with `--stream` (read per class per iteration), and prints each run's peak resident memory
and time per iteration. Measures memory, not accuracy (the streamed set is the same set: tested).

    python benchmarks/stream_memory.py --npz runs/fashion_full.npz --folder runs/fashion_folder
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np


def write_folder(npz: str, folder: str) -> int:
    """DIR/train/<label>/<i>.png and DIR/test/<label>/<i>.png from the .npz (skipped if present)."""
    from PIL import Image

    with np.load(npz) as f:
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    if not os.path.isdir(os.path.join(folder, "train")):
        tmp = folder + ".partial"
        for split in ("train", "test"):
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            for i, (img, label) in enumerate(zip(x, y)):
                d = os.path.join(tmp, split, f"{int(label):03d}")
                os.makedirs(d, exist_ok=True)
                Image.fromarray(img).save(os.path.join(d, f"{i:06d}.png"))
        os.rename(tmp, folder)
    return len(arrays["y_train"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", required=True)
    p.add_argument("--folder", required=True, help="where the ImageFolder is written (reused if present)")
    p.add_argument("--iterations", type=int, default=2)
    a = p.parse_args(argv)
    n = write_folder(a.npz, a.folder)
    print(f"{a.folder}: {n} training images\n")
    print("| real data | peak resident memory (GB) | engine s/iteration |")
    print("|---|---|---|")
    for label, extra in (("loaded whole", []), ("streamed (--stream)", ["--stream"])):
        cmd = [sys.executable, "-m", "dcapps", "bench", "condense", "--data", a.folder, *extra,
               "--iterations", str(a.iterations), "--warmup", "1", "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {label} | {res['peak_memory_gb']:.2f} | {res['engine_s_per_it']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
