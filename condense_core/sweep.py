"""Independent units of a benchmark run, shared out over processes and machines.

A sweep is an output folder with one JSON file per finished unit (`DIR/units/KEY.json`, written
atomically) and `DIR/sweep.json`: the settings every unit was made with, which a run of other
settings is refused, and the units planned so far (each with its parameters), which says what
is still missing. Any number of processes may work on one folder at once, on one machine or on
several sharing the file system: local workers (`Layout.workers`), the ranks of a torchrun job,
and shards started by a scheduler (`Layout.shard` of `Layout.shards`). Shards split the planned
units statically (unit i belongs to shard i % shards); the processes of a shard take its units
in order, each unit only while holding its claim, an `fcntl.flock` on `DIR/claims/KEY.lock`
that records the holder's pid and host. The kernel drops the claim of a process that dies, so a
killed worker leaves its unit unfinished and the next run on the folder takes it over.

A unit's result depends only on the settings and its parameters (its work gets the parameters
and a device, never a worker number, rank or shard), so the results are the same whatever the
layout. Each unit file carries the digest of the settings it was made under: a unit copied in
from another run, or left over from other settings, is refused by name and never merged. A
folder is checked whole (its record, the finished units, the structure: `units/` a folder) before
`plan` writes in it, and a folder that is not a run is refused before anything is written there.
Used by `dcapps cl run`, `dcapps nas rank-eval` and `benchmarks/condense_table.py`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from .errors import InputError
from .outputs import drop_lock, held, remove_temporaries, take_lock
from .reduced import atomic_write_text
from .settings import python_name

RANKS_WAIT = timedelta(days=7)  # under torchrun, how long a rank that is done waits for the others
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")  # a unit's key: also its file names
SWEEP_FILE = "sweep.json"
PARTS = ("units", "claims")  # the folder's sub-folders: finished units, claims of units in work
DIGEST = "settings_digest"  # a unit file's key holding `settings_digest` of the settings it was made under


@dataclass(frozen=True)
class Layout:
    """How this command shares the work: `workers` local processes, on shard `shard` (0-based)
    of `shards`."""

    workers: int = 1
    shard: int = 0
    shards: int = 1

    def share(self, keys: list[str]) -> list[str]:
        """The planned units that are this shard's."""
        return [key for i, key in enumerate(keys) if i % self.shards == self.shard]


