"""One NAS trial: train a candidate ConvNet on the proxy set, test it on the real test split.

Under NNI (`nnictl create`) the architecture comes from the tuner, the test accuracy after each
epoch goes back as an intermediate result and the final one (with the parameter count and the
training time as extra keys) as the final result. Outside NNI the same trial runs with the
architecture given on the command line, for debugging:

    python -m nas.trial --setup DIR/trial.json --params '{"depth": 2, "width": 64}'

`DIR/trial.json` (written by `dcapps nas init`) holds the data spec, the proxy file (relative to
DIR) and the training settings, so the trial needs nothing but that folder (and, for a data spec
that did not travel in it, the data at the same path).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from condense_core import InputError, TrainSettings, test_accuracy, train_model
from condense_core.data import ImageData
from condense_core.networks import build_model, reinitialize
from condense_core.reduced import SoftTargets
from condense_core.runtime import make_generator, resolve_device
from condense_core.settings import check

from .space import arch_name, check_arch


def initial_network(arch: dict, data: ImageData, seed: int = 0, device: str = "auto"
                    ) -> tuple[torch.nn.Module, torch.Generator]:
    """The ConvNet `arch` for `data` with its initial weights, which depend only on `seed` and
    the architecture, and the generator that then orders its training batches."""
    arch = check_arch(arch)
    dev = resolve_device(device)
    g = make_generator(seed, dev, "nas", arch_name(arch))
    return reinitialize(build_model("ConvNet", data.channels, data.num_classes, data.image_size, **arch), g).to(dev), g


def train_candidate(arch: dict, x: torch.Tensor, y: torch.Tensor, data: ImageData, cfg: TrainSettings,
                    seed: int = 0, device: str = "auto", on_epoch=None, targets: SoftTargets | None = None) -> dict:
    """Train the ConvNet `arch` from scratch on (x, y) (with a proxy's soft `targets` where it has
    them) and test it on `data`'s test split.

    The initial weights and batch order depend only on `seed` and the architecture, so one
    architecture starts from the same weights on every proxy and on the whole data.
    `on_epoch(epoch, accuracy)` receives the test accuracy after each epoch when given.
    Returns accuracy, parameter count and training seconds.
    """
    net, g = initial_network(arch, data, seed, device)

    def tested(epoch, model):
        on_epoch(epoch, test_accuracy(model, data.x_test, data.y_test))

    t0 = time.time()
    train_model(net, x, y, cfg, g, on_epoch=tested if on_epoch is not None else None, targets=targets)
    seconds = time.time() - t0
    return {"accuracy": test_accuracy(net, data.x_test, data.y_test),
            "params": sum(p.numel() for p in net.parameters()), "train_time_s": round(seconds, 3)}


def read_setup(path: str) -> dict:
    """The trial's settings file; the proxy path (and the data file when it travels in the
    folder, `data_in_folder`) is made absolute (relative to the file)."""
    try:
        with open(path) as f:
            setup = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable trial setup ({type(e).__name__})") from None
    if not isinstance(setup, dict):
        raise InputError(f"{path}: a trial setup must be a JSON object")
    missing = [k for k in ("data", "proxy", "train", "seed") if k not in setup]
    if missing:
        raise InputError(f"{path}: trial setup is missing {', '.join(missing)}")
    folder = os.path.dirname(os.path.abspath(path))
    setup["proxy"] = os.path.join(folder, setup["proxy"])
    if setup.get("data_in_folder"):
        setup["data"] = os.path.join(folder, setup["data"])
    return setup


def train_config(train: dict) -> TrainSettings:
    """A TrainSettings from a dict of its settings (unknown or bad ones are input errors)."""
    return TrainSettings(**check(TrainSettings, train, lambda k: f"train.{k}"))


def run_setup(setup: dict, arch: dict, on_epoch=None) -> dict:
    """Load data and proxy named by `setup` and train `arch` on the proxy."""
    from condense_core import ReducedSet, load_data

    proxy = ReducedSet.load(setup["proxy"])
    data = load_data(setup["data"], setup.get("root"))
    x, y = proxy.for_data(data)
    result = train_candidate(arch, x, y, data, train_config(setup["train"]), setup["seed"],
                             setup.get("device", "auto"), on_epoch, proxy.targets)
    return {**result, "arch": arch_name(check_arch(arch)), "proxy_images": len(x)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nas.trial", description=__doc__.splitlines()[0])
    p.add_argument("--setup", default="trial.json", help="trial.json written by `dcapps nas init`")
    p.add_argument("--params", default=None,
                   help="architecture as JSON (runs standalone, outside NNI)")
    args = p.parse_args(argv)
    try:
        setup = read_setup(args.setup)
        if args.params is not None:
            try:
                arch = json.loads(args.params)
            except ValueError:
                raise InputError("--params must be a JSON object, e.g. '{\"depth\": 2}'") from None
            result = run_setup(setup, arch, lambda e, a: print(f"epoch {e + 1}: test accuracy {a:.4f}"))
            print(json.dumps(result))
            return 0
        if not os.environ.get("NNI_PLATFORM"):
            raise InputError("not running under NNI: give the architecture with --params JSON")
        return _run_in_nni(setup)
    except InputError as e:
        print(f"nas.trial: error: {e}", file=sys.stderr)
        return 2


def _run_in_nni(setup: dict) -> int:
    import nni

    arch = nni.get_next_parameter()
    result = run_setup(setup, arch, lambda e, a: nni.report_intermediate_result(a))
    nni.report_final_result({"default": result["accuracy"], "params": result["params"],
                             "train_time_s": result["train_time_s"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
