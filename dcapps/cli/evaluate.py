"""`dcapps evaluate`: train fresh networks on a saved set (or the whole training set) and test them.
The training flags are the settings of `condense_core.evaluate.TrainSettings`."""
from __future__ import annotations

import argparse

from .common import (add_data_arguments, add_run_arguments, add_setting_flags, add_stream_argument, at_least,
                     emit_json)

HELP = {"evaluate": "train fresh networks on a saved set (or --full data) and test them"}


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    from condense_core import TrainSettings

    p.add_argument("file", nargs="?", help="a ReducedSet .pt file")
    p.add_argument("--full", action="store_true", help="evaluate the whole training set instead")
    add_data_arguments(p, default="the data spec FILE.pt records")
    add_stream_argument(p)
    p.add_argument("--model", default="ConvNet", help="ConvNet | MLP | ResNet")
    p.add_argument("--runs", type=at_least(1), default=5, help="networks trained and tested (default 5)")
    add_setting_flags(p, {"training": TrainSettings})
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from condense_core import InputError, ReducedSet, TrainSettings, load_data
    from condense_core.evaluate import evaluate

    from .common import given_settings

    if args.full == bool(args.file):
        raise InputError("give either a ReducedSet FILE.pt or --full")
    if args.runs < 1:
        raise InputError(f"--runs must be >= 1, got {args.runs}")
    cfg = TrainSettings(**given_settings(TrainSettings, args, "training"))
    syn = ReducedSet.load(args.file) if args.file else None
    spec = args.data if args.data is not None else recorded_data(syn, args.file)
    data = load_data(spec, args.root, args.download, args.stream)
    if args.full and not torch.is_tensor(data.x_train):
        raise InputError("--full trains on the whole training set, which needs it in memory (not --stream)")
    x, y = syn.for_data(data) if syn is not None else (data.x_train, data.y_train)
    res = evaluate(x, y, data, runs=args.runs, seed=args.seed, model=args.model, cfg=cfg,
                   device=args.device, progress=args.progress)
    res["set"] = args.file or "full"
    res["data"] = spec
    if syn is not None:
        res["set_meta"] = {k: syn.meta.get(k) for k in ("method", "ipc", "seed", "iterations")}
    print(f"{res['set']}: accuracy {100 * res['mean']:.2f} +- {100 * res['std']:.2f} % "
          f"over {args.runs} runs ({len(x)} training images, {args.model})")
    if args.json:
        emit_json(res)
    return 0


def recorded_data(syn, path: str | None) -> str:
    """The data spec a set records (`meta["data"]`), for `evaluate FILE.pt` without --data."""
    from condense_core import InputError

    if syn is None:
        raise InputError("--full needs --data SPEC (the data whose training set is evaluated)")
    spec = syn.meta.get("data")
    if not isinstance(spec, str) or not spec or spec in ("tensors", "avalanche experience"):
        raise InputError(f"{path} does not record a data spec it can be tested on: give --data SPEC")
    return spec
