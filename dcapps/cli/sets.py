"""`dcapps condense` and `dcapps select` share this: build a reduced set with a registered method
and write it. Every setting of every method of the kind is a flag, derived from its declaration."""
from __future__ import annotations

import argparse
import os
import sys

from .common import (add_data_arguments, add_output_arguments, add_setting_flags, add_stream_argument, at_least,
                     check_out, emit_json, lock_out)


HELP = {"condense": "learn synthetic images per class (dm, lcmat, ...; `dcapps methods` lists them)",
        "select": "pick real images per class (random, herding, kcenter, lcmat, ...; `dcapps methods`)"}
REQUIRED = ("ipc",)  # settings the command line asks for (no default there; `dcapps methods` says so)


def add_arguments(kind: str, p: argparse.ArgumentParser) -> None:
    from condense_core.registry import methods

    table = methods(kind)
    add_data_arguments(p)
    add_stream_argument(p)
    p.add_argument("--method", required=True, metavar="NAME", help=" | ".join(table))
    p.add_argument("--out", required=True, metavar="FILE.pt")
    p.add_argument("--png", action="store_true",
                   help="also write a picture of the set (and of its loss curve) next to --out, as FILE.png")
    add_setting_flags(p, table, required=REQUIRED)
    if kind == "condense":
        p.add_argument("--checkpoint-every", type=at_least(0), default=0, metavar="N",
                       help="save the run's state next to --out every N iterations (it is also saved "
                            "on SIGINT/SIGTERM)")
        p.add_argument("--resume", action="store_true", help="continue from the checkpoint next to --out")
        p.add_argument("--restart", action="store_true",
                       help="start from iteration 0 even though a checkpoint lies next to --out (it is replaced)")
    add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    from condense_core.distributed import init_from_env
    from condense_core.registry import method_class
    from condense_core.runtime import resolve_device
    from condense_core.settings import flag_name

    from .common import given_settings

    kind = args.command
    cls = method_class(kind, args.method)  # an unknown name, or one of the other command, said first
    inputs = [("--data", args.data)]
    check_out(args.out, inputs)
    png = os.path.splitext(args.out)[0] + ".png" if args.png else None
    if png is not None:
        check_out(png, inputs, flag="--png (next to --out)")
    settings = given_settings(cls, args, f"{kind} method {args.method!r}")
    resolve_device(settings.get("device", cls.device), flag_name)  # before any work
    # under torchrun: join the group, one device per rank
    settings["device"] = init_from_env(settings.get("device", cls.device))
    with lock_out(args.out) as lock:  # a second run on this --out is refused while this one lives
        return _build(args, kind, cls, settings, lock, png)


def _build(args, kind, cls, settings, lock, png) -> int:
    """Check the checkpoint, load the data, run the method and write the set (holding the lock)."""
    from condense_core import load_data
    from condense_core.checkpoint import Checkpoint
    from condense_core.distributed import Ranks, finish
    from condense_core.settings import flag_name

    checkpoint = None
    if kind == "condense":
        path, resume = Checkpoint.next_to(args.out), args.resume
        if resume and not os.path.exists(path) and lock.interrupted is not None:
            # the last run on this --out was stopped before its first checkpoint: start it again
            print(f"dcapps: no checkpoint {path} (the interrupted run had not saved one): "
                  "starting from iteration 0", file=sys.stderr)
            resume = False
        checkpoint = Checkpoint(path, args.checkpoint_every, resume, args.restart, flag_name)
    try:
        method = cls(**settings)  # --progress is the method's progress setting (given_settings)
        data = load_data(args.data, args.root, args.download, args.stream, flag_name)
        reduced = method.condense(data, checkpoint)
        if Ranks.current().rank != 0:
            return 0
        reduced.save(args.out)
    finally:
        finish()
    if checkpoint is not None:
        checkpoint.remove()  # superseded by the finished set, now safely on disk
    result = {"out": args.out, "method": args.method, "kind": kind, "ipc": method.ipc, "images": len(reduced),
              "wall_time_s": reduced.meta["wall_time_s"]}
    picture = ""
    if png is not None:
        result["png"] = reduced.save_grid(png)
        picture = f"; picture {png}"
    print(f"wrote {args.out}: {len(reduced)} images ({args.method}, ipc {method.ipc}) "
          f"in {reduced.meta['wall_time_s']:.1f} s{picture}")
    if args.json:
        emit_json(result)
    return 0
