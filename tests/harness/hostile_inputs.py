"""The hostile inputs that `tests/test_hostile.py` and the campaign (`hostile_campaign.py`) both
build, and the one check of a refusal they both apply (`refusal_problems`).

Everything is made from the bundled digits with tiny settings: a valid set file and copies of it
(or of a checkpoint) with fields changed, `.npz` files, a decompression-bomb PNG, `cl run`
configs, NNI experiment databases, replay memories.
"""
from __future__ import annotations

import json
import sqlite3
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import yaml

from condense_core import ReducedSet
from condense_core.registry import methods
from condense_core.settings import flag_name, settings_of

TINY = ["--model-options", '{"width": 8}', "--device", "cpu", "--quiet"]
# the cheapest value of each setting that makes a method's work long, whichever method has it
CHEAP = {"iterations": "4", "batch_real": "8", "pool_size": "1", "net_epochs": "1", "queue_size": "2",
         "train_steps": "1", "train_batch": "32", "selection_epochs": "1"}
TINY_CL = {"data": "digits", "experiences": 2, "seeds": [0], "model": {"name": "ConvNet", "width": 8, "depth": 1},
           "train": {"epochs": 1, "batch_size": 128}, "memory": {"ipc": 1},
           "methods": {"iterations": 2, "batch_real": 8}, "strategies": ["naive"]}


def condense_argv(out, *extra, method: str = "dm", data="digits") -> list:
    """`dcapps condense` of one image per class with the cheapest settings of `method`."""
    cls = methods("condense")[method]
    cheap = [t for k, v in CHEAP.items() if k in settings_of(cls) for t in (flag_name(k), v)]
    return ["condense", "--data", data, "--method", method, "--ipc", "1", *cheap, *TINY, "--out", out, *extra]


def select_argv(out, data="digits", method: str = "random", *extra) -> list:
    return ["select", "--data", data, "--method", method, "--ipc", "1", "--out", out, *extra]


def cheap_rank_eval(folder, settings: dict, *extra) -> list:
    """The cheapest `nas rank-eval` that builds a proxy (dm, with `settings`) into `folder/r`: one
    architecture (from `folder/space.json`, written here), one epoch."""
    space = Path(folder) / "space.json"
    space.write_text(json.dumps({"depth": [1], "width": [32]}))
    return ["nas", "rank-eval", "--data", "digits", "--condense", "dm", "--ipc", "1", "--method-settings",
            json.dumps(settings), "--space", str(space), "--archs", "1", "--full-epochs", "1", "--epochs", "1",
            "--baselines", "none", "--zero-cost", "none", "--device", "cpu", "--quiet", "--out",
            str(Path(folder) / "r"), *extra]


def refusal_problems(code: int, err: str, words=(), kept: dict | None = None) -> list[str]:
    """What is wrong with a refusal (exit status `code`, stderr `err`): it must exit 2 with exactly
    one line on stderr holding every one of `words`, no traceback, and leave the files of `kept`
    (path -> bytes before) as they were."""
    problems = []
    lines = err.strip().splitlines()
    if "Traceback" in err:
        problems.append("traceback")
    if code != 2:
        problems.append(f"exit {code}, expected 2")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    problems += [f"message does not name {str(w)!r}" for w in words if not lines or str(w) not in lines[-1]]
    return problems + changed(kept or {})


def changed(kept: dict) -> list[str]:
    """The files of `kept` (path -> bytes before, from `snapshot`) that are not as they were."""
    return [f"changed {p}" for p, data in kept.items() if not Path(p).exists() or Path(p).read_bytes() != data]


def snapshot(*paths) -> dict:
    """path -> bytes of each file, to check later that it was kept."""
    return {str(p): Path(p).read_bytes() for p in paths}


def reduced_set(data, path) -> Path:
    """A valid set file of `data` (digits): its first two training images of each class."""
    idx = torch.cat([torch.nonzero(data.y_train == c).flatten()[:2] for c in range(10)])
    ReducedSet(data.x_train[idx], data.y_train[idx], data.classes, data.mean, data.std,
               {"method": "random"}).save(str(path))
    return Path(path)


def edited(source, target, **changes) -> Path:
    """The `.pt` at `source` written to `target` with entries changed: a value replaces, a
    function of the old value replaces, None removes."""
    obj = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if value is None:
            obj.pop(key, None)
        else:
            obj[key] = value(obj[key]) if callable(value) else value
    torch.save(obj, target)
    return Path(target)


