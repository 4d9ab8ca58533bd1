"""`dcapps condense`, `dcapps select` and `dcapps evaluate`: the condensation core from the shell.

Method flags map onto the method's dataclass fields by name (`--batch-real` -> `batch_real`),
so a new method's settings only need their flags declared here.
"""
from __future__ import annotations

import argparse
import os

HELP = {
    "condense": "learn synthetic images per class (dm, lcmat)",
    "select": "pick real images per class (random, herding, kcenter, lcmat)",
    "evaluate": "train fresh networks on a saved set (or --full data) and test them",
}
CONDENSE_METHODS = ("dm", "lcmat")
SELECT_METHODS = ("random", "herding", "kcenter", "lcmat")
# flags that only some methods have (default None = the method's own default)
ENGINE_FLAGS = ("precision", "channels_last", "compile", "real_chunk")  # `add_engine_arguments`
METHOD_FLAGS = ("batch_real", "lr_img", "init", "dsa", "rho", "pool_size", "net_epochs",
                "selection_epochs", "k", "eps", *ENGINE_FLAGS)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--data SPEC, --root DIR, --download: shared by every command that reads real data."""
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="digits | mnist | fashionmnist | cifar10 | cifar100 | svhn | PATH.npz | DIR/")
    p.add_argument("--root", default=None, help="folder of torchvision data sets (default ./data)")
    p.add_argument("--download", action="store_true", help="allow downloading a torchvision set")


def add_stream_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", action="store_true",
                   help="read an ImageFolder from disk per batch instead of loading it (automatic when "
                        "it would not fit in half the available memory)")


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """The condensation engine's speed flags (default None = the method's own default)."""
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="bf16 autocasts the networks' forward (lower precision; default fp32)")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="channels-last images and weights (off: slower on a CPU; try it on a GPU)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the embedding network (needs a C++ compiler on CPU)")
    p.add_argument("--real-chunk", type=int, default=None, help="real images per forward (0 = automatic)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--seed, --device, --quiet, --json."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    if name == "evaluate":
        p.add_argument("file", nargs="?", help="a SyntheticSet .pt file")
        p.add_argument("--full", action="store_true", help="evaluate the whole training set instead")
        add_data_arguments(p)
        add_stream_argument(p)
        p.add_argument("--model", default="ConvNet", help="ConvNet | MLP | ResNet")
        p.add_argument("--runs", type=int, default=5)
        p.add_argument("--epochs", type=int, default=300)
        p.add_argument("--lr", type=float, default=0.01)
        p.add_argument("--batch-size", type=int, default=256)
        p.add_argument("--no-dsa", dest="dsa", action="store_false", help="train without augmentation")
        add_run_arguments(p)
        return
    add_data_arguments(p)
    add_stream_argument(p)
    p.add_argument("--method", required=True,
                   choices=CONDENSE_METHODS if name == "condense" else SELECT_METHODS)
    p.add_argument("--ipc", type=int, required=True, help="images per class")
    p.add_argument("--model", default=None, help="network used by the method (default ConvNet)")
    p.add_argument("--out", required=True, metavar="FILE.pt")
    p.add_argument("--png", action="store_true", help="also write a picture of the set next to --out")
    if name == "condense":
        p.add_argument("--iterations", type=int, default=500)
        p.add_argument("--batch-real", type=int, default=None, help="real images per class per iteration (256)")
        p.add_argument("--lr-img", type=float, default=None, help="learning rate of the images (1.0)")
        p.add_argument("--init", choices=("real", "herding", "noise"), default=None,
                       help="start from random real images (default), herding's picks, or noise")
        p.add_argument("--no-dsa", dest="dsa", action="store_false", default=None,
                       help="no differentiable Siamese augmentation")
        p.add_argument("--rho", type=float, default=None, help="lcmat: neighbourhood radius (1.0)")
        p.add_argument("--pool-size", type=int, default=None,
                       help="lcmat: briefly trained networks to draw from (8; 0 = random like dm)")
        p.add_argument("--net-epochs", type=int, default=None, help="lcmat: epochs of each pool network (5)")
        add_engine_arguments(p)
        p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                       help="save the run's state next to --out every N iterations (it is also saved "
                            "on SIGINT/SIGTERM)")
        p.add_argument("--resume", action="store_true", help="continue from the checkpoint next to --out")
    else:
        p.add_argument("--selection-epochs", type=int, default=None,
                       help="epochs of the network that herding/kcenter/lcmat look through (10)")
        p.add_argument("--k", type=int, default=None, help="lcmat: Hessian coordinates compared (100)")
        p.add_argument("--eps", type=float, default=None, help="lcmat: weight of the curvature distance (0.01)")
    add_run_arguments(p)


def method_config(cls, args: argparse.Namespace) -> dict:
    """The method's settings given on the command line (flags named after its fields)."""
    from dataclasses import fields

    from condense_core import InputError

    own = {f.name for f in fields(cls)}
    for key in METHOD_FLAGS:
        if getattr(args, key, None) is not None and key not in own:
            flag = "--no-dsa" if key == "dsa" else "--" + key.replace("_", "-")
            raise InputError(f"{flag} does not apply to method {args.method!r}")
    cfg = {name: getattr(args, name) for name in own
           if name != "progress" and getattr(args, name, None) is not None}
    cfg["progress"] = not args.quiet
    return cfg


