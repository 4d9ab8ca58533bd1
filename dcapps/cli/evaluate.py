"""`dcapps evaluate`: train fresh networks on a saved set (or the whole training set) and test them.
The flags are the settings of `condense_core.evaluate.EvaluationSettings` (`--runs`) and
`TrainSettings` (how each network is trained)."""
from __future__ import annotations

import argparse

from .common import (add_data_arguments, add_run_arguments, add_setting_flags, add_stream_argument,
                     emit_json)

HELP = {"evaluate": "train fresh networks on a saved set (or --full data) and test them"}


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    from condense_core import TrainSettings
    from condense_core.evaluate import EvaluationSettings
    from condense_core.networks import MODELS

    p.add_argument("file", nargs="?", help="a ReducedSet .pt file")
    p.add_argument("--full", action="store_true", help="evaluate the whole training set instead")
    add_data_arguments(p, default="the data spec FILE.pt records")
    add_stream_argument(p)
    p.add_argument("--model", default="ConvNet", help=" | ".join(MODELS))
    add_setting_flags(p, {"evaluation": EvaluationSettings})
    p.add_argument("--hard", action="store_true",
                   help="train on the hard labels only, even where the set has soft targets")
    add_setting_flags(p, {"training": TrainSettings})
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from condense_core import InputError, ReducedSet, TrainSettings, load_data
    from condense_core.evaluate import EvaluationSettings, evaluate
    from condense_core.runtime import resolve_device
    from condense_core.settings import flag_name

    from .common import given_settings

    if args.full == bool(args.file):
        raise InputError("give either a ReducedSet FILE.pt or --full")
    evaluation = given_settings(EvaluationSettings, args, "evaluation")
    cfg = TrainSettings(**given_settings(TrainSettings, args, "training"))
    reduced = ReducedSet.load(args.file) if args.file else None
    resolve_device(args.device, flag_name)  # before any work
    spec = args.data if args.data is not None else recorded_data(reduced, args.file)
    data = load_data(spec, args.root, args.download, args.stream, flag_name)
    if args.full and not torch.is_tensor(data.x_train):
        raise InputError("--full trains on the whole training set, which needs it in memory (not --stream)")
    x, y = reduced.for_data(data) if reduced is not None else (data.x_train, data.y_train)
    targets = reduced.targets if reduced is not None and not args.hard else None
    res = evaluate(x, y, data, **evaluation, seed=args.seed, model=args.model, cfg=cfg,
                   device=args.device, progress=args.progress, targets=targets)
    res["set"] = args.file or "full"
    res["data"] = spec
    if reduced is not None:
        res["set_meta"] = {k: reduced.meta.get(k) for k in ("method", "ipc", "seed", "iterations")}
    trained_on = (f"soft targets of a {targets.source} at T={targets.temperature:g}" if targets is not None
                  else "hard labels")
    print(f"{res['set']}: accuracy {100 * res['mean']:.2f} +- {100 * res['std']:.2f} % "
          f"over {res['runs']} runs ({len(x)} training images, {trained_on}, {args.model})")
    if args.json:
        emit_json(res)
    return 0


def recorded_data(reduced, path: str | None) -> str:
    """The data spec a set records (`meta["data"]`), for `evaluate FILE.pt` without --data."""
    from condense_core import InputError

    if reduced is None:
        raise InputError("--full needs --data SPEC (the data whose training set is evaluated)")
    spec = reduced.meta.get("data")
    if not isinstance(spec, str) or not spec or spec in ("tensors", "avalanche experience"):
        raise InputError(f"{path} does not record a data spec it can be tested on: give --data SPEC")
    return spec
