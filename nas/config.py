"""`dcapps nas init`: an NNI experiment folder that `nnictl create --config DIR/config.yml` runs.

The folder holds everything the trial needs: `config.yml` (NNI v2 format), `search_space.json`,
`trial.json` (data spec and training settings) and `proxy.pt` (a copy of the proxy set). Paths
inside are relative to the folder, which NNI uploads as the trial code directory, so moving to
another of NNI's training services is a change of `trainingService` only. The trials run on this
machine (`local`) or on others over SSH (`remote`: NNI's `machineList`); there the trial command
and NNI's own helper processes use the Python given (by default the one running `nas init`,
which must then exist at the same path on every machine), a `.npz` data spec travels in the
folder, and `.nniignore` keeps NNI's own logs and databases (`nni-experiments/`) out of the upload.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import asdict
from typing import NamedTuple, Sequence

import yaml

from condense_core import InputError, TrainSettings
from condense_core.reduced import atomic_write, atomic_write_text

from .space import architectures, load_space, to_nni

TUNERS = {"grid": "GridSearch", "random": "Random", "tpe": "TPE", "evolution": "Evolution"}
PROXY_FILE = "proxy.pt"
SETUP_FILE = "trial.json"
DATA_FILE = "data.npz"  # a .npz data spec's copy, for trials on other machines
IGNORE_FILE = ".nniignore"
WORKING_DIR = "nni-experiments"
SERVICES = ("local", "remote")
UPLOAD_LIMIT = 300 * 1024 ** 2  # NNI refuses to upload a trial code directory above 300 MB
DEFAULT_SSH_KEY = "~/.ssh/id_rsa"  # NNI's own default


class Machine(NamedTuple):
    """One SSH login of NNI's remote training service."""
    user: str
    host: str
    port: int = 22


_MACHINE = re.compile(r"(?P<user>[^@\s/]+)@(?P<host>\[[0-9A-Fa-f:.]+\]|[^@\s:/\[\]]+)(?::(?P<port>\d+))?")


def parse_machine(text: str) -> Machine:
    """`USER@HOST[:PORT]` (port 22 unless given; an IPv6 address in brackets) -> Machine."""
    found = _MACHINE.fullmatch(text) if isinstance(text, str) else None
    port = int(found["port"]) if found and found["port"] else 22
    if not found or not 0 < port < 65536:
        raise InputError(f"--machine must be USER@HOST or USER@HOST:PORT (port 1-65535), got {text!r}")
    return Machine(found["user"], found["host"].strip("[]"), port)


def training_service(platform: str = "local", machines: Sequence[str] = (), ssh_key: str | None = None,
                     python: str | None = None) -> dict:
    """NNI's `trainingService` section: this machine, or `machines` over SSH with `ssh_key`.

    On remote machines NNI puts `python`'s folder first on the PATH (its `pythonPath`) for its
    own helper processes, which need NNI installed: the trials' Python environment is theirs too.
    """
    if platform not in SERVICES:
        raise InputError(f"unknown training service {platform!r}: choose from {', '.join(SERVICES)}")
    if platform == "local":
        if machines or ssh_key is not None:
            raise InputError("--machine and --ssh-key need --training-service remote")
        return {"platform": "local", "useActiveGpu": False}
    if not machines:
        raise InputError("--training-service remote needs at least one --machine USER@HOST[:PORT]")
    listed = [parse_machine(m) for m in machines]
    twice = sorted({f"{m.user}@{m.host}:{m.port}" for m in listed if listed.count(m) > 1})
    if twice:
        raise InputError(f"--machine {twice[0]} is given twice")
    key = os.path.abspath(os.path.expanduser(DEFAULT_SSH_KEY if ssh_key is None else ssh_key))
    if not os.path.isfile(key):
        raise InputError(f"--ssh-key {key} is not a file (the private key NNI logs in to the machines with)")
    python_dir = os.path.dirname(python or sys.executable)
    return {"platform": "remote",
            "machineList": [{"host": m.host, "port": m.port, "user": m.user, "sshKeyFile": key,
                             "pythonPath": python_dir} for m in listed]}


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


def experiment_config(name: str, tuner: dict, max_trials: int, concurrency: int,
                      service: dict | None = None, python: str | None = None,
                      manager_ip: str | None = None) -> dict:
    """The `config.yml` contents (relative paths resolve against the config file's folder).

    `python` (default: this one) runs the trials; `manager_ip` is the address remote machines
    reach the NNI manager at (default: NNI's guess, this machine's outward address).
    """
    config = {
        "experimentName": name,
        "searchSpaceFile": "search_space.json",
        "trialCommand": f"{shlex.quote(python or sys.executable)} -m nas.trial --setup {SETUP_FILE}",
        "trialCodeDirectory": ".",
        "trialConcurrency": concurrency,
        "maxTrialNumber": max_trials,
        "experimentWorkingDirectory": WORKING_DIR,
        "tuner": tuner,
        "trainingService": service or training_service(),
    }
    if manager_ip:
        config["nniManagerIp"] = manager_ip
    return config


def data_spec(spec: str) -> str:
    """A file or folder spec made absolute (trials run elsewhere); names kept as they are."""
    return os.path.abspath(spec) if os.path.exists(spec) else spec


