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
from condense_core.errors import shown
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


# What may stand in a remote machine's command lines, where NNI puts these values unquoted
# (`PATH="<python dir>:..."`, `<python dir>/python --version` over SSH): user and host in their
# RFC forms, an IP literal for the manager, absolute paths without shell metacharacters.
USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}")  # POSIX portable user names (useradd's 32)
HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # RFC 1123
SAFE_PATH = re.compile(r"/[A-Za-z0-9._+,@/-]*")  # absolute; letters, digits and . _ + , @ / - only
_MACHINE = re.compile(r"(?P<user>[^@]*)@(?P<host>\[[^\]]*\]|[^:\[\]@]*)(?::(?P<port>[0-9]{1,5}))?")


def parse_machine(text: str) -> Machine:
    """`USER@HOST[:PORT]` (port 22 unless given; an IPv6 address in brackets) -> Machine. The user
    is a POSIX portable user name; the host an RFC 1123 host name or an IP address."""
    found = _MACHINE.fullmatch(text) if isinstance(text, str) else None
    port = int(found["port"]) if found and found["port"] else 22
    if not found or not 0 < port < 65536:
        raise InputError(f"--machine must be USER@HOST or USER@HOST:PORT (port 1-65535), got {shown(text)}")
    user, host = found["user"], found["host"]
    if not USER.fullmatch(user):
        raise InputError(f"--machine {shown(text)}: the user must be a POSIX user name (letters, digits, '.', "
                         "'_', '-', not starting with '-', at most 32), got " + shown(user))
    if host.startswith("["):
        return Machine(user, check_address(host[1:-1], f"--machine {shown(text)}: the host", version=6), port)
    if re.fullmatch(r"[0-9.]+", host):
        return Machine(user, check_address(host, f"--machine {shown(text)}: the host", version=4), port)
    if not (len(host) <= 253 and all(HOST_LABEL.fullmatch(label) for label in host.split("."))):
        raise InputError(f"--machine {shown(text)}: the host must be a host name (RFC 1123: letters, digits and "
                         "'-' in dot-separated labels) or an IP address ([...] for IPv6)")
    return Machine(user, host, port)


def check_address(text: str, where: str, version: int | None = None) -> str:
    """`text` if it is an IP address literal (of `version`, if given), without a zone."""
    import ipaddress

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or (version is not None and address.version != version) or "%" in text:
        kind = f"an IPv{version}" if version else "an IP"
        raise InputError(f"{where} must be {kind} address (without a zone), got {shown(text)}")
    return text


def check_remote_path(path: str, where: str) -> str:
    """`path` if it can stand unquoted in a remote shell's command line: absolute, of letters,
    digits and `. _ + , @ / -` only (no space, quote, `$`, backtick, `;`, `|`, `&`, ...)."""
    if not isinstance(path, str) or not SAFE_PATH.fullmatch(path) or path.endswith("/"):
        raise InputError(f"{where} must be an absolute path of letters, digits and . _ + , @ / - only (it goes "
                         f"into command lines on the remote machines), got {shown(path)}")
    return path


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
        raise InputError(f"--ssh-key {shown(key)} is not a file (the private key NNI logs in to the machines with)")
    python_dir = os.path.dirname(check_remote_path(python or sys.executable, "--python"))
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
    if manager_ip is not None:
        if not remote:
            raise InputError("--manager-ip needs --training-service remote")
        check_address(manager_ip, "--manager-ip")
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
        raise InputError(f"--python must be the absolute path of a Python executable, got {shown(python)}")
    if not remote and not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise InputError(f"--python {python} is not an executable file")
    return python
