"""Run every strategy of a config for every seed, one finished unit at a time.

A unit is one (strategy, seed): a fresh model trained experience by experience through
Avalanche, evaluated after each experience on the test data of every class seen so far. The
output folder is a `condense_core.sweep.Sweep`: each finished unit is written atomically to
`DIR/units/<strategy>-seed<S>.json`, so a run that is interrupted starts again where it
stopped, and any number of processes (workers, torchrun ranks, shards on other machines) can
share the units of one folder. `DIR/sweep.json` holds the settings the units were made with, and
a different config for the same folder is refused rather than mixed in. Files found there are
read and checked before the first unit starts; a damaged one is refused, naming it, never taken
as a result. The report is made from the finished units on disk, whoever ran them.
"""
from __future__ import annotations

import os
import re
import time
from functools import partial

import torch

from condense_core import ImageData, InputError, build_model, load_data, make_method
from condense_core.networks import check_fits, reinitialize
from condense_core.reduced import ReducedSet
from condense_core.runtime import make_generator, resolve_device
from condense_core.sweep import Layout, Sweep, run
from dcapps.glossary import RENAMED_KEYS

from .benchmarks import class_order, experience_sizes, make_benchmark
from .config import CLConfig, model_options, validate
from .quiet import other_libraries_quiet
from .strategies import STRATEGY_METHODS, build_strategy


def unit_key(strategy: str, seed: int) -> str:
    return f"{strategy}-seed{seed}"


def plan(cfg: CLConfig) -> dict[str, dict]:
    """The units of `cfg` (key -> parameters), seed by seed in the config's strategy order."""
    return {unit_key(name, s): {"strategy": name, "seed": s} for s in cfg.seeds for name in cfg.strategies}


def open_run(cfg: CLConfig, out: str, info: dict | None = None) -> Sweep:
    """Check everything before the first unit starts: the data (with a test split), what of the
    config depends on it (`check_against_data`), the device, that `out` holds no other config's
    results and that the units already there are whole and of this config; then add the config's
    units to the folder's plan (its first write), with `info` (e.g. the command line's `--set`
    overrides)."""
    data = load_data(cfg.data, cfg.root, cfg.download)
    data.check_test_split()
    check_against_data(cfg, data)
    resolve_device(cfg.device)
    units = plan(cfg)
    sweep = Sweep(out, cfg.settings(), flag="--out")
    sweep.plan(units, {"config": cfg.as_dict(), **(info or {})}, unit_check(cfg.experiences))
    return sweep


def check_against_data(cfg: CLConfig, data: ImageData) -> None:
    """Check what of `cfg` depends on the data, so that a run never stops half-way on it: the
    split into experiences, the memory's share per class, that the model fits the images, and
    every strategy's method with its settings (the error names the config's key)."""
    from dcapps.replay import PRESET, class_share

    if cfg.memory.mem_size is not None:
        class_share(cfg.memory.mem_size, data.num_classes, "memory.mem_size")
    experience_sizes(data.num_classes, cfg.experiences, cfg.first_experience_classes)
    try:
        check_fits(cfg.model["name"], data.channels, data.image_size, data.spec, **model_options(cfg.model))
    except InputError as e:
        raise InputError(f"model: {e}") from None
    for strategy in cfg.strategies:
        if strategy in STRATEGY_METHODS:
            kind, name = STRATEGY_METHODS[strategy]
            try:
                make_method(kind, name, PRESET, **cfg.method_settings(strategy), ipc=1, device="cpu").validate(data)
            except InputError as e:
                raise InputError(f"methods.{name} (strategy {strategy}): {e}") from None


def run_config(cfg: CLConfig, out: str, layout: Layout = Layout(), tensorboard: bool = False,
               announce=None, info: dict | None = None) -> list[str]:
    """Run (or resume) this layout's share of the units of `cfg` in `out`; returns what went
    wrong in a worker (empty if nothing). `announce(key, result)` is called after each unit, in
    the process that ran it."""
    sweep = open_run(cfg, out, info)
    return run(sweep, list(plan(cfg)), UnitWork(cfg, out, tensorboard), layout, cfg.device, announce,
               unit_check(cfg.experiences))


def finished(out: str, cfg: CLConfig | None = None) -> tuple[CLConfig, list[dict], list[str]]:
    """The config of the units planned in `out` (the last run's settings, every planned strategy
    and seed), the finished units' results in plan order and the keys of those not finished."""
    sweep = Sweep(out)
    record = sweep.record()
    if cfg is None:
        units = list(record["units"].values())
        try:
            config = {RENAMED_KEYS.get(k, k): v for k, v in record["info"]["config"].items()}  # older records too
            cfg = validate({**config, "strategies": list(dict.fromkeys(u["strategy"] for u in units)),
                            "seeds": list(dict.fromkeys(u["seed"] for u in units))})
        except (InputError, TypeError, KeyError, AttributeError) as e:
            raise InputError(f"{sweep.file}: not the record of a cl run ({e})") from None
    keys = [unit_key(name, s) for s in cfg.seeds for name in cfg.strategies]
    results = sweep.results(keys, unit_check(cfg.experiences))
    return cfg, list(results.values()), [k for k in keys if k not in results]


class UnitWork:
    """One unit of a config, run where it is sent (a picklable callable for spawned workers);
    the data is loaded once per process."""

    def __init__(self, cfg: CLConfig, out: str, tensorboard: bool):
        self.cfg, self.out, self.tensorboard = cfg, out, tensorboard
        self._data: ImageData | None = None

    def __call__(self, params: dict, device: str) -> dict:
        if self._data is None:
            self._data = load_data(self.cfg.data, self.cfg.root, self.cfg.download)
        with other_libraries_quiet():  # here too: a spawned worker does not inherit the caller's filters
            return run_unit(self.cfg, self._data, params["strategy"], params["seed"], self.out,
                            resolve_device(device), self.tensorboard)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}


