"""`dcapps nas init`: an NNI experiment folder that `nnictl create --config DIR/config.yml` runs.

The folder holds everything the trial needs: `config.yml` (NNI v2 format, local training
service), `search_space.json`, `trial.json` (data spec and training settings) and `proxy.pt` (a
copy of the proxy set). Paths inside are relative to the folder, so moving to another of NNI's
training services is a change of `trainingService` only (the trial command names this Python,
which must exist where the trials run).
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import asdict

import yaml

from condense_core import InputError, TrainConfig
from condense_core.synthetic import atomic_write_text

from .space import architectures, load_space, to_nni

TUNERS = {"grid": "GridSearch", "random": "Random", "tpe": "TPE", "evolution": "Evolution"}
PROXY_FILE = "proxy.pt"
SETUP_FILE = "trial.json"


def tuner_config(tuner: str, seed: int, max_trials: int) -> dict:
    """NNI's `tuner` section (Anneal is left out: it breaks on numpy 2)."""
    if tuner not in TUNERS:
        raise InputError(f"unknown tuner {tuner!r}: choose from {', '.join(TUNERS)}")
    args = {"grid": {}, "random": {"seed": seed}, "tpe": {"optimize_mode": "maximize", "seed": seed},
            "evolution": {"optimize_mode": "maximize", "population_size": max(2, min(32, max_trials))}}
    out = {"name": TUNERS[tuner]}
    if args[tuner]:
        out["classArgs"] = args[tuner]
    return out


def experiment_config(name: str, tuner: dict, max_trials: int, concurrency: int) -> dict:
    """The `config.yml` contents (relative paths resolve against the config file's folder)."""
    return {
        "experimentName": name,
        "searchSpaceFile": "search_space.json",
        "trialCommand": f"{shlex.quote(sys.executable)} -m nas.trial --setup {SETUP_FILE}",
        "trialCodeDirectory": ".",
        "trialConcurrency": concurrency,
        "maxTrialNumber": max_trials,
        "experimentWorkingDirectory": "nni-experiments",
        "tuner": tuner,
        "trainingService": {"platform": "local", "useActiveGpu": False},
    }


def data_spec(spec: str) -> str:
    """A file or folder spec made absolute (trials run elsewhere); names kept as they are."""
    return os.path.abspath(spec) if os.path.exists(spec) else spec


def init_experiment(out: str, data: str, proxy: str, train: TrainConfig = TrainConfig(),
                    root: str | None = None, download: bool = False, space: str = "small",
                    tuner: str = "tpe", max_trials: int = 20, concurrency: int = 1, seed: int = 0,
                    device: str = "auto") -> dict:
    """Check everything (proxy, data, space, numbers, device, the folder), then write the
    experiment folder `out`.

    Nothing is written until every check has passed: what every trial would refuse is refused
    here. Returns a summary of what was written.
    """
    from condense_core import SyntheticSet, load_data
    from condense_core.outputs import check_output_file, check_output_folder
    from condense_core.settings import DEVICE, SEED_MAX, check_form

    for key, value, low, high in (("--max-trials", max_trials, 1, float("inf")),
                                  ("--concurrency", concurrency, 1, float("inf")), ("--seed", seed, 0, SEED_MAX)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    check_form(device, DEVICE, "--device")  # trials run elsewhere: its form only, not this machine's GPUs
    written = [os.path.join(out, name) for name in (PROXY_FILE, SETUP_FILE, "search_space.json", "config.yml")]
    check_output_folder(out, "--out", [("--data", data), ("--space", space)])
    for path in written:  # the folder's own files must not be what the run reads (--proxy, --space)
        check_output_file(path, "--out", [("--proxy", proxy), ("--space", space)])
    choices = load_space(space)
    tuner_section = tuner_config(tuner, seed, max_trials)
    syn = SyntheticSet.load(proxy)
    real = load_data(data, root, download)
    syn.for_data(real)  # classes and image shape must match the data
    real.check_test_split()  # every trial tests on it
    setup = {"data": data_spec(data), "root": os.path.abspath(root) if root else None,
             "proxy": PROXY_FILE, "seed": seed, "device": device,
             "train": asdict(train),
             "space": space, "tuner": tuner, "proxy_source": os.path.abspath(proxy),
             "proxy_meta": {k: syn.meta.get(k) for k in ("method", "ipc", "seed", "iterations", "data")}}
    name = "dcapps-nas-" + os.path.basename(os.path.abspath(out))
    config = experiment_config(name, tuner_section, max_trials, concurrency)
    os.makedirs(out, exist_ok=True)
    syn.save(os.path.join(out, PROXY_FILE))
    atomic_write_text(json.dumps(setup, indent=2) + "\n", os.path.join(out, SETUP_FILE))
    atomic_write_text(json.dumps(to_nni(choices), indent=2) + "\n", os.path.join(out, "search_space.json"))
    atomic_write_text(yaml.safe_dump(config, sort_keys=False), os.path.join(out, "config.yml"))
    return {"dir": out, "config": os.path.join(out, "config.yml"), "architectures": len(architectures(choices)),
            "tuner": TUNERS[tuner], "max_trials": max_trials, "proxy_images": len(syn)}
