"""Accuracy table of condensation and selection methods: mean and std over seeds.

For every method, IPC and seed (a unit): build the set with that seed, train `--runs` fresh
networks on it with the evaluation protocol, test on the real test split; a seed's figure is the
mean of its runs, the table shows mean +- std over seeds. `full` trains on the whole training
set. A set with soft targets (`--method-settings '{"soft_labels": true}'`) is trained on them, and
the table says so. `--out` is a folder of finished units (`condense_core.sweep`): an interrupted run continues
where it stopped, `--workers N` runs units in N processes, `--shard I/N` one shard of them (all
into the same folder), and the table (`DIR/table.md`) is made from every finished unit.

    python benchmarks/condense_table.py --data digits --methods random,herding,kcenter,dm,full \
        --ipcs 1,10 --seeds 0,1,2 --iterations 1000 --out runs/bench/digits_table

Method names: any registered name; `lcmat-s` / `lcmat-c` pick LCMat's selection / condensation;
`dm-reference` is DM computed by the straightforward reference loop (`condense_core.reference`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys

import torch

from condense_core import InputError, TrainSettings, load_data, make_method
from condense_core.errors import Interrupted
from condense_core.evaluate import evaluate
from condense_core.reference import ReferenceDM
from condense_core.registry import method_class, methods
from condense_core.settings import applicable
from condense_core.sweep import Sweep, run
from condense_core.reduced import atomic_write_text
from dcapps.cli.common import add_layout_flags, layout_of
from dcapps.cli.renamed import renamed_flag

SUFFIX_KIND = {"-s": "select", "-c": "condense"}


def build(name: str, ipc: int, seed: int, iterations: int, extra: dict):
    """The method behind a table name (`lcmat-s` -> LCMat selection; a name registered as one
    kind only needs no suffix), configured; settings in `extra` (and `iterations`) go to the
    methods that have them."""
    options = {"iterations": iterations, **extra}
    if name == "dm-reference":
        return ReferenceDM(ipc=ipc, seed=seed, **applicable(ReferenceDM, options))
    kind = SUFFIX_KIND.get(name[-2:])
    base = name[:-2] if kind else name
    if kind is None:
        kinds = [k for k in ("condense", "select") if base in methods(k)]
        if len(kinds) > 1:
            raise InputError(f"{name} is both a condenser and a selector: say {name}-c or {name}-s")
        kind = kinds[0] if kinds else "condense"  # an unknown name: the registry's error
    return make_method(kind, base, ipc=ipc, seed=seed, **applicable(method_class(kind, base), options))


def summary(values: list[float]) -> str:
    if not values:
        return "(not finished)"
    m = 100 * statistics.mean(values)
    s = 100 * statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"


class TableUnit:
    """One unit of the table, run where it is sent (picklable; the data is loaded once per
    process): build the set of (method, ipc, seed) and evaluate it, or train on the whole data."""

    def __init__(self, data: str, iterations: int, runs: int, epochs: int, extra: dict):
        self.data, self.iterations, self.runs, self.extra = data, iterations, runs, extra
        self.cfg = TrainSettings(epochs=epochs)
        self._loaded = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loaded": None}

    def __call__(self, unit: dict, device: str) -> dict:
        if self._loaded is None:
            self._loaded = load_data(self.data)
        data, seed = self._loaded, unit["seed"]
        if unit["method"] == "full":
            return {"acc": evaluate(data.x_train, data.y_train, data, self.runs, seed, cfg=self.cfg,
                                    device=device)["mean"]}
        reduced = build(unit["method"], unit["ipc"], seed, self.iterations,
                        {**self.extra, "device": device}).condense(data)
        x, y = reduced.for_data(data)
        return {"acc": evaluate(x, y, data, self.runs, seed, cfg=self.cfg, device=device,
                                targets=reduced.targets)["mean"],
                "condense_s": reduced.meta["wall_time_s"]}


def unit_key(method: str, ipc: int | None, seed: int) -> str:
    return f"{method}-seed{seed}" if ipc is None else f"{method}-ipc{ipc}-seed{seed}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--methods", default="random,herding,kcenter,dm,full")
    p.add_argument("--ipcs", default="1,10")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--iterations", type=int, default=1000, help="condensation iterations")
    p.add_argument("--runs", type=int, default=2, help="evaluation networks per seed")
    p.add_argument("--epochs", type=int, default=300, help="evaluation epochs")
    p.add_argument("--method-settings", default="{}", help="JSON dict of extra method settings")
    p.add_argument("--out", required=True, help="output folder (its finished units are kept)")
    add_layout_flags(p)
    argv = sys.argv[1:] if argv is None else argv
    if renamed_flag(argv):  # an old spelling is told its new name
        print(f"condense_table: error: {renamed_flag(argv)}", file=sys.stderr)
        return 2
    a = p.parse_args(argv)
    try:
        return _main(a)
    except InputError as e:
        print(f"condense_table: error: {e}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as e:  # the finished units are kept; the unit stopped is redone
        signum = getattr(e, "signum", 2)
        print(f"condense_table: stopped by {signal.Signals(signum).name}; run the same command again to "
              "finish (finished units are kept)", file=sys.stderr)
        return 128 + signum


def _main(a: argparse.Namespace) -> int:
    methods = a.methods.split(",")
    ipcs = [int(i) for i in a.ipcs.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    extra = {**json.loads(a.method_settings), "progress": "off"}  # each unit shows its line instead
    settings = {"data": a.data, "iterations": a.iterations, "runs": a.runs, "epochs": a.epochs,
                # a folder's figures share these; "progress": false is how folders have always recorded
                # the display setting that never changes a figure, kept so that they still resume
                "method_settings": {**extra, "progress": False}}
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
                       f"{'cuda' if torch.cuda.is_available() else 'no GPU'}"}
    units = {}
    for seed in seeds:
        if "full" in methods:
            units[unit_key("full", None, seed)] = {"method": "full", "seed": seed}
        for ipc in ipcs:
            for name in (m for m in methods if m != "full"):
                units[unit_key(name, ipc, seed)] = {"method": name, "ipc": ipc, "seed": seed}
    layout = layout_of(a)
    data = load_data(a.data)  # bad data stops the run here, before any unit
    sweep = Sweep(a.out, settings)
    sweep.plan(units, info)

    problems = run(sweep, list(units), TableUnit(a.data, a.iterations, a.runs, a.epochs, extra), layout,
                   extra.get("device", "auto"), announce)
    results = sweep.results(list(units))
    trained_on = "soft labels (a teacher's logits)" if extra.get("soft_labels") else "hard labels"
    lines = [f"{a.data}: test accuracy (%), mean ± std over seeds {seeds}; {a.runs} evaluation "
             f"networks per seed, {a.epochs} epochs; condensation {a.iterations} iterations; trained on "
             f"{trained_on}", "",
             "| method | " + " | ".join(f"IPC {i}" for i in ipcs) + " |", "|---|" + "---|" * len(ipcs)]

    def accs(name, ipc):
        return [results[k]["acc"] for k in (unit_key(name, ipc, s) for s in seeds) if k in results]

    for name in methods:
        if name == "full":
            lines.append(f"| whole training set ({len(data.y_train)} images) | "
                         + " | ".join([summary(accs("full", None))] * len(ipcs)) + " |")
        else:
            lines.append(f"| {name} | " + " | ".join(summary(accs(name, i)) for i in ipcs) + " |")
    left = [k for k in units if k not in results]
    if left:
        lines += ["", f"not finished yet ({len(left)}): {', '.join(left)}"]
    with sweep.report_lock():
        atomic_write_text("\n".join(lines) + "\n", os.path.join(a.out, "table.md"))
    print("\n" + "\n".join(lines))
    for line in problems:
        print(f"condense_table: {line}: run the same command again to finish it", file=sys.stderr)
    return 1 if problems else 0


def announce(key: str, r: dict) -> None:
    """A line per finished unit, printed by the process that ran it."""
    built = f"  ({r['condense_s']:.1f} s to build)" if "condense_s" in r else ""
    print(f"{key}: {100 * r['acc']:.2f}%{built}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
