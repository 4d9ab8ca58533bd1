"""Run every strategy of a config for every seed, one finished unit at a time.

A unit is one (strategy, seed): a fresh model trained experience by experience through
Avalanche, evaluated after each experience on the test data of every class seen so far. Each
finished unit is written atomically to `DIR/units/<strategy>-seed<S>.json`, so a run that is
interrupted starts again where it stopped; `DIR/config.json` holds the settings the units were
made with, and a different config for the same folder is refused rather than mixed in. Files
found there are read and checked before the first unit starts; a damaged one is refused, naming
it, never taken as a result.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Callable

import torch

from condense_core import ImageData, InputError, build_model, load_data
from condense_core.networks import check_fits, reinitialize
from condense_core.runtime import make_generator, progress, resolve_device
from condense_core.synthetic import SyntheticSet, atomic_write_text

from .benchmarks import class_order, experience_sizes, make_benchmark
from .config import CLConfig, check_split
from .strategies import build_strategy, check_memory_methods


def unit_path(out: str, strategy: str, seed: int) -> str:
    return os.path.join(out, "units", f"{strategy}-seed{seed}.json")


def run_config(cfg: CLConfig, out: str, seeds: list[int] | None = None, tensorboard: bool = False,
               show_progress: bool = True, on_unit: Callable[[dict], None] | None = None) -> list[dict]:
    """Run (or resume) every unit of `cfg` into `out`; returns the unit results in order.

    Everything is checked before the first unit starts: the data (with a test split), the split,
    the model, every strategy's memory method with its settings, that `out` holds no other
    config's results and that the units already there are whole.
    """
    seeds = seeds or cfg.seeds
    data = load_data(cfg.data, cfg.root, cfg.download)
    data.check_test_split()
    check_split(cfg, data.num_classes)
    device = resolve_device(cfg.device)
    new_model(cfg, data, seeds[0])  # a bad model option fails now, with its name
    check_memory_methods(cfg, data)
    _claim_folder(out, cfg)
    units = [(s, name) for s in seeds for name in cfg.strategies]
    done = {(s, name): read_unit(unit_path(out, name, s), name, s, cfg.experiences) for s, name in units
            if os.path.exists(unit_path(out, name, s))}
    results = []
    for seed, name in progress(units, desc="units", enabled=show_progress):
        if (seed, name) in done:
            result = {**done[seed, name], "resumed": True}
        else:
            result = run_unit(cfg, data, name, seed, out, device, tensorboard)
            atomic_write_text(json.dumps(result, indent=1), unit_path(out, name, seed))
        results.append(result)
        if on_unit is not None:
            on_unit(result)
    return results


UNIT_KEYS = {"strategy": str, "seed": int, "accuracy": list, "final_accuracy": (int, float),
             "forgetting": (int, float), "per_experience": list, "train_time_s": (int, float),
             "memory_time_s": (int, float), "classes_per_experience": list, "device": str}


def _read_json(path: str) -> object:
    """The JSON in `path`; a file cut short or edited by hand is an input error naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise InputError(f"{path}: not readable JSON ({type(e).__name__}; a run cut short?): delete it, "
                         "or give another --out") from None


def read_unit(path: str, strategy: str, seed: int, experiences: int) -> dict:
    """A finished unit's result, checked: the keys the report reads, with the right types, for
    this strategy and seed, one accuracy per experience."""
    unit = _read_json(path)
    bad = not isinstance(unit, dict) or any(
        not isinstance(unit.get(k), t) or isinstance(unit.get(k), bool) for k, t in UNIT_KEYS.items())
    if not bad:
        bad = (unit["strategy"] != strategy or unit["seed"] != seed or len(unit["accuracy"]) != experiences
               or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in unit["accuracy"]))
    if bad:
        raise InputError(f"{path}: not a finished unit of {strategy} seed {seed} (damaged or edited): "
                         "delete it to run the unit again, or give another --out")
    return unit


def _claim_folder(out: str, cfg: CLConfig) -> None:
    """Write `out/config.json`, or check that the one already there has the same settings."""
    path = os.path.join(out, "config.json")
    mine = json.loads(json.dumps(cfg.settings()))
    if os.path.exists(path):
        theirs = _read_json(path)
        if not isinstance(theirs, dict):
            raise InputError(f"{path}: not a config of dcapps cl run: delete it, or give another --out")
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if changed:
            raise InputError(f"{out} holds results made with different settings ({', '.join(changed)}, "
                             f"recorded in {path}); use another --out or delete it")
        return
    os.makedirs(out, exist_ok=True)
    atomic_write_text(json.dumps(mine, indent=1), path)


def new_model(cfg: CLConfig, data: ImageData, seed: int) -> torch.nn.Module:
    """The config's model for `data`, initialised from `seed` (the same for every strategy)."""
    opts = {k: v for k, v in cfg.model.items() if k != "name"}
    try:
        check_fits(cfg.model["name"], data.channels, data.image_size, data.spec, **opts)
        net = build_model(cfg.model["name"], data.channels, data.num_classes, data.image_size, **opts)
    except InputError as e:
        raise InputError(f"model: {e}") from None
    return reinitialize(net, make_generator(seed, "cpu", "model"))