def checkpoint_of_two_iterations(data, path) -> dict:
    """The checkpoint at `path` of 2 of the 4 iterations that `condense_argv(out)` runs (its
    state returned)."""
    from condense_core.checkpoint import Checkpoint
    from condense_core.engine import Engine
    from condense_core.methods.dm import DM

    dm = DM(ipc=1, iterations=4, batch_real=8, model_options={"width": 8}, device="cpu")
    engine = Engine(dm, data, torch.device("cpu"))
    for _ in range(2):
        engine.step()
    engine.save(Checkpoint(str(path)))
    return engine.state()


def write_config(folder, file: str = "cl.yaml", **changes) -> Path:
    """A tiny `cl run` config in `folder` (`TINY_CL` with top-level keys changed)."""
    path = Path(folder) / file
    path.write_text(yaml.safe_dump({**TINY_CL, **changes}))
    return path


def bomb_png(path, side: int = 100_000) -> None:
    """A PNG whose header claims side x side pixels (a decompression bomb), a few bytes long."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                           + chunk(b"IEND", b""))


def save_npz(path, x_train, y_train, x_test=None, y_test=None) -> Path:
    """A `.npz` data spec (the test split defaults to the first 4 training images)."""
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_train[:4] if x_test is None else x_test,
             y_test=y_train[:4] if y_test is None else y_test)
    return Path(path)


def random_images(n: int, side: int, channels: int | None = None) -> np.ndarray:
    shape = (n, side, side) if channels is None else (n, side, side, channels)
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def nni_database(path, metrics, events: dict | None = None, schema: bool = True) -> None:
    """An NNI experiment database at `path` with one succeeded trial per (id, metric text) of
    `metrics` (its parameters from `events` where given); `schema` False: no tables."""
    path = Path(path)
    path.parent.mkdir(parents=True)
    con = sqlite3.connect(path)
    if schema:
        con.execute("CREATE TABLE TrialJobEvent (timestamp INTEGER, trialJobId TEXT, event TEXT, data TEXT)")
        con.execute("CREATE TABLE MetricData (timestamp INTEGER, trialJobId TEXT, type TEXT, data TEXT)")
        for i, (tid, metric) in enumerate(metrics):
            job = (events or {}).get(tid, json.dumps({"parameters": {"depth": 1 + i % 3, "width": 32}}))
            con.execute("INSERT INTO TrialJobEvent VALUES (?, ?, 'SUCCEEDED', ?)", (i, tid, job))
            con.execute("INSERT INTO MetricData VALUES (?, ?, 'FINAL', ?)", (i, tid, metric))
    con.commit()
    con.close()


def memory_set(channels: int, arity: int = 2, side: int = 8, meta: dict | None = None) -> ReducedSet:
    """A two-image set as a replay memory saves it (one task, items of `arity`)."""
    meta = {"item_arity": arity, "task_labels": {"0": 0, "1": 0}} if meta is None else meta
    return ReducedSet(torch.randn(2, channels, side, side), [0, 1], [0, 1], [0.0] * channels, [1.0] * channels, meta)


# A sweep (`condense_core.sweep.run`) whose first worker is killed in its unit, after making a
# named semaphore as a library would (tqdm's lock): the command's message must stay one line.
KILLED_WORKER = '''
import multiprocessing, os, signal, sys
from condense_core.sweep import Layout, Sweep, run

def work(params, device):
    lock = multiprocessing.RLock()
    marker = os.path.join(sys.argv[1], "killed-once")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"done": params["n"]}

if __name__ == "__main__":
    sweep = Sweep(sys.argv[1], {"case": "a worker killed in its unit"})
    units = {"a": {"n": 1}, "b": {"n": 2}}
    sweep.plan(units)
    for line in run(sweep, list(units), work, Layout(workers=2), "cpu"):
        print(f"dcapps: {line}", file=sys.stderr)
'''


def killed_worker(folder, env: dict) -> tuple[int, str]:
    """(exit status, stderr) of `KILLED_WORKER` run in a fresh process, in `folder`."""
    import subprocess
    import sys

    script = Path(folder) / "killed_worker.py"
    script.write_text(KILLED_WORKER)
    done = subprocess.run([sys.executable, str(script), str(Path(folder) / "sweep")], capture_output=True,
                          text=True, timeout=120, env=env)
    return done.returncode, done.stderr
