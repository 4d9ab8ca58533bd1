"""The hostile-input campaign: bad and hostile inputs across every command and the replay API,
each run and classified as handled or not.

    OMP_NUM_THREADS=1 python benchmarks/hostile_campaign.py --out runs/hostile/campaign.json

The cases are built here, per cause, in the five groups of the campaign that found the problems
(1 results silently wrong, 2 data lost or overwritten, 3 work wasted before an error that could
have come first, 4 tracebacks instead of one line, 5 misleading or noisy messages), plus kill -9,
SIGINT and SIGTERM followed by --resume for every registered condensation method (group 2: a
resumed run must give the uninterrupted set bit for bit). Settings cases are generated from the
settings' own declarations, so a method added later is tried too.

A case runs in this process (the command line's `main`, its output captured, a time limit) or,
where the process is the point (locks, kill -9, signals, warnings at start-up), as a subprocess.
It is handled when it ends as promised: for bad input exit status 2 with exactly one line on
stderr naming what the case names (the flag, the YAML key, the file) and no traceback; nothing
lost (the files it must keep byte-identical, no output it must not write, no temporary or lock
file left in its folder); no work before a refusal that could come first (no data loaded, no
network trained); and the case's own check (a mode, a ranking, identical images). Printed: a table
per group and "N tried, N handled"; written: every case's outcome as JSON (`--out`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

import condense_core  # noqa: E402
import condense_core.evaluate as evaluate_module  # noqa: E402
from condense_core import InputError, ReducedSet  # noqa: E402
from condense_core.registry import methods  # noqa: E402
from condense_core.settings import flag_name, settings_of  # noqa: E402
from dcapps.cli import main  # noqa: E402

GROUPS = {1: "results silently wrong", 2: "data lost or overwritten", 3: "work wasted before an error",
          4: "tracebacks instead of one line", 5: "misleading or noisy messages"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TINY = ["--model-options", '{"width": 8}', "--device", "cpu", "--quiet"]
CHEAP = {"iterations": "4", "batch_real": "8", "pool_size": "1", "net_epochs": "1", "queue_size": "2",
         "train_steps": "1", "train_batch": "32", "selection_epochs": "1"}
CASE_SECONDS = 120


@dataclass
class Outcome:
    group: int
    cause: str
    name: str
    handled: bool = False
    code: int | None = None
    stderr: str = ""
    problems: list = field(default_factory=list)
    seconds: float = 0.0


# --- running one case ---------------------------------------------------------------------------

class TimeLimit(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    def stop(signum, frame):
        raise TimeLimit(f"over {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class Work:
    """Records whether data was loaded or a network trained (work a refusal must come before):
    `load_data` and `train_model` are wrapped wherever the project's modules hold them."""

    NAMES = {"load_data": "data loaded", "train_model": "network trained"}

    def __init__(self):
        self.done: list[str] = []
        self.originals = {"load_data": condense_core.data.load_data, "train_model": evaluate_module.train_model}
        self.patched: list[tuple] = []

    def __enter__(self):
        for attr, original in self.originals.items():
            def wrapper(*a, _original=original, _what=self.NAMES[attr], **k):
                self.done.append(_what)
                return _original(*a, **k)
            holders = [m for name, m in list(sys.modules.items())
                       if name.split(".")[0] in ("condense_core", "dcapps", "scenarios", "nas")
                       and getattr(m, attr, None) is original]
            for module in holders + [condense_core]:
                self.patched.append((module, attr, module.__dict__.get(attr, Work)))
                setattr(module, attr, wrapper)
        return self

    def __exit__(self, *exc):
        for module, attr, before in reversed(self.patched):
            if before is Work:
                module.__dict__.pop(attr, None)  # the package's lazy attribute again
            else:
                setattr(module, attr, before)


def in_process(argv: list, folder: Path, umask: int | None = None) -> tuple[int, str, str, list]:
    """(exit status, stdout, stderr, work done) of `dcapps ARGV` run here, in `folder`."""
    out, err = io.StringIO(), io.StringIO()
    here, old_umask = os.getcwd(), None
    os.chdir(folder)
    if umask is not None:
        old_umask = os.umask(umask)
    try:
        with Work() as work, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                time_limit(CASE_SECONDS):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:  # noqa: BLE001 (what a user would see as a traceback)
                traceback.print_exc(file=err)
                code = 1
    finally:
        os.chdir(here)
        if old_umask is not None:
            os.umask(old_umask)
    return code, out.getvalue(), err.getvalue(), work.done


def subprocess_cli(argv: list, folder: Path, env: dict | None = None, timeout: int = CASE_SECONDS):
    done = subprocess.run([sys.executable, "-m", "dcapps", *map(str, argv)], cwd=folder, capture_output=True,
                          text=True, timeout=timeout, env=env or ENV)
    return done.returncode, done.stdout, done.stderr


def leftovers(folder: Path, allow_lock: bool = False) -> list[str]:
    """Temporary files (and lock files) left in `folder`: a half-written output or a stuck lock."""
    bad = []
    for p in folder.rglob("*"):
        if p.name.endswith(".tmp") or p.name.startswith(".dcapps-probe"):
            bad.append(f"left {p.relative_to(folder)}")
        elif p.name.endswith(".lock") and not allow_lock:
            bad.append(f"left lock {p.relative_to(folder)}")
    return bad


def judge(result: Outcome, code: int, err: str, expect: int = 2, words=(), keep: dict | None = None,
          absent=(), work: list | None = None, before_work: bool | str = False, folder: Path | None = None,
          allow_lock: bool = False) -> Outcome:
    """Fill `result` from one run: exit status, one line naming `words`, files kept, nothing left;
    `before_work`: True (or "any") refuses any work before the refusal, "training" only training."""
    result.code, result.stderr = code, err.strip()[-1500:]
    lines = err.strip().splitlines()
    if "Traceback" in err:
        result.problems.append("traceback")
    if code != expect:
        result.problems.append(f"exit {code}, expected {expect}")
    if expect == 2:
        if len(lines) != 1:
            result.problems.append(f"{len(lines)} stderr lines")
        for word in words:
            if not lines or str(word) not in lines[-1]:
                result.problems.append(f"message does not name {word!r}")
    for path, data in (keep or {}).items():
        if not Path(path).exists() or Path(path).read_bytes() != data:
            result.problems.append(f"changed {path}")
    for path in absent:
        if Path(path).exists():
            result.problems.append(f"wrote {path}")
    late = [w for w in (work or []) if before_work in (True, "any") or w == "network trained"] if before_work else []
    if late:
        result.problems.append(f"refused only after work ({', '.join(late)})")
    if folder is not None:
        result.problems += leftovers(folder, allow_lock)
    return result


def snapshot(*paths) -> dict:
    return {str(p): Path(p).read_bytes() for p in paths}


# --- the workspace: files every case may read ---------------------------------------------------

def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, side: int = 100_000) -> None:
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))


def edited(source: Path, target: Path, changes: dict) -> Path:
    """The .pt `source` written to `target` with entries changed: a value replaces, a function of
    the old value replaces, None removes."""
    obj = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if value is None:
            obj.pop(key, None)
        else:
            obj[key] = value(obj[key]) if callable(value) else value
    torch.save(obj, target)
    return target


