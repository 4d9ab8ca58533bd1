"""`dcapps cl run CONFIG.yaml` and `dcapps demo`: scripted class-incremental comparisons.

`cl run` runs every strategy of a YAML config for every seed and writes the report into
`--out` (default `runs/cl/<name>`); run again with the same `--out`, it skips finished units.
`demo` is `cl run digits` with the toolkit's defaults, printing the table.
"""
from __future__ import annotations

import argparse
import os
import warnings
from contextlib import contextmanager

from .common import device_flag, emit_json

HELP = {"cl": "scripted class-incremental benchmarks: dcapps cl run CONFIG.yaml",
        "demo": "compare continual-learning strategies on digits (a few minutes on a CPU)"}
DEMO_CONFIG = "digits"


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    if name == "cl":
        p.add_argument("action", choices=("run",), help="run: every strategy of the config for every seed")
        p.add_argument("config", metavar="CONFIG.yaml",
                       help="a YAML file, or a built-in name: digits, splitmnist, splitcifar10, "
                            "splitcifar100, splitcifar100-10steps")
        p.add_argument("--seeds", default=None, help="comma-separated seeds, overriding the config's")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/cl/<name>)")
    p.add_argument("--device", type=device_flag, default=None,
                   help="auto | cpu | cuda | cuda:N (overrides the config's)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to DIR/tensorboard")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


# Warnings other libraries print while a benchmark runs that say nothing about the user's run:
# qpsolvers warns on import that it found no solver (Avalanche imports it for GEM, which no
# strategy here uses).
QUIET_MESSAGES = ("no QP solver found",)


@contextmanager
def other_libraries_quiet():
    """For the duration: Avalanche 0.6's own deprecation warnings and `QUIET_MESSAGES` are not
    shown (the run's own messages and every other warning are)."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def shown(message, category, *args, **kwargs):
            if issubclass(category, DeprecationWarning) or str(message).startswith(QUIET_MESSAGES):
                return None
            return show(message, category, *args, **kwargs)

        warnings.showwarning = shown
        for text in QUIET_MESSAGES:
            warnings.filterwarnings("ignore", message=text)
        yield


def run(args: argparse.Namespace) -> int:
    with other_libraries_quiet():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from scenarios.config import config_path, load_config, parse_seeds
    from scenarios.report import table, write_report
    from scenarios.runner import run_config

    from .common import check_out_folder, lock_out

    if args.command == "demo" and "OMP_NUM_THREADS" not in os.environ:
        import torch
        torch.set_num_threads(1)  # the demo's tiny networks gain nothing from more, lose much on shared cores
    cfg = load_config(DEMO_CONFIG if args.command == "demo" else args.config)
    if getattr(args, "seeds", None) is not None:
        cfg.seeds = parse_seeds(args.seeds)
    if args.device is not None:
        cfg.device = args.device
    out = args.out if args.out is not None else os.path.join("runs", "cl", cfg.name)
    check_out_folder(out, [("config", config_path(args.config) if args.command == "cl" else ""),
                           ("data", cfg.data)])

    def announce(r: dict) -> None:
        if not args.quiet:
            state = "already done" if r.get("resumed") else f"{r['train_time_s'] + r['memory_time_s']:.1f} s"
            print(f"{r['strategy']:>12} seed {r['seed']}: final accuracy {100 * r['final_accuracy']:.2f} % "
                  f"({state})", flush=True)

    with lock_out(out):  # a second run on this --out is refused while this one lives
        results = run_config(cfg, out, tensorboard=args.tensorboard, show_progress=not args.quiet,
                             on_unit=announce)
        summary = write_report(out, cfg, results)
    print(f"\n{cfg.name}: {cfg.data}, {cfg.experiences} experiences, seeds {cfg.seeds}\n")
    print(table(summary))
    print(f"\nwrote {os.path.join(out, 'report.md')}, results.json, results.csv, accuracy.png, log.txt")
    if args.json:
        emit_json({"out": out, "name": cfg.name, "seeds": cfg.seeds, "summary": summary,
                   "report": os.path.join(out, "report.md")})
    return 0