def run_unit(cfg: CLConfig, data: ImageData, name: str, seed: int, out: str, device: torch.device,
             tensorboard: bool = False) -> dict:
    """Train strategy `name` through the experiences with `seed`; accuracy after each one."""
    from avalanche.training.determinism.rng_manager import RNGManager

    RNGManager.set_random_seeds(seed)  # Avalanche's data loaders shuffle from the global RNGs
    bench = make_benchmark(data, cfg.experiences, seed, cfg.first_experience_classes)
    with open(os.path.join(out, "log.txt"), "a") as log:
        log.write(f"\n===== {name} seed {seed} =====\n")
        evaluator = make_evaluator(log, os.path.join(out, "tensorboard", f"{name}-seed{seed}") if tensorboard else None)
        strategy = build_strategy(name, cfg, new_model(cfg, data, seed), data.num_classes, seed, evaluator, device)
        timer = CallbackTimer([p for p in strategy.plugins if p is not strategy.evaluator])
        t0, matrix = time.perf_counter(), []
        train_s = 0.0
        if name == "joint":  # one model on every experience at once, then each prefix evaluated
            strategy.train(bench.train_stream)
            train_s = time.perf_counter() - t0
            matrix = [evaluate_prefix(strategy, bench.test_stream, i) for i in range(cfg.experiences)]
        else:
            for i, exp in enumerate(bench.train_stream):
                t = time.perf_counter()
                strategy.train(exp)
                train_s += time.perf_counter() - t
                matrix.append(evaluate_prefix(strategy, bench.test_stream, i))
        for logger in evaluator.loggers[1:]:  # TensorBoard: flush its event file now
            logger.writer.close()
    memory_s = timer.seconds
    accuracy = [row["seen"] for row in matrix]
    result = {"strategy": name, "seed": seed, "accuracy": accuracy, "final_accuracy": accuracy[-1],
              "forgetting": forgetting([row["experiences"] for row in matrix]),
              "per_experience": [row["experiences"] for row in matrix],
              "train_time_s": round(train_s - memory_s, 3), "memory_time_s": round(memory_s, 3),
              "class_order": class_order(data.num_classes, seed),
              "classes_per_experience": experience_sizes(data.num_classes, cfg.experiences,
                                                         cfg.first_experience_classes),
              "device": str(device), "settings": cfg.settings()}
    memory = memory_set(strategy, data)
    if memory is not None:
        result["memory_images"] = len(memory)
        result["memory_png"] = os.path.relpath(memory.save_grid(
            os.path.join(out, "memories", f"{name}-seed{seed}.png")), out)
    return result


def make_evaluator(log, tensorboard_dir: str | None):
    """Accuracy per experience and on the whole evaluated stream, logged as text (and TensorBoard)."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.logging import TensorboardLogger, TextLogger
    from avalanche.training.plugins import EvaluationPlugin

    loggers = [TextLogger(log)]
    if tensorboard_dir is not None:
        loggers.append(TensorboardLogger(tensorboard_dir))
    return EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loss_metrics(epoch=True),
                            loggers=loggers)


def evaluate_prefix(strategy, test_stream, i: int) -> dict:
    """Accuracy on the test data of experiences 0..i together (`seen`) and of each one."""
    metrics = strategy.eval(test_stream[:i + 1])
    seen = next(v for k, v in metrics.items() if k.startswith("Top1_Acc_Stream/eval_phase"))
    per = {int(m.group(1)): v for k, v in metrics.items()
           if k.startswith("Top1_Acc_Exp/eval_phase") and (m := re.search(r"Exp(\d+)$", k))}
    return {"seen": float(seen), "experiences": [float(per[j]) for j in range(i + 1)]}


def forgetting(matrix: list[list[float]]) -> float:
    """Mean over all but the last experience of (best earlier accuracy - final accuracy) on it."""
    last = len(matrix) - 1
    if last < 1:
        return 0.0
    drops = [max(matrix[i][j] for i in range(j, last)) - matrix[last][j] for j in range(last)]
    return float(sum(drops) / len(drops))


class CallbackTimer:
    """Wall time spent inside the callbacks of some plugins (storing or condensing the memory)."""

    def __init__(self, plugins: list):
        self.seconds = 0.0
        for p in plugins:
            for attr in dir(p):
                if attr.startswith(("before_", "after_")) and callable(getattr(p, attr)):
                    setattr(p, attr, self._timed(getattr(p, attr)))

    def _timed(self, fn):
        def call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t
        return call


def memory_set(strategy, data: ImageData) -> SyntheticSet | None:
    """The replay memory a strategy holds at the end, as a SyntheticSet (None without memory)."""
    for holder in strategy.plugins:
        found = _memory_of(holder)
        if found is not None:
            x, y = found
            return SyntheticSet(x, y, data.classes, data.mean, data.std, {"data": data.spec})
    return None


def _memory_of(holder):
    """(images, labels) held by an Avalanche storage policy (a SyntheticBuffer's sets or any
    buffer of real samples), if `holder` has one."""
    policy = getattr(holder, "storage_policy", None)
    if policy is None or len(policy.buffer) == 0:
        return None
    sets = [s for s in getattr(policy, "sets", []) if len(s)]
    if sets:
        return torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets])
    items = [policy.buffer[i] for i in range(len(policy.buffer))]
    return torch.stack([it[0] for it in items]), torch.tensor([int(it[1]) for it in items])