UNIT_KEYS = {"strategy": str, "seed": int, "accuracy": list, "per_experience": list, "train_time_s": (int, float),
             "memory_time_s": (int, float), "classes_per_experience": list, "device": str}


def unit_check(experiences: int):
    return partial(check_unit, experiences=experiences)


def check_unit(path: str, unit: dict, params: dict, experiences: int) -> None:
    """Refuse a unit file that is not a finished unit of its strategy and seed: the keys the
    report reads, with the right types, one accuracy per experience."""
    strategy, seed = params.get("strategy"), params.get("seed")
    bad = any(not isinstance(unit.get(k), t) or isinstance(unit.get(k), bool) for k, t in UNIT_KEYS.items())
    if not bad:
        bad = (unit["strategy"] != strategy or unit["seed"] != seed or len(unit["accuracy"]) != experiences
               or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in unit["accuracy"]))
    if bad:
        raise InputError(f"{path}: not a finished unit of {strategy} seed {seed} (damaged or edited): "
                         "delete it to run the unit again, or give another --out")


def new_model(model: dict, data: ImageData, seed: int) -> torch.nn.Module:
    """The config's `model:` for `data`, initialised from `seed` (the same for every strategy)."""
    net = build_model(model["name"], data.channels, data.num_classes, data.image_size, **model_options(model))
    return reinitialize(net, make_generator(seed, "cpu", "model"))


def run_unit(cfg: CLConfig, data: ImageData, name: str, seed: int, out: str, device: torch.device,
             tensorboard: bool = False) -> dict:
    """Train strategy `name` through the experiences with `seed`; accuracy after each one."""
    from avalanche.training.determinism.rng_manager import RNGManager

    RNGManager.set_random_seeds(seed)  # Avalanche's data loaders shuffle from the global RNGs
    bench = make_benchmark(data, cfg.experiences, seed, cfg.first_experience_classes)
    log_path = os.path.join(out, "logs", unit_key(name, seed) + ".txt")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w") as log:
        log.write(f"===== {name} seed {seed} =====\n")
        evaluator = make_evaluator(log, os.path.join(out, "tensorboard", f"{name}-seed{seed}") if tensorboard else None)
        strategy = build_strategy(name, new_model(cfg.model, data, seed), cfg.train, cfg.memory,
                                  cfg.method_settings(name), data.num_classes, seed, evaluator, device)
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
    result = {"strategy": name, "seed": seed, "accuracy": accuracy,
              "per_experience": [row["experiences"] for row in matrix],
              "train_time_s": round(train_s - memory_s, 3), "memory_time_s": round(memory_s, 3),
              "class_order": class_order(data.num_classes, seed),
              "classes_per_experience": experience_sizes(data.num_classes, cfg.experiences,
                                                         cfg.first_experience_classes),
              "device": device.type, "settings": cfg.settings()}
    memory = memory_set(strategy, data)
    if memory is not None:
        result.update(memory_images=len(memory), memory_training_images=memory.meta["training_images"],
                      memory_bytes=memory.images.numel() * memory.images.element_size() + memory.meta["logit_bytes"],
                      memory_logit_bytes=memory.meta["logit_bytes"])
        result["memory_png"] = os.path.relpath(memory.save_grid(
            os.path.join(out, "memories", unit_key(name, seed) + ".png")), out)
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


def memory_set(strategy, data: ImageData) -> ReducedSet | None:
    """The replay memory a strategy holds at the end, as a ReducedSet of its stored images
    (None without memory); `meta["training_images"]` counts the images it trains on (a
    multi-formation image decodes into factor^2 of them), `meta["logit_bytes"]` the bytes of the
    logits it keeps beside them (a row of K floats per image, as DER and a memory with
    `knowledge: logits` keep)."""
    for holder in (strategy, *strategy.plugins):
        found = _memory_of(holder)
        if found is not None:
            x, y, decoded, logit_bytes = found
            return ReducedSet(x, y, data.classes, data.mean, data.std,
                              {"data": data.spec, "training_images": decoded, "logit_bytes": logit_bytes})
    return None


def _memory_of(holder):
    """(stored images, labels, images trained on, bytes of logits) held by an Avalanche storage
    policy (a ReducedSetBuffer's sets or any buffer of real samples, as plugins and DER keep
    them, DER's items ending with their logits) or by iCaRL's plugin, if `holder` has one."""
    if getattr(holder, "x_memory", None):  # iCaRL: the exemplars of each class
        x = torch.cat(holder.x_memory).cpu()
        return x, torch.tensor([int(c) for ys in holder.y_memory for c in ys]), len(x), 0
    policy = getattr(holder, "storage_policy", None)
    if policy is None or len(policy.buffer) == 0:
        return None
    sets = [s for s in getattr(policy, "sets", []) if len(s)]
    if sets:
        return (torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]),
                sum(len(s) * s.factor ** 2 for s in sets), sum(s.targets.nbytes for s in sets if s.targets))
    items = [policy.buffer[i] for i in range(len(policy.buffer))]
    logit_bytes = sum(it[-1].numel() * it[-1].element_size() for it in items if len(it) > 3)
    return (torch.stack([it[0] for it in items]), torch.tensor([int(it[1]) for it in items]), len(items),
            logit_bytes)