def parse_shard(text: str, spell: Callable[[str], str] = python_name) -> tuple[int, int]:
    """`I/N` (1 <= I <= N, as a scheduler's array index counts) as the 0-based (shard, shards);
    an error names the setting as `spell("shard")` (the caller's spelling)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise InputError(f"{spell('shard')} must be I/N with 1 <= I <= N (e.g. 2/4), got {text!r}")
    return int(m.group(1)) - 1, int(m.group(2))


Work = Callable[[dict, str], dict]  # (unit parameters, device) -> the unit's result
Announce = Callable[[str, dict], None]  # (key, result), after each unit, in the process that ran it


class Sweep:
    """The units of one output folder: their plan, results and claims."""

    def __init__(self, folder: str, settings: dict | None = None, flag: str = "output folder"):
        self.folder, self.flag = folder, flag  # `flag`: how the caller names the folder (`--out`)
        self.settings = json.loads(json.dumps(settings or {}))  # as it reads back from the file
        self.digest: str | None = None  # `settings_digest` of the folder's recorded settings, once read
        self._made: list[str] = []  # what `plan` made here, for `withdraw`: the record, then folders
        self._planned: dict | None = None  # the units of the record `plan` made

    def path(self, key: str, part: str = "units", ext: str = ".json") -> str:
        return os.path.join(self.folder, part, key + ext)

    def plan(self, units: dict[str, dict], info: dict | None = None, check=None) -> None:
        """Record `units` (key -> parameters, in order) as planned, after those already planned,
        with `info` (what a report needs beyond the settings). The folder is checked first, whole:
        its structure, that it holds no results of other settings (naming the settings that
        differ), and that every finished unit, planned before or now, is whole (`check`) and of
        these settings; a refusal writes nothing. Made once by whichever process comes first;
        processes starting together see one file."""
        bad = [key for key in units if not KEY.fullmatch(key)]
        if bad:
            raise ValueError(f"unit keys must match {KEY.pattern}: {bad}")
        self._check_structure(required=False)
        missing = []
        folder = os.path.abspath(self.folder)
        while not os.path.exists(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(self.folder, exist_ok=True)
        with held(os.path.join(self.folder, ".sweep.lock")):
            record = self.record(required=False)
            made = record is None
            if made:
                record = {"settings": self.settings, "units": {}, "info": {}}
                self.digest = settings_digest(self.settings)
            else:
                changed = sorted(key for key in set(self.settings) | set(record["settings"])
                                 if self.settings.get(key) != record["settings"].get(key))
                if changed:
                    raise InputError(f"{self.folder} holds results made with different settings "
                                     f"({', '.join(changed)}, recorded in {self.file}); use another "
                                     f"{self.flag} or delete it")
            record["units"] = {**record["units"], **{key: unit for key, unit in json.loads(json.dumps(units)).items()
                                                     if key not in record["units"]}}
            record["info"] = {**record["info"], **(info or {})}
            self._finished(list(record["units"]), record["units"], check)
            atomic_write_text(json.dumps(record, indent=1), self.file)
        if made:
            self._made, self._planned = [self.file, *missing], record["units"]

    def withdraw(self) -> None:
        """Undo what `plan` made for a command refused after it (a check that could only come
        later): the record, if `plan` made it and no unit has finished or been planned since, and
        the folders it made, if they are left empty."""
        made, self._made = self._made, []
        if not made:
            return
        with held(os.path.join(self.folder, ".sweep.lock")):
            units = os.path.join(self.folder, "units")
            record = self.record(required=False)
            untouched = (record is not None and record["units"] == self._planned
                         and not (os.path.isdir(units) and os.listdir(units)))
            if untouched:
                os.remove(self.file)
        if untouched:
            for folder in [os.path.join(self.folder, part) for part in PARTS] + made[1:]:
                try:
                    os.rmdir(folder)  # only if empty
                except OSError:
                    pass

    @property
    def file(self) -> str:
        return os.path.join(self.folder, SWEEP_FILE)

    def record(self, required: bool = True) -> dict | None:
        """The folder's `sweep.json`, checked (None if there is none and not `required`: a folder
        that is not a run, or not a folder, is an `InputError` naming it); sets `digest`."""
        self._check_structure(required)
        path = self.file
        if not os.path.exists(path):
            if required:
                raise InputError(f"{self.folder}: no {SWEEP_FILE} (not the output folder of a run)")
            return None
        record = read_json(path)
        if (not isinstance(record, dict) or not isinstance(record.get("settings"), dict)
                or not isinstance(record.get("units"), dict) or not isinstance(record.get("info"), dict)
                or not all(isinstance(unit, dict) for unit in record["units"].values())):
            raise InputError(f"{path}: not the record of a run (damaged or edited): delete it with the folder's "
                             f"units, or give another {self.flag}")
        self.digest = settings_digest(record["settings"])
        return record

    def _check_structure(self, required: bool) -> None:
        """The folder, if there is one (or must be: `required`), is a folder whose parts are folders."""
        if not os.path.isdir(self.folder):
            if os.path.lexists(self.folder):
                raise InputError(f"{self.folder} is not a folder (not the output folder of a run)")
            if required:
                raise InputError(f"{self.folder}: no such folder (not the output folder of a run)")
            return
        for part in PARTS:
            path = os.path.join(self.folder, part)
            if os.path.lexists(path) and not os.path.isdir(path):
                raise InputError(f"{path} is not a folder (where the run keeps its {part}): the run's folder is "
                                 f"damaged; remove it, or give another {self.flag}")

    def result(self, key: str, check: Callable[[str, dict, dict], None] | None = None,
               params: dict | None = None) -> dict | None:
        """Unit `key`'s result if it is finished: made under the recorded settings (its digest)
        and checked by `check(path, result, params)` (which raises `InputError` on a damaged one)."""
        path = self.path(key)
        if not os.path.exists(path):
            return None
        result = read_json(path)
        if not isinstance(result, dict):
            raise InputError(f"{path}: not a finished unit (damaged or edited): delete it to run the unit "
                             f"again, or give another {self.flag}")
        if self.digest is None:
            self.record()
        if result.get(DIGEST) != self.digest:
            raise InputError(f"{path}: made under other settings than {self.file} records (copied from another "
                             f"run, or left over): delete it to run the unit again, or give another {self.flag}")
        result = {key: value for key, value in result.items() if key != DIGEST}
        if check is not None:
            check(path, result, params or {})
        return result

    def results(self, keys: list[str], check=None) -> dict[str, dict]:
        """The finished units among `keys`, checked, in the order of `keys`."""
        return self._finished(keys, self.record()["units"], check)

    def _finished(self, keys: list[str], units: dict, check) -> dict[str, dict]:
        found = {key: self.result(key, check, units.get(key)) for key in keys}
        return {key: result for key, result in found.items() if result is not None}

    def work(self, keys: list[str], work: Work, device: str, announce: Announce | None = None,
             check=None) -> None:
        """Run, in this process and in order, each of `keys` that is neither finished nor claimed
        by a live process; `announce(key, result)` after each."""
        units = self.record()["units"]
        for key in keys:
            if self.result(key, check, units[key]) is not None:
                continue
            claim = self.path(key, "claims", ".lock")
            os.makedirs(os.path.dirname(claim), exist_ok=True)
            fd, _ = take_lock(claim)
            if fd is None:
                continue  # a live process has it
            try:
                if self.result(key, check, units[key]) is not None:
                    continue  # finished while we looked
                self._remove_temporaries(key)
                result = work(units[key], device)
                atomic_write_text(json.dumps({**result, DIGEST: self.digest}, indent=1), self.path(key))
            finally:
                drop_lock(claim, fd)
            if announce is not None:
                announce(key, result)

    def _remove_temporaries(self, key: str) -> None:
        """The temporary files a killed holder of `key`'s claim left in the folder's sub-folders
        (those of the unit's files, named after its key)."""
        folders = [os.path.join(self.folder, d) for d in os.listdir(self.folder)
                   if os.path.isdir(os.path.join(self.folder, d))]
        remove_temporaries(folders, lambda name: name.startswith(f".{key}."))

    def report_lock(self):
        """A context holding the folder's report lock (waiting for it): whoever writes the
        report reads the units under it, so the last report written is the most complete. A
        folder that is not a run is refused first, so nothing is left in it."""
        self.record()
        return held(os.path.join(self.folder, ".report.lock"))


def settings_digest(settings: dict) -> str:
    """What identifies a run's settings in its unit files: the SHA-256 of their canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_json(path: str) -> object:
    """The JSON in `path`; a file cut short or edited by hand is an input error naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise InputError(f"{path}: not readable JSON ({type(e).__name__}; a run cut short?): delete it, "
                         "or give another output folder") from None


def run(sweep: Sweep, keys: list[str], work: Work, layout: Layout, device: str,
        announce: Announce | None = None, check=None) -> list[str]:
    """Work on this layout's share of `keys` (all planned): in this process, or in
    `layout.workers` spawned ones. Returns what went wrong in a worker (one line each; empty if
    nothing), after all of them ended. Under torchrun every rank works through the same share,
    claim by claim, and the ranks join their process group at the end and wait there for each
    other (not before: a unit's training and condensation must run whole in its process, and
    Avalanche and the methods would share their work out over a group they found)."""
    import torch.distributed as dist

    from .distributed import init_from_env, launched_by_torchrun

    mine = layout.share(keys)
    first = int(os.environ.get("LOCAL_RANK", "0")) * layout.workers
    problems = []
    if layout.workers == 1:
        _configure(device, first)
        sweep.work(mine, work, worker_device(device, first), announce, check)
    else:
        import multiprocessing as mp

        _quiet_resource_tracker()
        ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA or threads
        procs = [ctx.Process(target=_worker, args=(sweep, mine, work, device, first + w, announce, check),
                             name=f"worker {w + 1}")
                 for w in range(layout.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        for p in procs:
            if p.exitcode:
                how = f"killed by signal {-p.exitcode}" if p.exitcode < 0 else f"exit status {p.exitcode}"
                problems.append(f"{p.name} ended early ({how}); its unit is unfinished")
    if launched_by_torchrun():
        init_from_env(device, RANKS_WAIT)
        dist.barrier()
    return problems


def _quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (unless it runs) without its warning about leaked
    semaphores. A spawned worker that is killed leaves the semaphores its libraries made (tqdm's
    lock); the tracker removes them when the command ends, as it should, but then warns in two
    lines below the command's one-line message. The tracker is a process of its own that takes
    its warning filters from the command line (`-W`), so the filter goes there."""
    import sys
    from multiprocessing import resource_tracker

    option = "ignore:resource_tracker:UserWarning:multiprocessing.resource_tracker"
    sys.warnoptions.append(option)
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions.remove(option)


def _worker(sweep, keys, work, device, slot, announce, check) -> None:
    _configure(device, slot)
    try:
        sweep.work(keys, work, worker_device(device, slot), announce, check)
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: the command line says it once
        raise SystemExit(130) from None


def _configure(device: str, slot: int) -> None:
    """On a CPU, one thread per process (unless OMP_NUM_THREADS says otherwise), whatever the
    layout: PyTorch's CPU kernels may round differently with another number of threads (the
    demo's lcmatreplay units end up to 0.2 points apart with 2 threads and with 1), so a unit's
    result would depend on how many workers shared the cores. More cores: more workers."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ and worker_device(device, slot).startswith("cpu"):
        torch.set_num_threads(1)


def worker_device(device: str, slot: int) -> str:
    """The device of local process `slot`: `cuda` (or `auto` on a machine with GPUs) spreads the
    processes over the GPUs round robin; a device with an index, or the CPU, is kept."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{slot % torch.cuda.device_count()}"
    return "cpu" if device == "auto" else device
