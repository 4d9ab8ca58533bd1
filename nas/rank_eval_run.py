"""One `dcapps nas rank-eval` run: the checks, the folder, the proxies it builds, the units.

`run_rank_eval` checks everything it can before its folder's first write: the names of the
baselines, zero-cost proxies and condensers, the methods' settings (their values, and those a
method combines, by building each method), the output folder, the search space, every proxy file
and its fit to the data, and each proxy it will build against the data. Only then does it plan
the architectures in the folder (a `condense_core.sweep`, which checks the folder's record and
finished units before writing) and build the proxies. A check that can only come later (a
condensation that diverges, or runs out of memory) removes what the run wrote, so a refused run
leaves the folder as it was and the corrected command runs there. The comparison itself is
`nas.rank_eval`'s; the command line only parses, calls this and prints.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import nullcontext
from dataclasses import asdict, replace
from typing import Callable, NamedTuple, Sequence

from condense_core import InputError, ReducedSet, TrainSettings, load_data, make_method
from condense_core.data import ImageData
from condense_core.outputs import check_output_folder, held
from condense_core.reduced import atomic_write_text
from condense_core.registry import method_class
from condense_core.settings import applicable, settings_of
from condense_core.sweep import Layout, Sweep, run

from .rank_eval import (BASELINES, ArchUnit, check_baselines, check_zero_cost, file_digest, rank_eval,
                        sample_architectures)
from .space import load_space
from .zero_cost import PROXIES as ZERO_COST

# settings every built proxy takes from rank-eval's own flags, never from --method-settings
OWN_FLAGS = {"ipc": "--ipc", "seed": "--seed", "device": "--device"}
SELECTED = ("random", "herding")  # the baselines that are subsets rank-eval selects itself


class RankEvalOutcome(NamedTuple):
    """What a run leaves: the comparison (None while no architecture is finished), the planned
    architectures not finished, and what went wrong in a worker (one line each)."""

    result: dict | None
    missing: list[str]
    problems: list[str]


def check_method_settings(condense: Sequence[str], settings: dict) -> dict:
    """`settings` for the `condense` methods, each entry given to the methods that have it:
    refused, naming `--method-settings`, unless every entry is a setting of one of them, with a
    value each of them takes, that fits with their other settings (each method is built with
    them), and none that rank-eval sets itself (ipc, seed, device: its own flags)."""
    if not isinstance(settings, dict):
        raise InputError(f"--method-settings must be a JSON mapping, got {type(settings).__name__}")
    own = sorted(set(settings) & set(OWN_FLAGS))
    if own:
        raise InputError(f"--method-settings may not set {', '.join(own)}: rank-eval sets "
                         f"{'them' if len(own) > 1 else 'it'} ({', '.join(OWN_FLAGS[k] for k in own)})")
    known = set().union(*(settings_of(method_class("condense", n)) for n in condense))
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InputError(f"--method-settings: {', '.join(unknown)} is not a setting of "
                         f"{', '.join(condense) if condense else 'any --condense method (none given)'}")
    for name in condense:
        try:
            proxy_method("condense", name, 1, 0, "cpu", settings)
        except InputError as e:
            raise InputError(f"--method-settings ({name}): {e}") from None
    return settings


def proxy_method(kind: str, name: str, ipc: int, seed: int, device: str, settings: dict):
    """The method that builds proxy `kind` `name`: `ipc` and `seed` from rank-eval, the
    `settings` it has."""
    given = applicable(method_class(kind, name), {"device": device, "progress": "off", **settings})
    return make_method(kind, name, ipc=ipc, seed=seed, **given)


def built_proxies(folder: str, data: ImageData, methods: list[tuple[str, str]], ipc: int, seed: int,
                  device: str, settings: dict) -> list[tuple[str, str]]:
    """(name, path) of the sets of `methods` ((kind, name): the random and herding subsets,
    condensers such as dm, idm, m3d) with `ipc` images per class and `seed`, in
    `folder/proxies/`, built there by the first process that needs each (their build time, in
    their metadata, counts in the proxy's cost). `settings` go to the methods that have them. A
    build that fails removes the sets this call built."""
    out, made = [], []
    folder = os.path.join(folder, "proxies")
    fresh = not os.path.isdir(folder)
    try:
        for kind, name in methods:
            path = os.path.join(folder, f"{name}-ipc{ipc}-seed{seed}.pt")
            os.makedirs(folder, exist_ok=True)
            with held(path + ".lock"):
                if not os.path.exists(path):
                    proxy_method(kind, name, ipc, seed, device, settings).condense(data).save(path)
                    made.append(path)
            out.append((f"{name} subset ipc{ipc}" if kind == "select" else "", path))
    except Exception:
        for path in made:
            os.remove(path)
        if fresh and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
        raise
    return out


def run_rank_eval(data: str, proxies: Sequence[str] = (), *, root: str | None = None, download: bool = False,
                  condense: Sequence[str] = (), ipc: int | None = None, method_settings: dict | None = None,
                  space: str = "small", archs: int = 20, full_epochs: int = 100,
                  baselines: Sequence[str] = BASELINES, zero_cost: Sequence[str] = ZERO_COST,
                  training: TrainSettings = TrainSettings(), seed: int = 0, device: str = "auto",
                  out: str | None = None, layout: Layout = Layout(),
                  announce: Callable[[str, dict], None] | None = None) -> RankEvalOutcome:
    """Rank `archs` architectures of `space` (drawn from `seed`) by whole-data training
    (`full_epochs`) and by each proxy: the `proxies` files, the sets of the `condense` methods
    (with `method_settings`) and the `baselines` rank-eval builds with `ipc` images per class
    (default: the first file's), and the `zero_cost` scores, every network trained with
    `training`. The run's units live in `out` (a temporary folder if None: one process only);
    `announce(key, row)` follows each finished architecture, in the process that ran it."""
    baselines, zero_cost, condense = list(baselines), list(zero_cost), list(condense)
    check_baselines(baselines)
    check_zero_cost(zero_cost)
    for name in condense:
        method_class("condense", name)  # an unknown condenser, named, before any work
    if not (proxies or condense or baselines or zero_cost):
        raise InputError("nothing to compare: give --proxy FILE.pt, --condense NAMES, --baselines or --zero-cost")
    if ipc is None and not proxies and (condense or baselines):
        raise InputError("--condense and --baselines need --ipc (or a --proxy file to take it from)")
    settings = check_method_settings(condense, method_settings or {})
    if out is None and (layout.workers > 1 or layout.shards > 1):
        raise InputError("--workers and --shard need --out (the folder every process writes into)")
    if out is not None:
        check_output_folder(out, "--out", [("--data", data), ("--space", space), *(("--proxy", p) for p in proxies)])
    full_cfg = replace(training, epochs=full_epochs)
    sampled = sample_architectures(load_space(space), archs, seed)
    sets = [ReducedSet.load(path) for path in proxies]  # every file is checked before any work
    ipc = ipc if ipc is not None or not sets else sets[0].ipc
    real = load_data(data, root, download)
    real.check_test_split()  # every architecture is tested on it
    for s in sets:
        s.for_data(real)  # the data's classes and image shape
    built = [("condense", n) for n in condense] + [("select", n) for n in SELECTED if n in baselines]
    for kind, name in built:
        proxy_method(kind, name, ipc, seed, device, settings).validate(real)
    record = {"data": data, "root": root, "archs": sampled, "seed": seed, "training": asdict(training),
              "full_epochs": full_epochs, "proxies": [file_digest(p) for p in proxies], "baselines": baselines,
              "zero_cost": zero_cost, "ipc": ipc, "condense": condense, "method_settings": settings}
    units = {f"arch{i:03d}": {"arch": arch} for i, arch in enumerate(sampled)}
    with nullcontext(out) if out is not None else tempfile.TemporaryDirectory() as folder:
        sweep = Sweep(folder, record, flag="--out")
        sweep.plan(units, {"space": space, "proxy_files": list(proxies)})  # the first write
        try:
            files = [("", p) for p in proxies] + built_proxies(folder, real, built, ipc, seed, device, settings)
        except Exception:
            sweep.withdraw()
            raise
        work = ArchUnit((data, root, download), files, "early" in baselines, ipc, training, full_cfg, seed, zero_cost)
        problems = run(sweep, list(units), work, layout, device, announce)
        with sweep.report_lock():
            done = sweep.results(list(units))
            missing = [k for k in units if k not in done]
            if not done:
                return RankEvalOutcome(None, missing, problems)
            result = rank_eval(list(done.values()), work.proxies()[1], full_cfg, seed, real, zero_cost)
            result.update(space=space, proxy_files=list(proxies), missing=missing)
            if out is not None:
                atomic_write_text(json.dumps(result, indent=2, default=str) + "\n", os.path.join(out, "result.json"))
    return RankEvalOutcome(result, missing, problems)
