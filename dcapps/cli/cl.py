"""`dcapps cl run CONFIG.yaml`, `dcapps cl report DIR` and `dcapps demo`: scripted class-incremental
comparisons.

`cl run` runs every strategy of a YAML config for every seed and writes the report into
`--out` (default `runs/cl/<name>`); run again with the same `--out`, it skips finished units.
`--workers N` runs units in N local processes, `--shard I/N` one shard of them, and under
`torchrun` the ranks share them (`condense_core.sweep`); all write into one folder, and `cl
report` rebuilds the report from whatever units are finished. `demo` is `cl run digits` with the
toolkit's defaults, printing the table.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .common import add_layout_flags, add_output_arguments, device_flag, emit_json

HELP = {"cl": "scripted class-incremental benchmarks: dcapps cl run CONFIG.yaml | cl report DIR",
        "demo": "compare continual-learning strategies on digits (a few minutes on a CPU)"}
DEMO_CONFIG = "digits"
DEMO_NOTE = ("\nOn 8x8 digits with a few minutes of CPU, condensed memories gain least. Where they win, "
             "with the margins over 3 seeds: docs/cl.md\n(Fashion-MNIST, 1,000 images "
             "per class: dcapps cl run benchmarks/cl/fashion_mix.yaml and fashion_gdumb.yaml).")


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    if name == "cl":
        sub = p.add_subparsers(dest="cl_command", metavar="ACTION", parser_class=type(p))
        sub.required = True
        rep = sub.add_parser("report", help="rebuild DIR's report from its finished units; name the missing")
        rep.add_argument("dir", metavar="DIR", help="the --out folder of cl run")
        add_output_arguments(rep)
        p = sub.add_parser("run", help="every strategy of the config for every seed")
        p.add_argument("config", metavar="CONFIG.yaml",
                       help="a YAML file, or a built-in name: digits, splitmnist, splitcifar10, "
                            "dmpaper_cifar100, dmpaper_cifar100_10steps, dmpaper_fashion")
        p.add_argument("--seeds", default=None, help="comma-separated seeds, overriding the config's")
        p.add_argument("--data", default=None, metavar="SPEC",
                       help="data spec overriding the config's (e.g. another PATH.npz: the same config, "
                            "unchanged, on other data)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config key, checked as in the file (e.g. train.lr=0.01, "
                            "methods.dm.iterations=50; repeat for several); recorded in DIR/sweep.json")
        add_layout_flags(p)
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/cl/<name>)")
    p.add_argument("--device", type=device_flag, default=None,
                   help="auto | cpu | cuda | cuda:N (overrides the config's)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to DIR/tensorboard")
    add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    from condense_core.extras import require
    from scenarios.quiet import other_libraries_quiet

    with other_libraries_quiet():  # Avalanche's import warns too
        require("cl", " ".join(["dcapps", args.command, *filter(None, [getattr(args, "cl_command", None)])]))
        if getattr(args, "cl_command", None) == "report":
            return _report(args)
        return _run(args)


class UnitLines:
    """The line printed by the process that ran a unit, when it ends: its result, the units
    finished of those planned in the folder (by every process sharing it) and the time left at
    the pace of this run so far. Picklable, for spawned workers."""

    def __init__(self, out: str, keys: list[str]):
        from condense_core.sweep import Sweep

        self.files = [Sweep(out).path(k) for k in keys]
        self.start, self.before = time.time(), self.finished()

    def finished(self) -> int:
        return sum(os.path.exists(f) for f in self.files)

    def __call__(self, key: str, r: dict) -> None:
        from condense_core.progress import duration

        done, total = self.finished(), len(self.files)
        elapsed, new = time.time() - self.start, done - self.before
        left = f", ETA {duration(elapsed / new * (total - done))}" if new and done < total else ""
        print(f"{r['strategy']:>12} seed {r['seed']}: final accuracy {100 * r['accuracy'][-1]:.2f} % "
              f"({r['train_time_s'] + r['memory_time_s']:.1f} s)  [{done}/{total} units{left}]", flush=True)


def _run(args: argparse.Namespace) -> int:
    from condense_core.distributed import Ranks, finish
    from condense_core.progress import mode_of
    from condense_core.sweep import Layout
    from scenarios.config import config_path, load_config, parse_seeds
    from scenarios.runner import plan, run_config

    from .common import check_out_folder, layout_of

    overrides = getattr(args, "set", None) or []
    cfg = load_config(DEMO_CONFIG if args.command == "demo" else args.config, overrides)
    if getattr(args, "seeds", None) is not None:
        cfg.seeds = parse_seeds(args.seeds)
    if getattr(args, "data", None) is not None:
        cfg.data = args.data
    if args.device is not None:
        cfg.device = args.device
    layout = layout_of(args) if args.command == "cl" else Layout()
    out = args.out if args.out is not None else os.path.join("runs", "cl", cfg.name)
    check_out_folder(out, [("config", config_path(args.config) if args.command == "cl" else ""),
                           ("data", cfg.data)])
    lines = UnitLines(out, list(plan(cfg))) if mode_of(args.progress) != "off" else None
    try:
        problems = run_config(cfg, out, layout, tensorboard=args.tensorboard, announce=lines,
                              info={"overrides": overrides})
        if Ranks.current().rank == 0:
            _write_report(out, cfg, args.json, demo=args.command == "demo")
    finally:
        finish()
    for line in problems:
        print(f"dcapps: {line}: run the same command again to finish it", file=sys.stderr)
    return 1 if problems else 0


def _report(args: argparse.Namespace) -> int:
    _write_report(args.dir, None, args.json)
    return 0


def _write_report(out: str, cfg, as_json: bool, demo: bool = False) -> None:
    """The report of every finished unit of `out` planned by `cfg` (None: by every run on
    `out`, with the last run's settings), printed and written; the demo also says where to look
    when its condensed memories do not win."""
    from condense_core.sweep import Sweep
    from scenarios.report import margin_lines, table, verdict_lines, write_report
    from scenarios.runner import finished

    with Sweep(out).report_lock():
        cfg, results, missing = finished(out, cfg)
        summary, pairs = write_report(out, cfg, results, missing) if results else ({}, [])
    print(f"\n{cfg.name}: {cfg.data}, {cfg.experiences} experiences, seeds {cfg.seeds}\n")
    print(table(summary) if results else "no unit is finished yet")
    if pairs:
        print("\ncondensed against real-image memories (final accuracy, paired by seed):")
        print("\n".join(margin_lines(pairs)))
        print("\n" + "\n".join(verdict_lines(pairs)))
        if demo and any(g["verdict"] != "ahead" for g in pairs):
            print(DEMO_NOTE)
    if missing:
        print(f"\nnot finished yet ({len(missing)}): {', '.join(missing)}")
    if results:
        print(f"\nwrote {os.path.join(out, 'report.md')}, results.json, results.csv, accuracy.png; "
              f"logs in {os.path.join(out, 'logs')}")
    if as_json:
        emit_json({"out": out, "name": cfg.name, "seeds": cfg.seeds, "summary": summary, "margins": pairs,
                   "missing": missing,
                   "report": os.path.join(out, "report.md")})