class Workspace:
    """Inputs, good and bad, built once in `root/in` (cases never write there)."""

    def __init__(self, root: Path):
        from sklearn.datasets import load_digits

        self.root, self.dir = root, root / "in"
        self.dir.mkdir(parents=True)
        d = load_digits()
        x = (d.images / 16.0 * 255).round().astype(np.uint8)
        self.x, self.y = x, d.target
        self.npz = self.save_npz("digits.npz", x[:300], d.target[:300], x[300:400], d.target[300:400])
        rng = np.random.default_rng(0)
        for side in (1, 3, 7):
            self.save_npz(f"tiny{side}.npz", rng.integers(0, 256, (40, side, side), dtype=np.uint8),
                          np.repeat(np.arange(2), 20))
        self.no_test = self.save_npz("no_test.npz", x[:100], d.target[:100], np.zeros((0, 8, 8), np.uint8),
                                     np.zeros(0, np.int64))
        data = condense_core.load_data("digits")
        self.digits = data
        idx = torch.cat([torch.nonzero(data.y_train == c).flatten()[:2] for c in range(10)])
        self.set = self.dir / "set.pt"
        ReducedSet(data.x_train[idx], data.y_train[idx], data.classes, data.mean, data.std,
                     {"method": "random"}).save(str(self.set))
        self.folder = self.image_folder("folder", lambda split, i: x[i])
        self.make_checkpoint()

    def save_npz(self, name, x_train, y_train, x_test=None, y_test=None) -> Path:
        path = self.dir / name
        np.savez(path, x_train=x_train, y_train=y_train, x_test=x_train[:4] if x_test is None else x_test,
                 y_test=y_train[:4] if y_test is None else y_test)
        return path

    def image_folder(self, name, image, per_class=3) -> Path:
        from PIL import Image

        root = self.dir / name
        for split in ("train", "test"):
            for c in range(2):
                (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
                for i in range(per_class):
                    Image.fromarray(image(split, c * 10 + i)).save(root / split / f"c{c}" / f"{i}.png")
        return root

    def edited_set(self, name: str, **changes) -> Path:
        """A copy of the valid set in `in/NAME` with fields changed (see `edited`)."""
        return edited(self.set, self.dir / name, changes)

    def make_checkpoint(self) -> None:
        """The state after 2 of the 4 iterations of `condense_argv(..., "dm")`."""
        from condense_core.checkpoint import Checkpoint
        from condense_core.engine import Engine
        from condense_core.methods.dm import DM

        dm = DM(ipc=1, iterations=4, batch_real=8, model_options={"width": 8}, device="cpu")
        engine = Engine(dm, self.digits, torch.device("cpu"))
        for _ in range(2):
            engine.step()
        self.checkpoint_state = engine.state()
        path = self.dir / "reference.ckpt"
        engine.save(Checkpoint(str(path)))
        self.checkpoint_file = path

    def checkpoint_beside(self, out: Path, **changes) -> Path:
        """A copy of the reference checkpoint next to `out`, with fields changed (see `edited`)."""
        return edited(self.checkpoint_file, Path(str(out) + ".ckpt"), changes)

    def config(self, folder: Path, file="cl.yaml", **changes) -> Path:
        """A tiny `cl run` config in `folder`, with top-level keys changed."""
        base = {"data": "digits", "experiences": 2, "seeds": [0], "model": {"name": "ConvNet", "width": 8, "depth": 1},
                "train": {"epochs": 1, "batch_size": 128}, "memory": {"ipc": 1},
                "condense": {"iterations": 2, "batch_real": 8}, "strategies": ["naive"]}
        path = folder / file
        path.write_text(yaml.safe_dump({**base, **changes}))
        return path


def condense_argv(out, method="dm", data="digits", *extra):
    """A tiny condensation of one image per class (cheap settings of whichever method)."""
    cls = methods("condense")[method]
    cheap = [t for k, v in CHEAP.items() if k in settings_of(cls) for t in (flag_name(k), v)]
    return ["condense", "--data", data, "--method", method, "--ipc", "1", *cheap, *TINY, "--out", out, *extra]


def select_argv(out, data="digits", method="random", *extra):
    return ["select", "--data", data, "--method", method, "--ipc", "1", "--out", out, *extra]


# --- the cases ----------------------------------------------------------------------------------

@dataclass
class Case:
    group: int
    cause: str
    name: str
    run: Callable[[Path], Outcome]


def _in(folder: Path, items) -> list[str]:
    return [str(a).replace("{f}", str(folder)) for a in items]


def cli_case(group, cause, name, argv, words=(), expect=2, keep=(), absent=(), before_work=False,
             umask=None, check=None, prepare=None) -> Case:
    """A command-line case run in this process. `{f}` in `argv`, `keep` and `absent` is the case's
    folder; `prepare(folder)` makes its files first; `check(folder, stdout, stderr)` adds problems."""
    def run(folder: Path) -> Outcome:
        result = Outcome(group, cause, name)
        if prepare is not None:
            prepare(folder)
        kept = snapshot(*_in(folder, keep))
        code, out, err, work = in_process(_in(folder, argv), folder, umask)
        judge(result, code, err, expect, _in(folder, words), kept, _in(folder, absent), work, before_work, folder)
        if check is not None and not result.problems:
            result.problems += check(folder, out, err) or []
        return result
    return Case(group, cause, name, run)


def api_case(group, cause, name, call, words=(), check=None) -> Case:
    """A Python API case: `call(folder, state)` must raise one `InputError` naming `words` (no
    other error); then `check(folder, state)` returns what is wrong (e.g. a memory half replaced)."""
    def run(folder: Path) -> Outcome:
        result = Outcome(group, cause, name)
        state: dict = {}
        try:
            with time_limit(CASE_SECONDS):
                call(folder, state)
            result.problems.append("no error raised")
        except InputError as e:
            result.code, result.stderr = 2, str(e)
            if len(str(e).splitlines()) != 1:
                result.problems.append("message of several lines")
            result.problems += [f"message does not name {w!r}" for w in words if w not in str(e)]
        except BaseException as e:  # noqa: BLE001
            result.code, result.stderr = 1, "".join(traceback.format_exception(e))[-1500:]
            result.problems.append(f"traceback ({type(e).__name__})")
        if check is not None:
            result.problems += check(folder, state) or []
        result.problems += leftovers(folder)
        return result
    return Case(group, cause, name, run)


def custom_case(group, cause, name, fn) -> Case:
    """`fn(folder, result)` fills `result` itself (subprocesses, signals, several runs)."""
    def run(folder: Path) -> Outcome:
        result = Outcome(group, cause, name)
        try:
            fn(folder, result)
        except BaseException as e:  # noqa: BLE001
            result.problems.append(f"the case itself failed: {type(e).__name__}: {e}")
        return result
    return Case(group, cause, name, run)


def new_buffer():
    from dcapps.replay import ReducedSetBuffer

    return ReducedSetBuffer(ipc=1, method="random", kind="select")


# group 1 ----------------------------------------------------------------------------------------

def settings_cases(ws: Workspace) -> list[Case]:
    """Every float setting of every method NaN and infinite, every bounded int below its bound, as
    flags; the training flags of evaluate and nas; the YAML's keys; the replay API's options.
    Derived from the declarations, so a method added later is tried too."""
    from condense_core.evaluate import TrainSettings

    cause = "NaN, inf or out-of-range setting"
    cases = []
    for kind in ("condense", "select"):
        for name, cls in methods(kind).items():
            for s in settings_of(cls).values():
                bounded_int = s.type is int and s.rule.low is not None and s.rule.low >= 0
                for value in ["nan", "inf"] if s.type is float else ["-1"] if bounded_int else []:
                    flag = flag_name(s.name)
                    ipc = [] if s.name == "ipc" else ["--ipc", "1"]
                    argv = [kind, "--data", "digits", "--method", name, *ipc, f"{flag}={value}", "--out", "{f}/o.pt"]
                    cases.append(cli_case(1, cause, f"{kind} {name} {flag} {value}", argv, [flag, value],
                                          absent=["{f}/o.pt"], before_work=True))
    commands = (["evaluate", "--full", "--data", "digits"],
                ["nas", "init", "--data", "digits", "--proxy", ws.set, "--out", "{f}/exp"],
                ["nas", "rank-eval", "--data", "digits", "--proxy", ws.set])
    for s in settings_of(TrainSettings).values():
        for command in commands if s.type is float else ():
            flag = flag_name(s.name)
            cases.append(cli_case(1, cause, f"{' '.join(command[:2])} {flag} nan", [*command, f"{flag}=nan"],
                                  [flag, "nan"], absent=["{f}/exp"], before_work=True))
    nan, inf = float("nan"), float("inf")
    yaml_bad = {"train.lr": {"train": {"lr": nan}}, "train.momentum": {"train": {"momentum": inf}},
                "train.weight_decay": {"train": {"weight_decay": -1.0}}, "memory.ipc": {"memory": {"ipc": 0.5}},
                "memory.mem_size": {"memory": {"mem_size": -3}}, "condense.lr_img": {"condense": {"lr_img": nan}},
                "condense.dm.lr_img": {"condense": {"dm": {"lr_img": inf}}},
                "condense.lcmat.rho": {"condense": {"lcmat": {"rho": -inf}}},
                "condense.herding.selection_epochs": {"condense": {"herding": {"selection_epochs": 0}}},
                "experiences": {"experiences": nan}, "device": {"device": "mps"}}
    for key, changes in yaml_bad.items():
        cases.append(cli_case(1, cause, f"YAML {key}", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/out"], [key],
                              absent=["{f}/out"], before_work=True,
                              prepare=lambda f, c=changes: ws.config(f, **c)))
    for option, value in (("lr_img", nan), ("momentum", inf), ("iterations", 0), ("init", "zeros")):
        def call(folder, state, option=option, value=value):
            from dcapps.replay import ReducedSetBuffer
            ReducedSetBuffer(ipc=1, method_settings={option: value})
        cases.append(api_case(1, cause, f"replay option {option}={value}", call, [option]))
    for option, value in (("mem_size", 0), ("ipc", 0), ("replay_mode", "both")):
        def call(folder, state, option=option, value=value):
            from dcapps.replay import ReducedSetReplayPlugin
            ReducedSetReplayPlugin(**{option: value})
        cases.append(api_case(1, cause, f"replay {option}={value}", call, [option]))
    return cases


def group1(ws: Workspace) -> list[Case]:
    cases = settings_cases(ws)
    cause = "a degenerate set evaluated as a result"
    bad_sets = {
        "empty set": (dict(images=torch.zeros(0, 1, 8, 8), labels=torch.zeros(0, dtype=torch.long)), "no images"),
        "NaN images": (dict(images=lambda t: t.index_fill(0, torch.tensor([1]), float("nan"))), "NaN"),
        "inf images": (dict(images=lambda t: t.index_fill(0, torch.tensor([2]), float("-inf"))), "infinite"),
        "fractional labels": (dict(labels=lambda t: t.float() + 0.5), "integers"),
        "integral float labels": (dict(labels=lambda t: t.float()), "integers"),
        "zero std": (dict(std=lambda t: torch.zeros_like(t)), "std"),
        "negative std": (dict(std=lambda t: -t), "std"),
        "NaN mean": (dict(mean=lambda t: t * float("nan")), "mean"),
        "labels past the classes": (dict(labels=lambda t: t + 10), "out of range"),
        "negative labels": (dict(labels=lambda t: t - 1), "out of range"),
    }
    for name, (changes, word) in bad_sets.items():
        path = ws.edited_set(name.replace(" ", "_") + ".pt", **changes)
        cases.append(cli_case(1, cause, f"evaluate: {name}", ["evaluate", path, "--data", "digits", "--runs", "1",
                                                              "--epochs", "1"], [path, word], keep=[path]))
    empty, nan = ws.dir / "empty_set.pt", ws.dir / "NaN_images.pt"
    cases += [cli_case(1, cause, "nas init: empty proxy", ["nas", "init", "--data", "digits", "--proxy", empty,
                                                           "--out", "{f}/exp"], [empty], absent=["{f}/exp"]),
              cli_case(1, cause, "rank-eval: NaN proxy", ["nas", "rank-eval", "--data", "digits", "--proxy", nan,
                                                          "--archs", "1"], [nan, "NaN"], before_work=True)]
    cause = "a checkpoint taken at its word"
    for iteration in (37, 5, -1, 2.5, True, "3"):
        cases.append(cli_case(1, cause, f"resume from iteration {iteration!r} of 4",
                              [*condense_argv("{f}/o.pt"), "--resume"], ["o.pt.ckpt", "iteration"],
                              keep=["{f}/o.pt.ckpt"], absent=["{f}/o.pt"],
                              prepare=lambda f, i=iteration: ws.checkpoint_beside(f / "o.pt", iteration=i)))
    cause = "a result that diverged"
    for method, cls in methods("condense").items():
        if "lr_img" in settings_of(cls):
            cases.append(cli_case(1, cause, f"{method} --lr-img 1e30",
                                  condense_argv("{f}/o.pt", method, "digits", "--lr-img", "1e30"), ["diverged"],
                                  absent=["{f}/o.pt"]))
    cause = "impossible training data"
    x, y = ws.x[:40], ws.y[:40]
    arrays = {"NaN floats": (x / 255.0 * np.where(np.arange(40) == 3, np.nan, 1.0)[:, None, None], y, "[0, 1]"),
              "inf floats": (np.where(x > 100, np.inf, x / 255.0), y, "[0, 1]"),
              "fractional labels": (x, y + 0.25, "integer"),
              "text labels": (x, y.astype(str), "integer"),
              "one value everywhere": (np.full_like(x, 7), y, "same value")}
    for name, (xs, ys, word) in arrays.items():
        path = ws.save_npz(f"data_{name.replace(' ', '_')}.npz", xs, ys, xs[:4], y[:4])
        cases.append(cli_case(1, cause, f"select on {name}", select_argv("{f}/o.pt", path), [path, word],
                              keep=[path], absent=["{f}/o.pt"]))
    return cases


# group 2 ----------------------------------------------------------------------------------------

def kill_case(method: str, how: str, reference: dict) -> Case:
    """A run of `method` stopped (`kill`: SIGKILL after a checkpoint, `kill-early`: before any,
    `SIGINT`, `SIGTERM`), then resumed: the set must be the uninterrupted one, bit for bit."""
    def fn(folder: Path, result: Outcome) -> None:
        if method not in reference:
            whole = folder / "whole.pt"
            code, _, err, _ = in_process(condense_argv(whole, method, "digits", "--iterations", "24"), folder)
            if code != 0:
                result.problems.append(f"the uninterrupted run failed: {err.strip()[-300:]}")
                return
            reference[method] = ReducedSet.load(str(whole)).images
        out = folder / "out.pt"
        every = [] if how == "kill-early" else ["--checkpoint-every", "3"]
        argv = condense_argv(out, method, "digits", "--iterations", "24", *every)
        run = subprocess.Popen([sys.executable, "-m", "dcapps", *map(str, argv)], cwd=folder, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        mark = Path(str(out) + (".lock" if how == "kill-early" else ".ckpt"))
        deadline = time.time() + CASE_SECONDS
        while not (mark.exists() and mark.stat().st_size):
            if run.poll() is not None or time.time() > deadline:
                run.kill()
                result.problems.append(f"the run ended before it could be stopped: {run.communicate()[1][-300:]}")
                return
            time.sleep(0.005)
        run.send_signal({"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}.get(how, signal.SIGKILL))
        _, err = run.communicate(timeout=CASE_SECONDS)
        want = {"SIGINT": 130, "SIGTERM": 143}.get(how, -9)
        one_line = len(err.strip().splitlines()) == 1 and "Traceback" not in err
        if run.returncode != want or (how.startswith("SIG") and not one_line):
            result.problems.append(f"stopped with exit {run.returncode} ({err.strip()[-200:]})")
        code, _, err, _ = in_process([*argv, "--resume"], folder)
        result.code, result.stderr = code, err.strip()[-600:]
        if code != 0:
            result.problems.append(f"resume exit {code}")
            return
        if not torch.equal(ReducedSet.load(str(out)).images, reference[method]):
            result.problems.append("the resumed set differs from the uninterrupted one")
        result.problems += leftovers(folder)
    return custom_case(2, "kill -9 / SIGINT / SIGTERM, then --resume", f"{method}: {how} then --resume", fn)


def second_run_case(name: str, first: list, second: list, mark: str, prepare=None) -> Case:
    """While a first run writes an output (a subprocess), a second one on it is refused."""
    def fn(folder: Path, result: Outcome) -> None:
        if prepare is not None:
            prepare(folder)
        run = subprocess.Popen([sys.executable, "-m", "dcapps", *_in(folder, first)], cwd=folder, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + CASE_SECONDS
            while not (folder / mark).exists():
                if run.poll() is not None or time.time() > deadline:
                    result.problems.append(f"the first run ended early: {run.communicate()[1][-300:]}")
                    return
                time.sleep(0.02)
            code, _, err, _ = in_process(_in(folder, second), folder)
            judge(result, code, err, 2, ["another run", f"pid {run.pid}"])
        finally:
            run.send_signal(signal.SIGTERM)
            run.communicate(timeout=CASE_SECONDS)
    return custom_case(2, "two runs writing one output", name, fn)


def memory_set(channels: int, arity: int = 2, side: int = 8, meta: dict | None = None) -> ReducedSet:
    meta = {"item_arity": arity, "task_labels": {"0": 0, "1": 0}} if meta is None else meta
    return ReducedSet(torch.randn(2, channels, side, side), [0, 1], [0, 1], [0.0] * channels, [1.0] * channels,
                        meta)


def memory_folder(folder: Path, sets: list, index: str | bytes | None = None, damage: str | None = None) -> Path:
    """A saved memory of `sets` (its index as given, or naming them all; file `damage` garbled)."""
    root = folder / "memory"
    root.mkdir(exist_ok=True)
    for i, s in enumerate(sets):
        s.save(str(root / f"experience_{i:03d}.pt"))
    text = index if index is not None else "".join(f"experience_{i:03d}.pt\n" for i in range(len(sets)))
    (root / "index.txt").write_bytes(text if isinstance(text, bytes) else text.encode())
    if damage is not None:
        (root / damage).write_bytes(b"garbled")
    return root


def load_memory_case(name: str, build: Callable[[Path], Path], words=()) -> Case:
    """load_memory of a bad folder raises one InputError and leaves the memory as it was."""
    def call(folder, state):
        buffer = ReducedSetBuffer(ipc=2, method="random", kind="select")
        buffer.sets = [memory_set(1)]
        buffer._refresh()
        state.update(buffer=buffer, sets=list(buffer.sets), data=buffer.buffer)
        buffer.load(str(build(folder)))

    def check(folder, state):
        b = state.get("buffer")
        if b is not None and (b.sets != state["sets"] or b.buffer is not state["data"]):
            return ["the memory was changed by a refused load"]
    from dcapps.replay import ReducedSetBuffer
    return api_case(2, "load_memory half replaced", name, call, words, check)


def mode_case(name: str, umask: int, existing: int | None, want: int) -> Case:
    """The modes of the set and its picture written under `umask` (over a file of mode `existing`)."""
    def fn(folder: Path, result: Outcome) -> None:
        out = folder / "set.pt"
        if existing is not None:
            out.write_bytes(b"old")
            out.chmod(existing)
        code, _, err, _ = in_process(select_argv(out, "digits", "random", "--png", "--quiet"), folder, umask)
        result.code, result.stderr = code, err
        modes = {p: (folder / p).stat().st_mode & 0o777 if (folder / p).exists() else None
                 for p in ("set.pt", "set.png")}
        if code != 0 or modes != {"set.pt": want, "set.png": 0o666 & ~umask}:
            result.problems.append(f"exit {code}, modes {modes}, expected {oct(want)} and {oct(0o666 & ~umask)}")
        result.problems += leftovers(folder)
    return custom_case(2, "files not following the umask", name, fn)


def group2(ws: Workspace) -> list[Case]:
    cases = []
    cause = "an input overwritten"
    npz, folder = ws.npz, ws.folder
    cases += [
        cli_case(2, cause, "select --out is --data", select_argv(npz, npz), ["--out", "--data"], keep=[npz]),
        cli_case(2, cause, "condense --out is --data", condense_argv(npz, "dm", str(npz)), ["--data"], keep=[npz]),
        cli_case(2, cause, "select --out is --data by another path",
                 select_argv(ws.dir / ".." / "in" / "digits.npz", npz), ["--data"], keep=[npz]),
        cli_case(2, cause, "select --out inside the ImageFolder", select_argv(folder / "train" / "x.pt", folder),
                 ["inside"], absent=[folder / "train" / "x.pt"]),
        cli_case(2, cause, "rank-eval --out is a --proxy",
                 ["nas", "rank-eval", "--data", "digits", "--proxy", ws.set, "--out", ws.set], ["--proxy"],
                 keep=[ws.set]),
        cli_case(2, cause, "cl run --out is the ImageFolder", ["cl", "run", "{f}/cl.yaml", "--out", folder],
                 ["--out", "data"], prepare=lambda f: ws.config(f, data=str(folder))),
        cli_case(2, cause, "YAML name '..' (a folder above runs/cl)", ["cl", "run", "{f}/cl.yaml"], ["name"],
                 prepare=lambda f: ws.config(f, name="..")),
        cli_case(2, cause, "nas init --proxy inside --out",
                 ["nas", "init", "--data", "digits", "--proxy", "{f}/proxy.pt", "--out", "{f}"], ["--proxy"],
                 keep=["{f}/proxy.pt"], prepare=lambda f: shutil.copy(ws.set, f / "proxy.pt")),
    ]
    cause = "a checkpoint deleted or overwritten"
    beside = lambda f: ws.checkpoint_beside(f / "o.pt")  # noqa: E731
    cases += [
        cli_case(2, cause, "other settings, no --resume", condense_argv("{f}/o.pt", "dm", "digits", "--lr-img", "3"),
                 ["o.pt.ckpt", "--restart"], keep=["{f}/o.pt.ckpt"], absent=["{f}/o.pt"], prepare=beside),
        cli_case(2, cause, "same settings, no --resume", condense_argv("{f}/o.pt"), ["o.pt.ckpt", "--resume"],
                 keep=["{f}/o.pt.ckpt"], absent=["{f}/o.pt"], prepare=beside),
        cli_case(2, cause, "--resume and --restart", [*condense_argv("{f}/o.pt"), "--resume", "--restart"],
                 ["--restart"], keep=["{f}/o.pt.ckpt"], prepare=beside),
        cli_case(2, cause, "--restart replaces it when asked",
                 [*condense_argv("{f}/o.pt", "dm", "digits", "--lr-img", "3"), "--restart"], expect=0,
                 absent=["{f}/o.pt.ckpt"], prepare=beside),
        cli_case(2, cause, "an earlier output kept when a run is refused",
                 ["condense", "--data", "digits", "--method", "dm", "--ipc", "1000", "--out", "{f}/keep.pt"],
                 ["ipc"], keep=["{f}/keep.pt"], prepare=lambda f: (f / "keep.pt").write_bytes(b"precious")),
    ]
    cases += [
        second_run_case("condense twice on one --out",
                        condense_argv("{f}/o.pt", "dm", "digits", "--iterations", "100000", "--checkpoint-every", "1"),
                        condense_argv("{f}/o.pt"), "o.pt.ckpt"),
        second_run_case("cl run twice on one --out", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/out"],
                        ["cl", "run", "{f}/cl.yaml", "--out", "{f}/out"], "out/config.json",
                        lambda f: ws.config(f, strategies=["naive", "joint"], train={"epochs": 200})),
    ]
    cases += [
        load_memory_case("colour folder into a grey memory", lambda f: memory_folder(f, [memory_set(3)]), ["3x8x8"]),
        load_memory_case("sets of two shapes", lambda f: memory_folder(f, [memory_set(1), memory_set(1, side=9)]),
                         ["experience_001.pt"]),
        load_memory_case("tuples of two arities", lambda f: memory_folder(f, [memory_set(1), memory_set(1, 3)]),
                         ["experience_001.pt"]),
        load_memory_case("second set damaged", lambda f: memory_folder(f, [memory_set(1)] * 2,
                                                                       damage="experience_001.pt"),
                         ["experience_001.pt"]),
        load_memory_case("index names a missing file",
                         lambda f: memory_folder(f, [memory_set(1)], "experience_000.pt\nnone.pt\n"), ["none.pt"]),
        load_memory_case("index escapes the folder", lambda f: memory_folder(f, [memory_set(1)], "../../in/set.pt\n"),
                         ["index.txt"]),
        load_memory_case("index not UTF-8", lambda f: memory_folder(f, [memory_set(1)], b"\xff\xfe\x00x\n"),
                         ["index.txt"]),
        load_memory_case("not a memory set", lambda f: memory_folder(f, [memory_set(1, meta={})]), ["item_arity"]),
        load_memory_case("task labels not a mapping",
                         lambda f: memory_folder(f, [memory_set(1, meta={"item_arity": 3, "task_labels": [0]})]),
                         ["task_labels"]),
    ]
    cases += [mode_case("umask 022, new file", 0o022, None, 0o644),
              mode_case("umask 077, new file", 0o077, None, 0o600),
              mode_case("umask 002, new file", 0o002, None, 0o664),
              mode_case("umask 077, over a 644 file", 0o077, 0o644, 0o644)]
    reference: dict = {}
    for method in methods("condense"):
        for how in ("kill", "kill-early", "SIGINT", "SIGTERM"):
            cases.append(kill_case(method, how, reference))
    return cases


# group 3 ----------------------------------------------------------------------------------------

def unwritable(f: Path) -> None:
    """A plain file (to put an output under) and a broken link (to write through)."""
    (f / "plain").write_text("x")
    (f / "link.pt").symlink_to(f / "nowhere" / "x.pt")
    os.mkfifo(f / "fifo")  # a file that is not a regular one (never /dev/null itself: a miss would replace it)


def group3(ws: Workspace) -> list[Case]:
    cases = []
    cause = "an output that cannot be written, found after the work"
    outs = {"empty": "", "trailing slash": "sub/", "a directory": ".", "in /proc": "/proc/dcapps-x.pt",
            "a fifo": "{f}/fifo", "inside a file": "{f}/plain/x.pt", "name too long": "x" * 250 + ".pt",
            "a broken link": "{f}/link.pt"}
    for name, out in outs.items():
        for command, argv in (("select", select_argv(out)), ("condense", condense_argv(out))):
            cases.append(cli_case(3, cause, f"{command} --out {name}", argv, ["--out"], before_work=True,
                                  keep=["{f}/plain"], prepare=unwritable))
    for name, out in {"empty": "", "a file": "{f}/plain", "in /proc": "/proc/dcapps-x"}.items():
        cases += [
            cli_case(3, cause, f"cl run --out {name}", ["cl", "run", "{f}/cl.yaml", "--out", out], ["--out"],
                     before_work=True, keep=["{f}/plain"], prepare=lambda f: (unwritable(f), ws.config(f))),
            cli_case(3, cause, f"nas init --out {name}",
                     ["nas", "init", "--data", "digits", "--proxy", ws.set, "--out", out], ["--out"],
                     before_work=True, keep=["{f}/plain"], prepare=unwritable),
        ]
    rank_eval = ["nas", "rank-eval", "--data", "digits", "--proxy", ws.set]
    cases += [
        cli_case(3, cause, "rank-eval --out in /proc", [*rank_eval, "--out", "/proc/x.json"], ["--out"],
                 before_work=True),
        cli_case(3, cause, "rank-eval --out trailing slash", [*rank_eval, "--out", "{f}/r/"], ["--out"],
                 before_work=True),
        cli_case(3, cause, "condense --png onto a directory", condense_argv("{f}/o.pt", "dm", "digits", "--png"),
                 ["--png"], before_work=True, prepare=lambda f: (f / "o.png").mkdir()),
        api_case(3, cause, "save_memory into /proc", lambda f, s: new_buffer().save("/proc/dcapps-memory"),
                 ["/proc"]),
    ]
    cause = "a late refusal that could come first"
    cl_run = ["cl", "run", "{f}/cl.yaml", "--out", "{f}/out"]
    cases += [
        cli_case(3, cause, "YAML condense.dm value", cl_run, ["condense.dm.batch_real"], before_work=True,
                 absent=["{f}/out"], prepare=lambda f: ws.config(f, condense={"dm": {"batch_real": 0}})),
        cli_case(3, cause, "YAML condense.lcmat unknown key", cl_run, ["condense.lcmat.pool"], before_work=True,
                 prepare=lambda f: ws.config(f, condense={"lcmat": {"pool": 1}})),
        cli_case(3, cause, "evaluate without a test split", ["evaluate", "--full", "--data", ws.no_test, "--runs", "1"],
                 [ws.no_test, "test"], before_work="training"),
        cli_case(3, cause, "evaluate a set without a test split", ["evaluate", ws.set, "--data", ws.no_test],
                 ["test"], before_work="training"),
        cli_case(3, cause, "nas init without a test split",
                 ["nas", "init", "--data", ws.no_test, "--proxy", ws.set, "--out", "{f}/exp"], ["test"],
                 absent=["{f}/exp"], before_work="training"),
        cli_case(3, cause, "rank-eval without a test split",
                 ["nas", "rank-eval", "--data", ws.no_test, "--proxy", ws.set, "--archs", "1"], ["test"],
                 before_work="training"),
        cli_case(3, cause, "cl run without a test split", cl_run, ["test"], before_work="training",
                 prepare=lambda f: ws.config(f, data=str(ws.no_test))),
        cli_case(3, cause, "--resume without a checkpoint", [*condense_argv("{f}/o.pt"), "--resume"], ["--resume"],
                 before_work=True),
        cli_case(3, cause, "rank-eval unknown baseline", [*rank_eval, "--baselines", "random,oracle"],
                 ["--baselines", "oracle"], before_work=True),
        api_case(3, cause, "a replay memory without ipc or mem_size", lambda f, s: __import__(
            "dcapps.replay").replay.ReducedSetBuffer(ipc=None, mem_size=None), ["ipc", "mem_size"]),
        cli_case(3, cause, "cl run on images its model cannot look at", cl_run, ["model", "too small"],
                 before_work="training",
                 prepare=lambda f: ws.config(f, data=str(ws.dir / "tiny3.npz"), experiences=1,
                                             model={"name": "ConvNet", "width": 8, "depth": 3})),
    ]
    cause = "a refused checkpoint: whole configs, work first"
    beside = lambda f: ws.checkpoint_beside(f / "o.pt")  # noqa: E731
    for method in methods("condense"):
        other = method != "dm"
        cases.append(cli_case(3, cause, f"dm checkpoint resumed as {method}",
                              [*condense_argv("{f}/o.pt", method), "--resume"],
                              ["o.pt.ckpt", "method='dm'"] if other else [], expect=2 if other else 0,
                              keep=["{f}/o.pt.ckpt"] if other else [], before_work="training" if other else False,
                              prepare=beside))
    cases.append(cli_case(3, cause, "one setting differs",
                          [*condense_argv("{f}/o.pt", "dm", "digits", "--batch-real", "9"), "--resume"],
                          ["batch_real=8", "9"], keep=["{f}/o.pt.ckpt"], prepare=beside,
                          check=lambda f, o, e: ["a whole config printed"] if "{" in e else []))
    return cases


# group 4 ----------------------------------------------------------------------------------------

def tiny_image_cases(ws: Workspace) -> list[Case]:
    cases = []
    for side in (1, 3, 7):
        data = ws.dir / f"tiny{side}.npz"
        commands = {"condense dm": condense_argv("{f}/o.pt", "dm", data),
                    "condense lcmat": condense_argv("{f}/o.pt", "lcmat", data),
                    "select herding": select_argv("{f}/o.pt", data, "herding"),
                    "select lcmat": select_argv("{f}/o.pt", data, "lcmat"),
                    "bench": ["bench", "condense", "--data", data, "--iterations", "1", "--ipc", "1"],
                    "evaluate --full": ["evaluate", "--full", "--data", data, "--runs", "1"]}
        for name, argv in commands.items():
            cases.append(cli_case(4, "images below the network's minimum", f"{name} on {side}x{side}", argv,
                                  [data, f"{side}x{side}"], absent=["{f}/o.pt"], before_work="training"))
    return cases


def undecodable_cases(ws: Workspace) -> list[Case]:
    from PIL import Image

    cases = []
    for name, write, word in (
            ("bomb", write_bomb_png, "decompression"),
            ("truncated", lambda p: p.write_bytes(p.read_bytes()[:40]), "2.png"),
            ("text", lambda p: p.write_text("not an image"), "2.png"),
            ("empty file", lambda p: p.write_bytes(b""), "2.png"),
            ("other size", lambda p: Image.fromarray(np.zeros((9, 9), np.uint8)).save(p), "2.png")):
        root = ws.image_folder(name.replace(" ", "_"), lambda split, i: ws.x[i])
        write(root / "train" / "c0" / "2.png")
        for stream in ([], ["--stream"]):
            cases.append(cli_case(4, "images that do not decode", f"{name} PNG{' streamed' if stream else ''}",
                                  select_argv("{f}/o.pt", root, "random", *stream), [word], absent=["{f}/o.pt"]))
    return cases


def device_cases(ws: Workspace) -> list[Case]:
    cause = "a device that is not auto, cpu or cuda[:N]"
    cases = []
    for device in ("meta", "mps", "cuda:x", "gpu", "cuda:99", ""):
        word = "--device" if device != "cuda:99" else "cuda:99"
        commands = {"condense": condense_argv("{f}/o.pt", "dm", "digits", "--device", device),
                    "evaluate": ["evaluate", ws.set, "--data", "digits", "--device", device],
                    "bench": ["bench", "condense", "--data", "digits", "--device", device],
                    "cl run": ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o", "--device", device],
                    "nas init": ["nas", "init", "--data", "digits", "--proxy", ws.set, "--out", "{f}/e",
                                 "--device", device]}
        for name, argv in commands.items():
            if device == "cuda:99" and name == "nas init":
                continue  # trials may run on another machine: the form is checked, not this one's GPUs
            cases.append(cli_case(4, cause, f"{name} --device {device!r}", argv, [word], absent=["{f}/o.pt", "{f}/e"],
                                  before_work="training", prepare=ws.config))
    cases.append(cli_case(4, cause, "YAML device: meta", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o"],
                          ["device", "meta"], before_work=True, prepare=lambda f: ws.config(f, device="meta")))
    return cases


def malformed_file_cases(ws: Workspace) -> list[Case]:
    cases = []
    cause = "a hand-made .pt with malformed fields"
    malformed = {"mean as a long list": dict(mean=[0.1, 0.2, 0.3]), "mean as text": dict(mean="grey"),
                 "std as a dict": dict(std={"a": 1}), "meta as an int": dict(meta=7),
                 "classes as an int": dict(classes=10), "classes empty": dict(classes=[]),
                 "classes of floats": dict(classes=[0.5] * 10), "labels 2-D": dict(labels=torch.zeros(20, 2).long()),
                 "labels as a list": dict(labels=[0] * 20), "images 3-D": dict(images=torch.zeros(20, 8, 8)),
                 "images uint8": dict(images=lambda t: t.to(torch.uint8)),
                 "images 0x0": dict(images=torch.zeros(20, 1, 0, 0)), "no std": dict(std=None),
                 "format of another tool": dict(format="other/1"), "meta factor 0": dict(meta={"factor": 0}),
                 "meta factor as text": dict(meta={"factor": "2"}), "meta factor past the size": dict(meta={"factor": 9})}
    for name, changes in malformed.items():
        path = ws.edited_set("hand_" + name.replace(" ", "_") + ".pt", **changes)
        cases.append(cli_case(4, cause, f"evaluate: {name}", ["evaluate", path, "--data", "digits"], [path],
                              keep=[path], before_work=True))
    path = ws.dir / "pickled.pt"
    torch.save({"format": "dcapps.SyntheticSet/1", "images": np.zeros(3)}, path)
    cases.append(cli_case(4, cause, "evaluate: a numpy array inside", ["evaluate", path, "--data", "digits"], [path],
                          before_work=True))
    cause = "a checkpoint with malformed fields"
    k = ws.checkpoint_state
    broken = {"images of another shape": dict(images=torch.zeros(10, 2, 1, 8, 8)),
              "images float64": dict(images=k["images"].double()), "momentum missing": dict(momentum=None),
              "momentum a list": dict(momentum=[0.0]), "generator float": dict(generator=k["generator"].float()),
              "generator short": dict(generator=k["generator"][:10]), "losses short": dict(losses=torch.zeros(2)),
              "losses missing": dict(losses=None), "identity a string": dict(identity="x"),
              "format missing": dict(format=None)}
    for name, changes in broken.items():
        cases.append(cli_case(4, cause, f"resume: {name}", [*condense_argv("{f}/o.pt"), "--resume"], ["o.pt.ckpt"],
                              keep=["{f}/o.pt.ckpt"], absent=["{f}/o.pt"], before_work="training",
                              prepare=lambda f, c=changes: ws.checkpoint_beside(f / "o.pt", **c)))
    cases.append(cli_case(4, cause, "resume: not a torch file", [*condense_argv("{f}/o.pt"), "--resume"],
                          ["o.pt.ckpt"], keep=["{f}/o.pt.ckpt"],
                          prepare=lambda f: Path(f / "o.pt.ckpt").write_bytes(b"xx")))
    return cases


def cl_file_cases(ws: Workspace) -> list[Case]:
    from scenarios.config import load_config

    cases = []
    cause = "a config file that is not a config"
    yamls = {"not UTF-8": ("data: caf\u00e9\n".encode("latin-1"), "c.yaml"),
             "a python tag": (b"data: !!python/object/apply:os.system [ls]\n", "c.yaml"),
             "a list": (b"- digits\n", "c.yaml"), "empty": (b"", "c.yaml"),
             "a tab": (b"data: digits\n\tname: x\n", "c.yaml"), "binary": (bytes(range(256)), "c.yaml"),
             "seeds as text": (b"data: digits\nseeds: zero\n", "seeds"),
             "model a list": (b"data: digits\nmodel: [ConvNet]\n", "model")}
    for name, (text, word) in yamls.items():
        cases.append(cli_case(4, cause, f"YAML {name}", ["cl", "run", "{f}/c.yaml", "--out", "{f}/o"], [word],
                              before_work=True, prepare=lambda f, t=text: (f / "c.yaml").write_bytes(t)))
    cause = "a damaged CL folder"

    def folder_with(f: Path, target: str, content: bytes) -> None:
        config = ws.config(f)
        (f / "o" / "units").mkdir(parents=True, exist_ok=True)
        (f / "o" / "config.json").write_text(json.dumps(load_config(str(config)).settings()))
        (f / "o" / target).write_bytes(content)

    damaged = {"truncated": b'{"strategy": "naive", "se', "a list": b"[]", "not UTF-8": b"\xff\xfe",
               "another strategy's": json.dumps({"strategy": "joint", "seed": 0, "accuracy": [0.5, 0.5]}).encode()}
    for target in ("units/naive-seed0.json", "config.json"):
        for name, content in damaged.items():
            if target == "config.json" and name == "another strategy's":
                continue
            cases.append(cli_case(4, cause, f"{target} {name}", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o"],
                                  [target], keep=[f"{{f}}/o/{target}"], before_work="training",
                                  prepare=lambda f, t=target, c=content: folder_with(f, t, c),
                                  check=lambda f, o, e: ["ran anyway"] if (f / "o" / "results.json").exists() else []))
    return cases


def nni_cases(ws: Workspace) -> list[Case]:
    cause = "an NNI database with foreign content"

    def database(f: Path, metrics, events=None, schema=True) -> None:
        db = f / "exp" / "EXP" / "db" / "nni.sqlite"
        db.parent.mkdir(parents=True)
        con = sqlite3.connect(db)
        if schema:
            con.execute("CREATE TABLE TrialJobEvent (timestamp INTEGER, trialJobId TEXT, event TEXT, data TEXT)")
            con.execute("CREATE TABLE MetricData (timestamp INTEGER, trialJobId TEXT, type TEXT, data TEXT)")
            good = json.dumps(json.dumps({"default": 0.9, "params": 10, "train_time_s": 1.0}))
            for i, (tid, metric) in enumerate([("good", good), *metrics]):
                job = (events or {}).get(tid, json.dumps({"parameters": {"depth": 2, "width": 32}}))
                con.execute("INSERT INTO TrialJobEvent VALUES (?, ?, 'SUCCEEDED', ?)", (i, tid, job))
                con.execute("INSERT INTO MetricData VALUES (?, ?, 'FINAL', ?)", (i, tid, metric))
        con.commit()
        con.close()

    def ranking(out: str) -> list:
        return json.loads(out.strip().splitlines()[-1])["ranking"]

    def only_good(f, out, err):
        found = [r["trial"] for r in ranking(out)]
        return [] if found == ["good"] else [f"ranked {found}"]

    def extras_dropped(f, out, err):
        rows = ranking(out)
        odd = rows[1] if len(rows) == 2 else {}
        return [] if (odd.get("params"), odd.get("train_time_s")) == (None, None) else [f"ranking {rows}"]

    report = ["nas", "report", "--dir", "{f}/exp", "--json"]
    cases = []
    for name, metrics, events in (
            ("a metric that is not JSON", [("bad", "{oops")], None),
            ("a metric that is text", [("bad", json.dumps("high"))], None),
            ("a NaN accuracy", [("bad", json.dumps({"default": float("nan")}))], None),
            ("an accuracy as text", [("bad", json.dumps({"default": "0.99"}))], None),
            ("a final without default", [("bad", json.dumps({"acc": 0.99}))], None),
            ("parameters that are not JSON", [("bad", json.dumps(0.95))], {"bad": "{nope"}),
            ("parameters as a list", [("bad", json.dumps(0.95))], {"bad": json.dumps({"parameters": [1, 2]})})):
        cases.append(cli_case(4, cause, f"report: {name}", report, expect=0, check=only_good,
                              prepare=lambda f, m=metrics, e=events: database(f, m, e)))
    odd = [("odd", json.dumps({"default": 0.5, "params": "many", "train_time_s": "long"}))]
    cases += [
        cli_case(4, cause, "report: extra keys as text", report, expect=0, check=extras_dropped,
                 prepare=lambda f: database(f, odd)),
        cli_case(4, cause, "report: a database without tables", report, ["nni.sqlite"],
                 prepare=lambda f: database(f, [], schema=False)),
        cli_case(4, cause, "report: a file that is not a database", report, ["nni.sqlite"],
                 prepare=lambda f: ((f / "exp" / "db").mkdir(parents=True),
                                    (f / "exp" / "db" / "nni.sqlite").write_text("hello"))),
    ]
    cause = "a search space every trial would reject"
    spaces = {"float depth": {"depth": [1.0, 2.0]}, "bool width": {"width": [True]}, "text depth": {"depth": ["2"]},
              "nested list": {"depth": [[1, 2]]}, "a randint": {"depth": {"_type": "randint", "_value": [1, 3]}},
              "unknown option": {"kernel": [3]}, "not a mapping": [1, 2],
              "fractional NNI choice": {"width": {"_type": "choice", "_value": [32.5]}}}
    for name, space in spaces.items():
        cases.append(cli_case(4, cause, f"nas init: {name}", ["nas", "init", "--data", "digits", "--proxy", ws.set,
                                                               "--space", "{f}/space.json", "--out", "{f}/exp"],
                              ["space.json"], absent=["{f}/exp"], before_work=True,
                              prepare=lambda f, s=space: (f / "space.json").write_text(json.dumps(s))))
    cause = "a trial setup or parameters that are not"

    def trial_case(name, setup, params, words):
        def fn(folder: Path, result: Outcome) -> None:
            (folder / "trial.json").write_text(setup)
            done = subprocess.run([sys.executable, "-m", "nas.trial", "--setup", "trial.json", "--params", params],
                                  cwd=folder, capture_output=True, text=True, timeout=CASE_SECONDS, env=ENV)
            judge(result, done.returncode, done.stderr, 2, words, folder=folder)
        return custom_case(4, cause, name, fn)
    good = {"data": "digits", "proxy": str(ws.set), "train": {"epochs": 1}, "seed": 0}
    cases += [trial_case("trial: setup a list", "[1]", "{}", ["trial.json"]),
              trial_case("trial: setup truncated", '{"data": "dig', "{}", ["trial.json"]),
              trial_case("trial: params not JSON", json.dumps(good), "{depth", ["--params"]),
              trial_case("trial: depth 2.0", json.dumps(good), '{"depth": 2.0}', ["depth"]),
              trial_case("trial: device mps", json.dumps({**good, "device": "mps"}), "{}", ["mps"]),
              trial_case("trial: train lr NaN", json.dumps({**good, "train": {"lr": float("nan")}}), "{}",
                         ["train.lr"])]
    return cases


def memory_file_cases(ws: Workspace) -> list[Case]:
    cause = "save_memory onto something that is not a folder"

    def onto_file(f, state):
        (f / "m").write_text("x")
        new_buffer().save(str(f / "m"))

    def under_file(f, state):
        (f / "m").write_text("x")
        new_buffer().save(str(f / "m" / "sub"))
    return [api_case(4, cause, "save_memory onto a file", onto_file, ["is a file"],
                     check=lambda f, s: [] if (f / "m").read_text() == "x" else ["the file was changed"]),
            api_case(4, cause, "save_memory under a file", under_file, ["is a file"]),
            api_case(4, cause, "save_memory to an empty name", lambda f, s: new_buffer().save(""), ["folder"])]


def limit_cases(ws: Workspace) -> list[Case]:
    """Values every check of its own type passes but a library underneath refuses or cannot hold."""
    cause = "a value past what the libraries underneath take"
    big = str(2 ** 32)
    cases = [
        cli_case(4, cause, "cl run --seeds 2**32", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o", "--seeds", big],
                 ["--seeds", big], before_work=True, prepare=ws.config),
        cli_case(4, cause, "YAML seeds [2**32]", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o"], ["seeds"],
                 before_work=True, prepare=lambda f: ws.config(f, seeds=[2 ** 32])),
        cli_case(4, cause, "nas init --seed 2**32", ["nas", "init", "--data", "digits", "--proxy", ws.set,
                                                     "--out", "{f}/e", "--seed", big], ["--seed"], before_work=True),
        cli_case(4, cause, "condense --seed 2**32", condense_argv("{f}/o.pt", "dm", "digits", "--seed", big),
                 ["--seed"], before_work=True),
        cli_case(4, cause, "condense --iterations 10**11 (memory)",
                 condense_argv("{f}/o.pt", "dm", "digits", "--iterations", str(10 ** 11)), ["memory"],
                 absent=["{f}/o.pt"]),
        cli_case(4, cause, "a network too wide to allocate",
                 condense_argv("{f}/o.pt", "dm", "digits", "--model-options", '{"width": 100000000}'), ["memory"],
                 absent=["{f}/o.pt"]),
        cli_case(4, cause, "width as a float", condense_argv("{f}/o.pt", "dm", "digits", "--model-options",
                                                             '{"width": 8.5}'), ["width"], before_work="training"),
        cli_case(4, cause, "depth as true", ["evaluate", ws.set, "--data", "digits", "--model-options",
                                             '{"depth": true}'], ["depth"], before_work="training"),
        cli_case(4, cause, "checkpoint path taken by a folder", condense_argv("{f}/o.pt"), ["o.pt.ckpt"],
                 before_work=True, prepare=lambda f: (f / "o.pt.ckpt").mkdir()),
    ]
    for options in ({"ipc": 3}, {"seed": 4}):
        def call(folder, state, options=options):
            from dcapps.replay import ReducedSetBuffer
            ReducedSetBuffer(ipc=1, method_settings=options)
        cases.append(api_case(4, cause, f"replay options {options}", call, list(options)))
    return cases


def group4(ws: Workspace) -> list[Case]:
    return (tiny_image_cases(ws) + undecodable_cases(ws) + device_cases(ws) + malformed_file_cases(ws)
            + cl_file_cases(ws) + nni_cases(ws) + memory_file_cases(ws) + limit_cases(ws))


# group 5 ----------------------------------------------------------------------------------------

def fake_qpsolvers(ws: Workspace):
    """A qpsolvers that warns on import, as it does without a solver: a cl run does not show it."""
    def fn(folder: Path, result: Outcome) -> None:
        (folder / "fake" / "qpsolvers").mkdir(parents=True)
        (folder / "fake" / "qpsolvers" / "__init__.py").write_text(
            "import warnings\nwarnings.warn('no QP solver found on your system, you can install solvers from PyPI')\n"
            "def solve_qp(*a, **k):\n    raise RuntimeError\n")
        env = {**ENV, "PYTHONPATH": f"{folder / 'fake'}{os.pathsep}{ROOT}"}
        code, out, err = subprocess_cli(["cl", "run", ws.config(folder), "--out", folder / "o", "--quiet"], folder, env)
        result.code, result.stderr = code, err.strip()[-1500:]
        if code != 0 or err.strip():
            result.problems.append(f"exit {code}; stderr {err.strip()[-300:]!r}")
    return fn


def bad_config_line(ws: Workspace):
    """A refused config in a fresh process: exactly its one line, nothing from Avalanche's import."""
    def fn(folder: Path, result: Outcome) -> None:
        code, _, err = subprocess_cli(["cl", "run", ws.config(folder, train={"lr": -1}), "--out", folder / "o"],
                                      folder)
        judge(result, code, err, 2, ["train.lr"], folder=folder)
    return fn


def nnictl_quiet(folder: Path, result: Outcome) -> None:
    """nnictl (NNI's own command, never started by dcapps) prints pkg_resources' deprecation; the
    NAS page (docs/nas.md) says how to hide it, and that works."""
    setting = "ignore:pkg_resources is deprecated"
    if setting not in (ROOT / "docs" / "nas.md").read_text():
        result.problems.append("docs/nas.md does not say how to hide it")
    done = subprocess.run([str(Path(sys.executable).parent / "nnictl"), "--help"], capture_output=True, text=True,
                          timeout=CASE_SECONDS, env={**ENV, "PYTHONWARNINGS": setting})
    result.code, result.stderr = done.returncode, done.stderr.strip()
    if done.returncode != 0 or "pkg_resources" in done.stderr:
        result.problems.append(f"nnictl still warns: {done.stderr.strip()[-200:]!r}")


def empty_training_folder(ws: Workspace):
    def prepare(f: Path) -> None:
        for c in ("a", "b"):
            (f / "d" / "train" / c).mkdir(parents=True)
        (f / "d" / "test" / "a").mkdir(parents=True)
        shutil.copy(ws.folder / "test" / "c0" / "0.png", f / "d" / "test" / "a")
    return prepare


def group5(ws: Workspace) -> list[Case]:
    cause = "a message about the wrong thing"
    cases = [cli_case(5, cause, "ImageFolder with all training classes empty", select_argv("{f}/o.pt", "{f}/d"),
                      ["train", "no images"], prepare=empty_training_folder(ws))]
    arrays = {"x_train 2-D": np.zeros((8, 8)), "x_train floats above 1": np.full((8, 8, 8), 2.0),
              "x_train without pixels": np.zeros((8, 8, 8, 0)), "x_train of text": np.full((8, 8, 8), "a")}
    for name, xs in arrays.items():
        path = ws.save_npz(f"named_{name.replace(' ', '_')}.npz", xs, np.arange(8) % 2, np.zeros((2, 8, 8), np.uint8),
                           np.arange(2))
        cases.append(cli_case(5, cause, name, select_argv("{f}/o.pt", path), [path, "x_train"], keep=[path]))
    path = ws.save_npz("named_y_train.npz", ws.x[:8], np.zeros((8, 2)), ws.x[:2], np.arange(2))
    cases.append(cli_case(5, cause, "y_train 2-D", select_argv("{f}/o.pt", path), [path, "y_train"], keep=[path]))
    cases.append(cli_case(5, cause, "evaluate a folder", ["evaluate", "{f}", "--data", "digits"], ["directory"]))
    cause = "other libraries' warnings drowning the line"
    cases += [custom_case(5, cause, "cl run with qpsolvers warning at import", fake_qpsolvers(ws)),
              custom_case(5, cause, "a refused config in a fresh process", bad_config_line(ws)),
              custom_case(5, cause, "nnictl with the documented warning filter", nnictl_quiet)]
    return cases


# --- the campaign -------------------------------------------------------------------------------

def run_campaign(groups: list[int], root: Path) -> list[Outcome]:
    torch.set_num_threads(1)
    ws = Workspace(root)
    builders = {1: group1, 2: group2, 3: group3, 4: group4, 5: group5}
    cases = [c for g in groups for c in builders[g](ws)]
    outcomes = []
    for i, case in enumerate(cases):
        folder = root / "cases" / f"{i:03d}"
        folder.mkdir(parents=True)
        t0 = time.time()
        try:
            outcome = case.run(folder)
        except Exception as e:  # noqa: BLE001 (a case that could not be set up counts as not handled)
            outcome = Outcome(case.group, case.cause, case.name, problems=[f"the case failed: {e!r}"])
        outcome.seconds = round(time.time() - t0, 2)
        outcome.handled = not outcome.problems
        outcomes.append(outcome)
        mark = "ok " if outcome.handled else "BAD"
        print(f"{mark} [{case.group}] {case.name}" + ("" if outcome.handled else f": {'; '.join(outcome.problems)}"),
              flush=True)
    return outcomes


def report(outcomes: list[Outcome]) -> str:
    lines = []
    for g, title in GROUPS.items():
        mine = [o for o in outcomes if o.group == g]
        if not mine:
            continue
        lines += ["", f"{g}. {title}", "| cause | tried | handled |", "|---|---:|---:|"]
        causes: dict[str, list] = {}
        for o in mine:
            causes.setdefault(o.cause, []).append(o)
        for cause, found in causes.items():
            lines.append(f"| {cause} | {len(found)} | {sum(o.handled for o in found)} |")
        lines.append(f"| all | {len(mine)} | {sum(o.handled for o in mine)} |")
    bad = [o for o in outcomes if not o.handled]
    if bad:
        lines += ["", "not handled:"] + [f"- [{o.group}] {o.name}: {'; '.join(o.problems)}" for o in bad]
    lines += ["", f"{len(outcomes)} tried, {sum(o.handled for o in outcomes)} handled"]
    return "\n".join(lines)


def main_campaign() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON file of every case's outcome")
    p.add_argument("--groups", default="1,2,3,4,5", help="comma list of the groups to run")
    p.add_argument("--keep", default=None, metavar="DIR", help="build and keep the cases' files in DIR")
    args = p.parse_args()
    groups = [int(g) for g in args.groups.split(",")]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dcapps-hostile-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        outcomes = run_campaign(groups, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = report(outcomes)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"tried": len(outcomes), "handled": sum(o.handled for o in outcomes),
                                          "seconds": round(time.time() - t0, 1), "torch": torch.__version__,
                                          "cases": [asdict(o) for o in outcomes]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main_campaign())
