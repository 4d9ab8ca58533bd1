"""Class-incremental accuracy of replay memories of equal size: random vs herding vs DM.

Every strategy gets the same model (freshly initialised from the seed), SGD settings, epochs,
mini-batch size, class order and memory (`--ipc` images per class). The figure is the final
average accuracy over all classes: after the last experience, accuracy on the whole test split.
Mean +- std over seeds. Two replay protocols:

  mix   : each mini-batch holds current data and memory. `replay` is Avalanche's ReplayPlugin with
          random class-balanced storage, `herding` and `dm` are CondensedReplayPlugin/DMReplay.
  gdumb : the model is re-initialised and trained on the memory only after each experience.
          `gdumb` is Avalanche's GDumb (random class-balanced storage).

Results are cached in `--out` (JSON) so an interrupted run continues where it stopped.

    OMP_NUM_THREADS=1 python benchmarks/cl_table.py --data digits --seeds 0,1,2 \
        --out runs/bench/cl_digits.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from condense_core import load_data, test_accuracy  # noqa: E402
from condense_core.networks import build_model, reinitialize  # noqa: E402
from condense_core.runtime import make_generator  # noqa: E402
from condense_core.synthetic import atomic_write_text  # noqa: E402
from scenarios.benchmarks import make_benchmark  # noqa: E402

# name -> (memory, replay mode); memory "random" is Avalanche's class-balanced random storage
STRATEGIES = {"replay": ("random", "mix"), "herding": ("herding", "mix"), "dm": ("dm", "mix"),
              "gdumb": ("random", "gdumb"), "herding-gdumb": ("herding", "gdumb"), "dm-gdumb": ("dm", "gdumb")}


def build_strategy(name: str, model, args, num_classes: int, seed: int):
    """The Avalanche strategy `name`, with the shared optimiser, epochs and memory budget."""
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.storage_policy import ClassBalancedBuffer
    from avalanche.training.supervised import GDumb, Naive

    from dcapps import CondensedReplayPlugin, DMReplay

    memory, mode = STRATEGIES[name]
    common = dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                                                         weight_decay=5e-4),
                  criterion=torch.nn.CrossEntropyLoss(), train_mb_size=args.batch_size,
                  train_epochs=args.epochs, eval_mb_size=512, device="cpu",
                  evaluator=EvaluationPlugin(loggers=[]))
    condense = dict(ipc=args.ipc, condenser=memory, iterations=args.iterations, seed=seed,
                    condenser_options=_condenser_options(memory, args))
    if memory == "random":
        storage = ClassBalancedBuffer(args.ipc * num_classes, adaptive_size=False, total_num_classes=num_classes)
        if mode == "mix":
            return Naive(**common, plugins=[ReplayPlugin(storage.max_size, storage_policy=storage)])
        strategy = GDumb(**common, mem_size=storage.max_size)
        next(p for p in strategy.plugins if hasattr(p, "storage_policy")).storage_policy = storage
        return strategy
    if memory == "dm":
        return DMReplay(**common, **condense, replay_mode=mode)
    return Naive(**common, plugins=[CondensedReplayPlugin(**condense, replay_mode=mode)])


def _condenser_options(memory: str, args) -> dict:
    """Condensation networks: the learner's architecture; DM's real batch size."""
    opts = {"model": "ConvNet", "model_options": {"width": args.width}}
    return {**opts, "batch_real": args.batch_real} if memory == "dm" else opts


def run_one(name: str, data, args, seed: int) -> dict:
    """Train `name` through the class-incremental stream of `seed`; final accuracy on all classes."""
    bench = make_benchmark(data, args.experiences, seed)
    model = build_model("ConvNet", data.channels, data.num_classes, data.image_size, width=args.width)
    reinitialize(model, make_generator(seed, "cpu", "learner"))
    torch.manual_seed(seed)  # Avalanche's data loaders shuffle with the global generator
    strategy = build_strategy(name, model, args, data.num_classes, seed)
    t0 = time.time()
    for exp in bench.train_stream:
        strategy.train(exp)
    acc = test_accuracy(strategy.model.eval(), data.x_test, data.y_test)
    memory = getattr(strategy, "memory", None)
    return {"accuracy": acc, "wall_s": round(time.time() - t0, 1),
            "memory_images": len(memory) if memory is not None else args.ipc * data.num_classes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--experiences", type=int, default=5)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--batch-real", type=int, default=128)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = load_data(args.data)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "strategies", "seeds")}
    cache = json.load(open(args.out)) if os.path.exists(args.out) else {}
    if cache.get("settings", settings) != settings:
        sys.exit(f"{args.out} holds results of other settings; use another --out")
    cache["settings"], cache["machine"] = settings, f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU"
    results = cache.setdefault("results", {})
    names, seeds = args.strategies.split(","), [int(s) for s in args.seeds.split(",")]
    for seed in seeds:  # seed-major: an interrupted run leaves whole comparisons
        for name in names:
            key = f"{name}/{seed}"
            if key not in results:
                results[key] = run_one(name, data, args, seed)
                atomic_write_text(json.dumps(cache, indent=1), args.out)
            print(f"{key}: {results[key]}", flush=True)
    print(f"\n{args.data}: {args.experiences} experiences, ipc {args.ipc}, final accuracy on all classes (%)")
    print("| strategy | memory | protocol | accuracy (mean +- std) | seeds |\n|---|---|---|---|---|")
    for name in names:
        accs = [100 * results[f"{name}/{s}"]["accuracy"] for s in seeds if f"{name}/{s}" in results]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        memory, mode = STRATEGIES[name]
        print(f"| {name} | {memory} | {mode} | {statistics.mean(accs):.1f} +- {std:.1f} | {len(accs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
