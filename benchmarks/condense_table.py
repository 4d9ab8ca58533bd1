"""Accuracy table of condensation and selection methods: mean and std over seeds.

For every method, IPC and seed: build the set with that seed, train `--runs` fresh networks on it
with the evaluation protocol, test on the real test split; a seed's figure is the mean of its
runs, the table shows mean +- std over seeds. `full` trains on the whole training set. Results are
cached in `--out` (JSON) so an interrupted run continues where it stopped.

    python benchmarks/condense_table.py --data digits --methods random,herding,kcenter,dm,full \
        --ipcs 1,10 --seeds 0,1,2 --iterations 1000 --out runs/bench/digits_table.json

Method names: any registered name; `lcmat-s` / `lcmat-c` pick LCMat's selection / condensation;
`dm-reference` is DM computed by the straightforward reference loop (`condense_core.reference`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from condense_core import InputError, TrainConfig, load_data, make_method
from condense_core.evaluate import evaluate
from condense_core.reference import ReferenceDM
from condense_core.registry import method_class, methods
from condense_core.settings import applicable
from condense_core.synthetic import atomic_write_text

SUFFIX_KIND = {"-s": "select", "-c": "condense"}
SAME_SETTINGS = ("data", "iterations", "runs", "epochs", "method_options")  # a cache's figures share these


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
    m = 100 * statistics.mean(values)
    s = 100 * statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--methods", default="random,herding,kcenter,dm,full")
    p.add_argument("--ipcs", default="1,10")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--iterations", type=int, default=1000, help="condensation iterations")
    p.add_argument("--runs", type=int, default=2, help="evaluation networks per seed")
    p.add_argument("--epochs", type=int, default=300, help="evaluation epochs")
    p.add_argument("--method-options", default="{}", help="JSON dict of extra method settings")
    p.add_argument("--out", required=True, help="JSON file of results (resumed if present)")
    a = p.parse_args(argv)
    methods = a.methods.split(",")
    ipcs = [int(i) for i in a.ipcs.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    extra = {"progress": False, **json.loads(a.method_options)}
    settings = {"data": a.data, "iterations": a.iterations, "runs": a.runs, "epochs": a.epochs,
                "method_options": extra, "torch": torch.__version__, "threads": torch.get_num_threads(),
                "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
                           f"{'cuda' if torch.cuda.is_available() else 'no GPU'}"}
    results = {}
    if os.path.exists(a.out):  # resume, but never mix figures made with other settings
        with open(a.out) as f:
            cached = json.load(f)
        changed = [k for k in SAME_SETTINGS if cached["settings"].get(k) != settings[k]]
        if changed:
            p.error(f"{a.out} holds results made with other {', '.join(changed)}; give another --out")
        results = cached["results"]
    data = load_data(a.data)
    cfg = TrainConfig(epochs=a.epochs)

    def record(key, fn):
        if key in results:
            return
        t0 = time.time()
        results[key] = {**fn(), "seconds": round(time.time() - t0, 1)}
        atomic_write_text(json.dumps({"settings": settings, "results": results}, indent=1), a.out)
        print(f"{key}: {100 * results[key]['acc']:.2f}%  ({results[key]['seconds']} s)", flush=True)

    for seed in seeds:
        if "full" in methods:
            record(f"full/seed{seed}", lambda: {"acc": evaluate(data.x_train, data.y_train, data, a.runs,
                                                                   seed, cfg=cfg)["mean"]})
        for ipc in ipcs:
            for name in (m for m in methods if m != "full"):
                def run():
                    syn = build(name, ipc, seed, a.iterations, extra).condense(data)
                    x, y = syn.for_data(data)
                    return {"acc": evaluate(x, y, data, a.runs, seed, cfg=cfg)["mean"],
                            "condense_s": syn.meta["wall_time_s"]}
                record(f"{name}/ipc{ipc}/seed{seed}", run)

    print(f"\n{a.data}: test accuracy (%), mean ± std over seeds {seeds}; {a.runs} evaluation "
          f"networks per seed, {a.epochs} epochs; condensation {a.iterations} iterations\n")
    print("| method | " + " | ".join(f"IPC {i}" for i in ipcs) + " |")
    print("|---|" + "---|" * len(ipcs))
    for name in methods:
        if name == "full":
            cells = [summary([results[f"full/seed{s}"]["acc"] for s in seeds])]
            print(f"| whole training set ({len(data.y_train)} images) | " + " | ".join(cells * len(ipcs)) + " |")
            continue
        cells = [summary([results[f"{name}/ipc{i}/seed{s}"]["acc"] for s in seeds]) for i in ipcs]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
