"""`dcapps cl run CONFIG.yaml` and `dcapps demo`: scripted class-incremental comparisons.

`cl run` runs every strategy of a YAML config for every seed and writes the report into
`--out` (default `runs/cl/<name>`); run again with the same `--out`, it skips finished units.
`demo` is `cl run digits` with the toolkit's defaults, printing the table.
"""
from __future__ import annotations

import argparse
import os

from .common import emit_json

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
    p.add_argument("--device", default=None, help="auto | cpu | cuda (overrides the config's)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs to DIR/tensorboard")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def run(args: argparse.Namespace) -> int:
    import warnings

    with warnings.catch_warnings():
        show = warnings.showwarning
        warnings.showwarning = lambda msg, cat, *a, **k: (  # Avalanche 0.6's own deprecations, not ours
            None if issubclass(cat, DeprecationWarning) else show(msg, cat, *a, **k))
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from scenarios.config import load_config, parse_seeds
    from scenarios.report import table, write_report
    from scenarios.runner import run_config

    if args.command == "demo" and "OMP_NUM_THREADS" not in os.environ:
        import torch
        torch.set_num_threads(1)  # the demo's tiny networks gain nothing from more, lose much on shared cores
    cfg = load_config(DEMO_CONFIG if args.command == "demo" else args.config)
    if getattr(args, "seeds", None) is not None:
        cfg.seeds = parse_seeds(args.seeds)
    if args.device is not None:
        cfg.device = args.device
    out = args.out or os.path.join("runs", "cl", cfg.name)
    if os.path.exists(out) and not os.path.isdir(out):
        from condense_core import InputError
        raise InputError(f"--out {out} is a file; give a folder")

    def announce(r: dict) -> None:
        if not args.quiet:
            state = "already done" if r.get("resumed") else f"{r['train_time_s'] + r['memory_time_s']:.1f} s"
            print(f"{r['strategy']:>12} seed {r['seed']}: final accuracy {100 * r['final_accuracy']:.2f} % "
                  f"({state})", flush=True)

    results = run_config(cfg, out, tensorboard=args.tensorboard, show_progress=not args.quiet, on_unit=announce)
    summary = write_report(out, cfg, results)
    print(f"\n{cfg.name}: {cfg.data}, {cfg.experiences} experiences, seeds {cfg.seeds}\n")
    print(table(summary))
    print(f"\nwrote {os.path.join(out, 'report.md')}, results.json, results.csv, accuracy.png, log.txt")
    if args.json:
        emit_json({"out": out, "name": cfg.name, "seeds": cfg.seeds, "summary": summary,
                   "report": os.path.join(out, "report.md")})
    return 0