def check_out(path: str) -> None:
    """--out must be a file name in a folder that exists or can be made (checked before any work)."""
    from condense_core import InputError

    if os.path.isdir(path):
        raise InputError(f"--out {path} is a directory; give a file name ending in .pt")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"--out {path}: {parent} is a file, not a folder")


def run(args: argparse.Namespace) -> int:
    from dcapps.cli import emit_json

    if args.command == "evaluate":
        return _evaluate(args, emit_json)
    from condense_core import CONDENSERS, SELECTORS, load_data, make_method

    from condense_core.checkpoint import Checkpoint
    from condense_core.distributed import Shard, finish, init_from_env

    check_out(args.out)
    kind = "condense" if args.command == "condense" else "select"
    cls = (CONDENSERS if kind == "condense" else SELECTORS).get(args.method)
    if cls is None:
        from condense_core import InputError
        raise InputError(f"method {args.method!r} is not available here")
    checkpoint = (Checkpoint(Checkpoint.next_to(args.out), args.checkpoint_every, args.resume)
                  if kind == "condense" else None)
    args.device = init_from_env(args.device)  # under torchrun: join the group, one device per rank
    try:
        method = make_method(args.method, kind, **method_config(cls, args))
        data = load_data(args.data, args.root, args.download, args.stream)
        syn = method.condense(data, checkpoint)
        if Shard.current().rank != 0:
            return 0
        syn.save(args.out)
    finally:
        finish()
    if checkpoint is not None:
        checkpoint.remove()  # superseded by the finished set, now safely on disk
    result = {"out": args.out, "method": args.method, "ipc": args.ipc, "images": len(syn),
              "wall_time_s": syn.meta["wall_time_s"]}
    if args.png:
        result["png"] = syn.save_grid(os.path.splitext(args.out)[0] + ".png")
    print(f"wrote {args.out}: {len(syn)} images ({args.method}, ipc {args.ipc}) "
          f"in {syn.meta['wall_time_s']:.1f} s")
    if args.json:
        emit_json(result)
    return 0


def _evaluate(args, emit_json) -> int:
    import torch

    from condense_core import InputError, SyntheticSet, TrainConfig, evaluate, load_data

    if args.full == bool(args.file):
        raise InputError("give either a SyntheticSet FILE.pt or --full")
    syn = SyntheticSet.load(args.file) if args.file else None
    data = load_data(args.data, args.root, args.download, args.stream)
    if args.full and not torch.is_tensor(data.x_train):
        raise InputError("--full trains on the whole training set, which needs it in memory (not --stream)")
    x, y = syn.for_data(data) if syn else (data.x_train, data.y_train)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, dsa=args.dsa)
    res = evaluate(x, y, data, runs=args.runs, seed=args.seed, model=args.model, cfg=cfg,
                   device=args.device, show_progress=not args.quiet)
    res["set"] = args.file or "full"
    res["data"] = args.data
    if syn is not None:
        res["set_meta"] = {k: syn.meta.get(k) for k in ("method", "ipc", "seed", "iterations")}
    print(f"{res['set']}: accuracy {100 * res['mean']:.2f} +- {100 * res['std']:.2f} % "
          f"over {args.runs} runs ({len(x)} training images, {args.model})")
    if args.json:
        emit_json(res)
    return 0