def init_experiment(out: str, data: str, proxy: str, train: TrainSettings = TrainSettings(),
                    root: str | None = None, download: bool = False, space: str = "small",
                    tuner: str = "tpe", max_trials: int = 20, concurrency: int = 1, seed: int = 0,
                    device: str = "auto", platform: str = "local", machines: Sequence[str] = (),
                    ssh_key: str | None = None, python: str | None = None,
                    manager_ip: str | None = None) -> dict:
    """Check everything (proxy, data, space, numbers, device, training service, the folder), then
    write the experiment folder `out`.

    Nothing is written until every check has passed: what every trial would refuse is refused
    here. `platform` `remote` runs the trials on `machines` (`USER@HOST[:PORT]`) over SSH with
    the private key `ssh_key`; `python` is the trials' Python there (default: this one, at the
    same path). Returns a summary of what was written.
    """
    from condense_core import ReducedSet, load_data
    from condense_core.outputs import check_output_file, check_output_folder
    from condense_core.settings import DEVICE, SEED_MAX, check_form

    for key, value, low, high in (("--max-trials", max_trials, 1, float("inf")),
                                  ("--concurrency", concurrency, 1, float("inf")), ("--seed", seed, 0, SEED_MAX)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    check_form(device, DEVICE, "--device")  # trials run elsewhere: its form only, not this machine's GPUs
    python = _check_python(python, platform != "local")
    service = training_service(platform, machines, ssh_key, python)
    remote = service["platform"] != "local"
    if manager_ip is not None and (not remote or not isinstance(manager_ip, str) or not manager_ip.strip()
                                   or any(c.isspace() for c in manager_ip)):
        raise InputError("--manager-ip needs --training-service remote and an address, got "
                         f"{manager_ip!r}")
    copy_data = remote and os.path.isfile(data)  # a .npz travels with the folder; names work anywhere
    names = (PROXY_FILE, SETUP_FILE, "search_space.json", "config.yml", IGNORE_FILE) + ((DATA_FILE,) * copy_data)
    written = [os.path.join(out, name) for name in names]
    check_output_folder(out, "--out", [("--data", data), ("--space", space)])
    for path in written:  # the folder's own files must not be what the run reads (--proxy, --space)
        check_output_file(path, "--out", [("--proxy", proxy), ("--space", space), ("--data", data)])
    if copy_data and os.path.getsize(data) + os.path.getsize(proxy) > UPLOAD_LIMIT:
        raise InputError(f"--data {data} and the proxy exceed the 300 MB NNI uploads to remote machines")
    choices = load_space(space)
    tuner_section = tuner_config(tuner, seed, max_trials)
    syn = ReducedSet.load(proxy)
    real = load_data(data, root, download)
    syn.for_data(real)  # classes and image shape must match the data
    real.check_test_split()  # every trial tests on it
    setup = {"data": DATA_FILE if copy_data else data_spec(data), "data_in_folder": copy_data,
             "data_source": os.path.abspath(data) if copy_data else None,
             "root": os.path.abspath(root) if root else None,
             "proxy": PROXY_FILE, "seed": seed, "device": device,
             "train": asdict(train),
             "space": space, "tuner": tuner, "proxy_source": os.path.abspath(proxy),
             "proxy_meta": {k: syn.meta.get(k) for k in ("method", "ipc", "seed", "iterations", "data")}}
    name = "dcapps-nas-" + os.path.basename(os.path.abspath(out))
    config = experiment_config(name, tuner_section, max_trials, concurrency, service, python, manager_ip)
    os.makedirs(out, exist_ok=True)
    syn.save(os.path.join(out, PROXY_FILE))
    if copy_data:
        atomic_write(os.path.join(out, DATA_FILE), lambda tmp: shutil.copyfile(data, tmp))
    # NNI packs the folder for remote machines: not its own experiments kept inside it
    atomic_write_text(f"/{WORKING_DIR}/\n", os.path.join(out, IGNORE_FILE))
    atomic_write_text(json.dumps(setup, indent=2) + "\n", os.path.join(out, SETUP_FILE))
    atomic_write_text(json.dumps(to_nni(choices), indent=2) + "\n", os.path.join(out, "search_space.json"))
    atomic_write_text(yaml.safe_dump(config, sort_keys=False), os.path.join(out, "config.yml"))
    return {"dir": out, "config": os.path.join(out, "config.yml"), "architectures": len(architectures(choices)),
            "tuner": TUNERS[tuner], "max_trials": max_trials, "proxy_images": len(syn),
            "training_service": service["platform"],
            "machines": [f"{m['user']}@{m['host']}:{m['port']}" for m in service.get("machineList", [])]}


def _check_python(python: str | None, remote: bool) -> str:
    """The trials' Python: this one by default; another must be an absolute path (on remote
    machines it cannot be checked from here) and, for local trials, an executable file."""
    if python is None:
        return sys.executable
    if not isinstance(python, str) or not os.path.isabs(python) or python.endswith("/"):
        raise InputError(f"--python must be the absolute path of a Python executable, got {python!r}")
    if not remote and not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise InputError(f"--python {python} is not an executable file")
    return python
