"""Rank-evaluation table of NAS proxies: condensed sets, subsets, early stopping, zero-cost scores.

For every seed, `dcapps nas rank-eval` samples `--archs` architectures with that seed, builds
the condensed proxies of `--condensers` (with that seed; their build time counts in their cost),
the random and herding subsets, and trains each architecture on every proxy and on the whole
training set, and scores it with the zero-cost proxies. The table shows mean +- std over seeds
of the rank correlations, of the whole-data accuracy of the architecture each proxy picks, and
of the time against whole-data training. Each seed's run is a folder in `--out-dir`, so an
interrupted run continues where it stopped; `--workers` shares the architectures out.
`--added-condensers` adds proxies to a finished comparison: they run in a second folder per seed
(the whole data trained again, to the same accuracies) and the two results are joined.

    OMP_NUM_THREADS=1 python benchmarks/nas_rank.py --data digits --seeds 0,1 --archs 20 \
        --condensers dm,idm,m3d --method-settings '{"train_nets": 1, "train_steps": 2, "train_batch": 128}' \
        --ipc 10 --iterations 300 --epochs 300 --full-epochs 100 --out-dir runs/nas/b19
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

from condense_core import InputError
from condense_core.registry import method_class
from condense_core.settings import applicable
from dcapps.cli import main as dcapps
from nas.rank_eval import BASELINES, ZERO_COST, join_results


def run_seed(args, seed: int) -> dict:
    """One seed's rank-eval result (its folders are kept: a rerun carries on): `--condensers` with
    the baselines and zero-cost scores, joined with a folder of `--added-condensers` alone."""
    name = os.path.splitext(os.path.basename(args.data.rstrip("/")))[0]
    runs = [(f"rank_{name}_s{seed}", args.condensers, ",".join(BASELINES), ",".join(ZERO_COST))]
    if args.added_condensers:
        runs.append((f"rank_{name}_{args.added_condensers.replace(',', '-')}_s{seed}", args.added_condensers,
                     "none", "none"))
    results = []
    for folder, condensers, baselines, zero_cost in runs:
        folder = os.path.join(args.out_dir, folder)
        _check(dcapps(["nas", "rank-eval", "--data", args.data, "--condense", condensers, "--ipc", str(args.ipc),
                       "--method-settings", json.dumps(options_for(condensers, {"iterations": args.iterations,
                                                                                  **args.method_settings})),
                       "--space", args.space, "--archs", str(args.archs), "--seed", str(seed),
                       "--epochs", str(args.epochs), "--full-epochs", str(args.full_epochs),
                       "--baselines", baselines, "--zero-cost", zero_cost,
                       "--workers", str(args.workers), "--quiet", "--out", folder]))
        with open(os.path.join(folder, "result.json")) as f:
            results.append(json.load(f))
    return join_results(results)


def options_for(condensers: str, options: dict) -> dict:
    """The entries of `options` that some of `condensers` take (rank-eval refuses the others)."""
    out = {}
    for name in filter(None, condensers.split(",")):
        out.update(applicable(method_class("condense", name), options))
    return out


def _check(rc: int) -> None:
    if rc:
        sys.exit(rc)


def mean_std(values: list, scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "n/a"
    s = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {s:.{digits}f}"


def table(results: list[dict]) -> str:
    """Markdown table: one row per proxy, mean ± std over seeds."""
    rows = ["| proxy | images | epochs | Spearman | Kendall | Spearman top-10 | Kendall top-10 | "
            "whole-data acc. of pick (%) | train s | build s | speed-up: train (incl. build) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, first in enumerate(results[0]["summary"]):
        per_seed = [r["summary"][i] for r in results]
        rows.append(f"| {first['proxy']} | {first['images']} | {first['epochs']} | "
                    + " | ".join(mean_std([s[k] for s in per_seed]) for k in
                                 ("spearman", "kendall", "spearman_top10", "kendall_top10"))
                    + f" | {mean_std([s['picked_full_accuracy'] for s in per_seed], 100, 1)}"
                    + f" | {mean_std([s['train_s'] for s in per_seed], digits=0)}"
                    + f" | {mean_std([s['make_s'] for s in per_seed], digits=0)}"
                    + f" | {mean_std([s['speedup_train'] for s in per_seed], digits=1)}x"
                    + f" ({mean_std([s['speedup'] for s in per_seed], digits=1)}x) |")
    rows.append(f"| whole data (reference) | {results[0]['full_images']} | {results[0]['full_train']['epochs']} "
                f"| 1 | 1 | 1 | 1 | {mean_std([r['best_full_accuracy'] for r in results], 100, 1)} "
                f"| {mean_std([r['full_s'] for r in results], digits=0)} | 0 | 1x |")
    return "\n".join(rows)


def plot(results: list[dict], path: str, title: str) -> str:
    """Rank quality per second: Spearman (all architectures, and the top 10) against the total
    seconds each proxy cost for all the architectures (building it plus training on it; zero-cost
    scores: scoring), mean and std over seeds, log scale; whole-data training is the reference."""
    import statistics

    from condense_core.reduced import pyplot, save_png

    plt = pyplot()

    def stat(values):
        return statistics.mean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    full_s = stat([r["full_s"] for r in results])
    lowest = -0.2
    for ax, key, label in ((axes[0], "spearman", "Spearman, all architectures"),
                           (axes[1], "spearman_top10", "Spearman, the 10 best")):
        for i, first in enumerate(results[0]["summary"]):
            per_seed = [r["summary"][i] for r in results]
            cost = stat([s["train_s"] + s["make_s"] for s in per_seed])
            rho = stat([s[key] for s in per_seed])
            lowest = min(lowest, rho[0] - rho[1] - 0.05)
            marker = "s" if first.get("zero_cost") else "o"
            ax.errorbar(cost[0], rho[0], xerr=cost[1], yerr=rho[1], fmt=marker, capsize=3, label=first["proxy"])
        ax.errorbar(full_s[0], 1.0, xerr=full_s[1], fmt="*", color="black", markersize=10, label="whole data")
        ax.set_xscale("log")
        ax.set_xlabel("total seconds for all architectures (build + train)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(lowest, 1.05)
    axes[0].set_ylabel("rank correlation with whole-data accuracy")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--space", default="small")
    p.add_argument("--archs", type=int, default=20)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--condensers", default="dm", help="comma list of condensers whose proxies are built")
    p.add_argument("--added-condensers", default="", metavar="NAMES",
                   help="condensers run in a second folder per seed (no baselines, no zero-cost scores) and "
                        "joined to the table: proxies added to a finished comparison (the whole data is "
                        "trained again there and must give the same accuracies)")
    p.add_argument("--iterations", type=int, default=300, help="condensation iterations")
    p.add_argument("--method-settings", type=json.loads, default={}, metavar="JSON",
                   help="more settings for the condensers, each to those that have it (rank-eval's option)")
    p.add_argument("--epochs", type=int, default=300, help="training epochs on each proxy")
    p.add_argument("--full-epochs", type=int, default=100, help="training epochs on the whole data")
    p.add_argument("--out-dir", default="runs/nas")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the architectures")
    p.add_argument("--plot", default=None, metavar="PNG", help="also draw rank quality against seconds there")
    args = p.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    try:
        results = [run_seed(args, int(s)) for s in args.seeds.split(",")]
    except InputError as e:
        print(f"nas_rank: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.data}: {args.archs} architectures of the {args.space} space per seed, seeds {args.seeds}; "
          f"{','.join(filter(None, (args.condensers, args.added_condensers)))} ipc {args.ipc}, "
          f"{args.iterations} iterations; {args.epochs} epochs on proxies, "
          f"{args.full_epochs} on the whole data; time = training (+ building the proxy); "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(table(results))
    if args.plot:
        print("plot:", plot(results, args.plot, f"{args.data}: {args.archs} architectures, seeds {args.seeds}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
