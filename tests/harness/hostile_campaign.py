"""The hostile-input campaign: bad and hostile inputs across every command and the replay API,
each run and classified as handled or not. CI runs it after the test suite; its exit status is 1
unless every case is handled.

    OMP_NUM_THREADS=1 python tests/harness/hostile_campaign.py --jobs 2 --out runs/hostile/campaign.json

(`make hostile`; `--jobs N` shares the cases among N processes, `--match` picks cases by name.)

The cases are built here, per cause, in the groups of the campaigns that found the problems
(1 results silently wrong, 2 data lost or overwritten, 3 work wasted before an error that could
have come first, 4 tracebacks instead of one line, 5 misleading or noisy messages, 6 text that
becomes a shell's command line on another machine), plus kill -9, SIGINT and SIGTERM followed by
--resume for every registered condensation method (group 2: a resumed run must give the
uninterrupted set bit for bit). Settings cases are generated from the settings' own
declarations, so a method added later is tried too. The inputs shared with `tests/test_hostile.py`
come from `hostile_inputs`.

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
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import condense_core  # noqa: E402
import condense_core.evaluate as evaluate_module  # noqa: E402
from condense_core import InputError, ReducedSet  # noqa: E402
from condense_core.registry import methods  # noqa: E402
from condense_core.settings import flag_name, settings_of  # noqa: E402
from dcapps.cli import main  # noqa: E402
from harness.hostile_inputs import (bomb_png, changed, cheap_rank_eval, checkpoint_of_two_iterations,  # noqa: E402
                                    condense_argv, edited, memory_set, nni_database, reduced_set, refusal_problems,
                                    save_npz, select_argv, snapshot, write_config)

GROUPS = {1: "results silently wrong", 2: "data lost or overwritten", 3: "work wasted before an error",
          4: "tracebacks instead of one line", 5: "misleading or noisy messages",
          6: "text that becomes a shell command elsewhere"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
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
    index: int = 0  # the case's place in the campaign


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
    """Fill `result` from one run: exit status, one line naming `words` (`refusal_problems`),
    files kept, nothing left; `before_work`: True (or "any") refuses any work before the refusal,
    "training" only training."""
    result.code, result.stderr = code, err.strip()[-1500:]
    if expect == 2:
        result.problems += refusal_problems(code, err, words, keep)
    else:
        result.problems += [f"exit {code}, expected {expect}"] * (code != expect) + ["traceback"] * ("Traceback" in err)
        result.problems += changed(keep or {})
    result.problems += [f"wrote {path}" for path in absent if Path(path).exists()]
    late = [w for w in (work or []) if before_work in (True, "any") or w == "network trained"] if before_work else []
    if late:
        result.problems.append(f"refused only after work ({', '.join(late)})")
    if folder is not None:
        result.problems += leftovers(folder, allow_lock)
    return result


# --- the workspace: files every case may read ---------------------------------------------------

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
        self.digits = condense_core.load_data("digits")
        self.set = reduced_set(self.digits, self.dir / "set.pt")
        self.folder = self.image_folder("folder", lambda split, i: x[i])
        self.checkpoint_file = self.dir / "reference.ckpt"
        self.checkpoint_state = checkpoint_of_two_iterations(self.digits, self.checkpoint_file)
        self.runs: dict[str, Path] = {}

    def save_npz(self, name, x_train, y_train, x_test=None, y_test=None) -> Path:
        return save_npz(self.dir / name, x_train, y_train, x_test, y_test)

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
        return edited(self.set, self.dir / name, **changes)

    def checkpoint_beside(self, out: Path, **changes) -> Path:
        """A copy of the reference checkpoint next to `out`, with fields changed (see `edited`)."""
        return edited(self.checkpoint_file, Path(str(out) + ".ckpt"), **changes)

    def config(self, folder: Path, file="cl.yaml", **changes) -> Path:
        """A tiny `cl run` config in `folder`, with top-level keys changed."""
        return write_config(folder, file, **changes)

    def finished_run(self, name: str, epochs: int) -> Path:
        """The folder of a finished tiny `cl run` (naive, seed 0, `epochs` epochs), made once."""
        if name not in self.runs:
            out = self.dir / "runs" / name
            out.parent.mkdir(exist_ok=True)
            config = self.config(self.dir, f"{name}.yaml", train={"epochs": epochs, "batch_size": 128})
            code, _, err, _ = in_process(["cl", "run", config, "--out", out, "--quiet"], self.dir)
            if code != 0:
                raise RuntimeError(f"the run to start from failed: {err.strip()[-300:]}")
            self.runs[name] = out
        return self.runs[name]


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
                "memory.mem_size": {"memory": {"mem_size": -3}}, "methods.lr_img": {"methods": {"lr_img": nan}},
                "methods.dm.lr_img": {"methods": {"dm": {"lr_img": inf}}},
                "methods.lcmat.rho": {"methods": {"lcmat": {"rho": -inf}}},
                "methods.herding.selection_epochs": {"methods": {"herding": {"selection_epochs": 0}}},
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
    cases = (settings_cases(ws) + unit_digest_cases(ws) + bound_settings_cases(ws) + strict_yaml_cases(ws)
             + nonfinite_checkpoint_cases(ws))
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
                                  condense_argv("{f}/o.pt", "--lr-img", "1e30", method=method), ["diverged"],
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
            code, _, err, _ = in_process(condense_argv(whole, "--iterations", "24", method=method), folder)
            if code != 0:
                result.problems.append(f"the uninterrupted run failed: {err.strip()[-300:]}")
                return
            reference[method] = ReducedSet.load(str(whole)).images
        out = folder / "out.pt"
        every = [] if how == "kill-early" else ["--checkpoint-every", "3"]
        argv = condense_argv(out, "--iterations", "24", *every, method=method)
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


def shared_folder(ws: Workspace):
    """Two `cl run`s on one folder at once share its units, as workers and shards do (a sweep
    folder, not one output): both end well, every unit runs once, and the folder has them all."""
    def fn(folder: Path, result: Outcome) -> None:
        argv = ["cl", "run", ws.config(folder, seeds=[0, 1], train={"epochs": 5, "batch_size": 128}),
                "--out", folder / "out"]
        first = subprocess.Popen([sys.executable, "-m", "dcapps", *map(str, argv)], cwd=folder, env=ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + CASE_SECONDS
            while not list((folder / "out").glob("claims/*.lock")) and first.poll() is None and time.time() < deadline:
                time.sleep(0.01)  # until the first run holds a unit
            code, out, err, _ = in_process(argv, folder)
        finally:
            first_out, first_err = first.communicate(timeout=CASE_SECONDS)
        result.code, result.stderr = code, (err + first_err).strip()[-1500:]
        ran = sorted(f"{w[0]}-seed{w[2].rstrip(':')}" for line in (out + first_out).splitlines()
                     if (w := line.split())[1:2] == ["seed"])
        if code != 0 or first.returncode != 0:
            result.problems.append(f"exit {first.returncode} and {code}")
        if ran != ["naive-seed0", "naive-seed1"]:
            result.problems.append(f"units run: {ran}")
        result.problems += leftovers(folder)
    return fn


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
        cli_case(2, cause, "condense --out is --data", condense_argv(npz, data=str(npz)), ["--data"], keep=[npz]),
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
        cli_case(2, cause, "other settings, no --resume", condense_argv("{f}/o.pt", "--lr-img", "3"),
                 ["o.pt.ckpt", "--restart"], keep=["{f}/o.pt.ckpt"], absent=["{f}/o.pt"], prepare=beside),
        cli_case(2, cause, "same settings, no --resume", condense_argv("{f}/o.pt"), ["o.pt.ckpt", "--resume"],
                 keep=["{f}/o.pt.ckpt"], absent=["{f}/o.pt"], prepare=beside),
        cli_case(2, cause, "--resume and --restart", [*condense_argv("{f}/o.pt"), "--resume", "--restart"],
                 ["--restart"], keep=["{f}/o.pt.ckpt"], prepare=beside),
        cli_case(2, cause, "--restart replaces it when asked",
                 [*condense_argv("{f}/o.pt", "--lr-img", "3"), "--restart"], expect=0,
                 absent=["{f}/o.pt.ckpt"], prepare=beside),
        cli_case(2, cause, "an earlier output kept when a run is refused",
                 ["condense", "--data", "digits", "--method", "dm", "--ipc", "1000", "--out", "{f}/keep.pt"],
                 ["ipc"], keep=["{f}/keep.pt"], prepare=lambda f: (f / "keep.pt").write_bytes(b"precious")),
    ]
    cases += [
        second_run_case("condense twice on one --out",
                        condense_argv("{f}/o.pt", "--iterations", "100000", "--checkpoint-every", "1"),
                        condense_argv("{f}/o.pt"), "o.pt.ckpt"),
        custom_case(2, "two runs writing one output", "cl run twice on one --out: its units shared",
                    shared_folder(ws)),
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
        cli_case(3, cause, "rank-eval --out a file, with a trailing slash", [*rank_eval, "--out", "{f}/plain/"],
                 ["--out"], before_work=True, keep=["{f}/plain"], prepare=unwritable),
        cli_case(3, cause, "condense --png onto a directory", condense_argv("{f}/o.pt", "--png"),
                 ["--png"], before_work=True, prepare=lambda f: (f / "o.png").mkdir()),
        api_case(3, cause, "save_memory into /proc", lambda f, s: new_buffer().save("/proc/dcapps-memory"),
                 ["/proc"]),
    ]
    cause = "a late refusal that could come first"
    cl_run = ["cl", "run", "{f}/cl.yaml", "--out", "{f}/out"]
    cases += [
        cli_case(3, cause, "YAML methods.dm value", cl_run, ["methods.dm.batch_real"], before_work=True,
                 absent=["{f}/out"], prepare=lambda f: ws.config(f, methods={"dm": {"batch_real": 0}})),
        cli_case(3, cause, "YAML methods.lcmat unknown key", cl_run, ["methods.lcmat.pool"], before_work=True,
                 prepare=lambda f: ws.config(f, methods={"lcmat": {"pool": 1}})),
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
                              condense_argv("{f}/o.pt", "--resume", method=method),
                              ["o.pt.ckpt", "method='dm'"] if other else [], expect=2 if other else 0,
                              keep=["{f}/o.pt.ckpt"] if other else [], before_work="training" if other else False,
                              prepare=beside))
    cases.append(cli_case(3, cause, "one setting differs",
                          [*condense_argv("{f}/o.pt", "--batch-real", "9"), "--resume"],
                          ["batch_real=8", "9"], keep=["{f}/o.pt.ckpt"], prepare=beside,
                          check=lambda f, o, e: ["a whole config printed"] if "{" in e else []))
    return cases + rank_eval_write_cases(ws)


# group 4 ----------------------------------------------------------------------------------------

def tiny_image_cases(ws: Workspace) -> list[Case]:
    cases = []
    for side in (1, 3, 7):
        data = ws.dir / f"tiny{side}.npz"
        commands = {"condense dm": condense_argv("{f}/o.pt", data=data),
                    "condense lcmat": condense_argv("{f}/o.pt", method="lcmat", data=data),
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
            ("bomb", bomb_png, "decompression"),
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
        commands = {"condense": condense_argv("{f}/o.pt", "--device", device),
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
                 "meta factor as text": dict(meta={"factor": "2"}),
                 "meta factor past the size": dict(meta={"factor": 9})}
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
        from condense_core.sweep import Sweep
        from scenarios.runner import plan

        cfg = load_config(str(ws.config(f)))
        (f / "o" / "units").mkdir(parents=True, exist_ok=True)
        Sweep(str(f / "o"), cfg.settings()).plan(plan(cfg))
        (f / "o" / target).write_bytes(content)

    damaged = {"truncated": b'{"strategy": "naive", "se', "a list": b"[]", "not UTF-8": b"\xff\xfe",
               "another strategy's": json.dumps({"strategy": "joint", "seed": 0, "accuracy": [0.5, 0.5]}).encode()}
    for target in ("units/naive-seed0.json", "sweep.json"):
        for name, content in damaged.items():
            if target == "sweep.json" and name == "another strategy's":
                continue
            cases.append(cli_case(4, cause, f"{target} {name}", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o"],
                                  [target], keep=[f"{{f}}/o/{target}"], before_work="training",
                                  prepare=lambda f, t=target, c=content: folder_with(f, t, c),
                                  check=lambda f, o, e: ["ran anyway"] if (f / "o" / "results.json").exists() else []))
    return cases


def nni_cases(ws: Workspace) -> list[Case]:
    cause = "an NNI database with foreign content"

    def database(f: Path, metrics, events=None, schema=True) -> None:
        good = json.dumps(json.dumps({"default": 0.9, "params": 10, "train_time_s": 1.0}))
        nni_database(f / "exp" / "EXP" / "db" / "nni.sqlite", [("good", good), *metrics], events, schema)

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
        cli_case(4, cause, "condense --seed 2**32", condense_argv("{f}/o.pt", "--seed", big),
                 ["--seed"], before_work=True),
        cli_case(4, cause, "condense --iterations 10**11 (memory)",
                 condense_argv("{f}/o.pt", "--iterations", str(10 ** 11)), ["memory"],
                 absent=["{f}/o.pt"]),
        cli_case(4, cause, "a network too wide to allocate",
                 condense_argv("{f}/o.pt", "--model-options", '{"width": 100000000}'), ["memory"],
                 absent=["{f}/o.pt"]),
        cli_case(4, cause, "width as a float", condense_argv("{f}/o.pt", "--model-options",
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
            + cl_file_cases(ws) + nni_cases(ws) + memory_file_cases(ws) + limit_cases(ws) + size_cases(ws)
            + run_folder_cases(ws))


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
              custom_case(5, cause, "nnictl with the documented warning filter", nnictl_quiet),
              custom_case(5, cause, "a worker killed in its unit", killed_worker_case)]
    return cases


# issue 33: results folders, writes before the last check, settings that bound one another, YAML,
# sizes, remote command lines, non-finite checkpoints ------------------------------------------

def tree(folder: Path) -> dict:
    """Every file under `folder` (relative path -> bytes): to see that a refusal left it as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def finished_folder(ws: Workspace, unit_from: str | None = None, strip_digest: bool = False,
                    units_a_file: bool = False):
    """`prepare`: `{f}/o` a copy of a finished run, its unit replaced by the one of a run of other
    settings (`unit_from`), stripped of its settings digest, or `units/` replaced by a file."""
    def prepare(f: Path) -> None:
        shutil.copytree(ws.finished_run("epochs1", 1), f / "o")
        unit = f / "o" / "units" / "naive-seed0.json"
        if unit_from is not None:
            shutil.copy(ws.finished_run(unit_from, 2) / "units" / "naive-seed0.json", unit)
        if strip_digest:
            from condense_core.sweep import DIGEST
            unit.write_text(json.dumps({k: v for k, v in json.loads(unit.read_text()).items() if k != DIGEST}))
        if units_a_file:
            shutil.rmtree(f / "o" / "units")
            (f / "o" / "units").write_text("x")
        ws.config(f)  # the run's own config (the same settings as epochs1's)
        (f / "tree.json").write_text(json.dumps(sorted(tree(f / "o"))))
    return prepare


def folder_kept(f: Path, out, err) -> list[str]:
    return [] if sorted(tree(f / "o")) == json.loads((f / "tree.json").read_text()) else ["files added or removed"]


def unit_digest_cases(ws: Workspace) -> list[Case]:
    cause = "a unit of other settings taken as finished"
    report, run = ["cl", "report", "{f}/o"], ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o"]
    kept = ["{f}/o/report.md", "{f}/o/results.json", "{f}/o/units/naive-seed0.json"]
    return [cli_case(1, cause, f"cl {command[1]}: {name}", command, ["naive-seed0.json"], keep=kept,
                     before_work="training", prepare=finished_folder(ws, **how), check=folder_kept)
            for name, how in (("a unit of another run copied in", {"unit_from": "epochs2"}),
                              ("a unit without a settings digest", {"strip_digest": True}))
            for command in (report, run)]


def bound_settings_cases(ws: Workspace) -> list[Case]:
    """Settings that bound one another (queue_size bounds train_nets) refused wherever they are
    given; a queue of none is recorded as what ran."""
    cause = "a setting that silently does not take effect"
    cases = []
    for method, cls in methods("condense").items():
        if {"queue_size", "train_nets"} <= set(settings_of(cls)):
            cases.append(cli_case(1, cause, f"{method} --queue-size 2 --train-nets 3",
                                  condense_argv("{f}/o.pt", "--train-nets", "3", method=method),
                                  ["train_nets 3", "queue_size 2"], absent=["{f}/o.pt"], before_work=True))

            def recorded(f, out, err):
                meta = ReducedSet.load(str(f / "o.pt")).meta
                return [] if (meta["train_nets"], meta["ce_weight"]) == (0, 0.0) else [f"meta records {meta}"]
            cases.append(cli_case(1, cause, f"{method} --queue-size 0: the metadata says what ran",
                                  condense_argv("{f}/o.pt", "--queue-size", "0", method=method), expect=0,
                                  check=recorded))
    bad = {"queue_size": 1, "train_nets": 2}
    cases += [
        cli_case(1, cause, "YAML methods.idm queue_size 1, train_nets 2",
                 ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o"], ["methods.idm", "queue_size"], absent=["{f}/o"],
                 before_work="training",
                 prepare=lambda f: ws.config(f, strategies=["idmreplay"], methods={"idm": bad})),
        cli_case(1, cause, "rank-eval --method-settings queue_size 1, train_nets 2",
                 ["nas", "rank-eval", "--data", "digits", "--condense", "idm", "--ipc", "1", "--method-settings",
                  json.dumps(bad), "--out", "{f}/r"], ["--method-settings", "queue_size"], absent=["{f}/r"],
                 before_work=True)]
    return cases


def strict_yaml_cases(ws: Workspace) -> list[Case]:
    cause = "YAML that does not say what it seems"
    texts = {"a key twice in train": (b"data: digits\ntrain: {epochs: 1, epochs: 5}\n", ["c.yaml", "epochs"]),
             "data twice": (b"data: digits\nexperiences: 2\ndata: mnist\n", ["c.yaml", "'data'", "line 3"]),
             "a merge key": (b"data: digits\ntrain: {<<: {epochs: 5}, lr: 0.1}\n", ["c.yaml", "merge"]),
             "an alias": (b"data: digits\nseeds: &s [0]\nx: *s\n", ["c.yaml", "anchor"])}
    cases = [cli_case(1, cause, f"YAML {name}", ["cl", "run", "{f}/c.yaml", "--out", "{f}/o"], words,
                      before_work=True, absent=["{f}/o"], prepare=lambda f, t=text: (f / "c.yaml").write_bytes(t))
             for name, (text, words) in texts.items()]

    def lr_read(f, out, err):
        return ["1e-2 read as text"] if "train.lr" in err else []
    cases.append(cli_case(1, cause, "YAML lr 1e-2 is a number", ["cl", "run", "{f}/c.yaml", "--out", "{f}/o"],
                          ["train.epochs"], before_work=True, check=lr_read,
                          prepare=lambda f: (f / "c.yaml").write_text("data: digits\ntrain: {lr: 1e-2, epochs: 0}\n")))
    return cases


def short_line(f, out, err) -> list[str]:
    return [] if len(err) < 1000 else [f"a message of {len(err)} characters"]


def size_cases(ws: Workspace) -> list[Case]:
    """Values that would take unbounded memory or time, refused with their bound."""
    cause = "a size without a bound"
    laughs = "data: digits\n" + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else '0'] * 9)}]\n"
                                         for i in range(9)) + "seeds: *l8\n"
    cases = [
        cli_case(4, cause, "YAML seeds from a billion laughs", ["cl", "run", "{f}/c.yaml", "--out", "{f}/o"],
                 ["c.yaml"], before_work=True, check=short_line, prepare=lambda f: (f / "c.yaml").write_text(laughs)),
        cli_case(4, cause, "YAML name of 1 MB", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o"], ["name", "at most"],
                 before_work=True, check=short_line, prepare=lambda f: ws.config(f, name="n" * 10 ** 6)),
        cli_case(4, cause, "cl run --workers 100000", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o", "--workers",
                                                       "100000"], ["--workers", "at most"], before_work=True,
                 absent=["{f}/o"], prepare=ws.config),
        cli_case(4, cause, "rank-eval --workers 100000", ["nas", "rank-eval", "--data", "digits", "--proxy", ws.set,
                                                          "--workers", "100000", "--out", "{f}/r"],
                 ["--workers", "at most"], before_work=True, absent=["{f}/r"]),
    ]
    for number in (10 ** 5, 10 ** 6):
        cases.append(cli_case(4, cause, f"m3d --kernel-num {number}",
                              condense_argv("{f}/o.pt", "--kernel-num", str(number), method="m3d"),
                              ["--kernel-num", "at most"], absent=["{f}/o.pt"], before_work=True))
    cases.append(cli_case(4, cause, "m3d --kernel-mul 1e300", condense_argv("{f}/o.pt", "--kernel-mul", "1e300",
                                                                          method="m3d"),
                          ["kernel_mul", "kernel_num"], absent=["{f}/o.pt"], before_work=True))
    return cases


def run_folder_cases(ws: Workspace) -> list[Case]:
    """`cl report` on what is not a run: one line, nothing left in it."""
    cause = "a folder that is not a run"
    return [cli_case(4, cause, "cl report: no such folder", ["cl", "report", "{f}/none"], ["none", "no such folder"],
                     absent=["{f}/none"]),
            cli_case(4, cause, "cl report: a file", ["cl", "report", "{f}/plain"], ["plain", "not a folder"],
                     keep=["{f}/plain"], prepare=unwritable),
            cli_case(4, cause, "cl report: an empty folder", ["cl", "report", "{f}/e"], ["sweep.json"],
                     prepare=lambda f: (f / "e").mkdir(), check=lambda f, o, e: [] if not list((f / "e").iterdir())
                     else ["wrote in it"]),
            cli_case(4, cause, "cl report: units/ a file", ["cl", "report", "{f}/o"], ["units", "not a folder"],
                     keep=["{f}/o/report.md"], prepare=finished_folder(ws, units_a_file=True), check=folder_kept),
            cli_case(4, cause, "cl run: units/ a file", ["cl", "run", "{f}/cl.yaml", "--out", "{f}/o"],
                     ["units", "not a folder"], keep=["{f}/o/report.md"], before_work="training",
                     prepare=finished_folder(ws, units_a_file=True), check=folder_kept)]


def corrected_rank_eval(folder: Path, result: Outcome) -> None:
    """A rank-eval refused after its first write (its dm proxy diverges) removes what it wrote;
    the corrected command then runs in the same --out."""
    code, _, err, _ = in_process(cheap_rank_eval(folder, {"iterations": 4, "lr_img": 1e30}), folder)
    judge(result, code, err, 2, ["diverged"], absent=[folder / "r"], folder=folder)
    code, _, err, _ = in_process(cheap_rank_eval(folder, {"iterations": 2}), folder)
    if code != 0 or not (folder / "r" / "result.json").is_file():
        result.problems.append(f"the corrected command: exit {code} ({err.strip()[-300:]})")


def rank_eval_write_cases(ws: Workspace) -> list[Case]:
    cause = "a refused run that wrote first"
    bad = {"a wrong type": {"lr_img": "fast"}, "NaN": {"lr_img": float("nan")}, "a negative": {"iterations": -1},
           "an overflowing number": {"iterations": 10 ** 30}, "device meta": {"device": "meta"}, "an ipc": {"ipc": 2},
           "a seed": {"seed": 1}}
    cases = [cli_case(3, cause, f"rank-eval --method-settings {name}",
                      ["nas", "rank-eval", "--data", "digits", "--condense", "dm", "--ipc", "1", "--method-settings",
                       json.dumps(settings), "--out", "{f}/r"], ["--method-settings", *settings],
                      absent=["{f}/r"], before_work=True)
             for name, settings in bad.items()]
    cases.append(custom_case(3, cause, "rank-eval refused after its first write, then corrected", corrected_rank_eval))
    return cases


def nonfinite_checkpoint_cases(ws: Workspace) -> list[Case]:
    cause = "a checkpoint taken at its word"
    return [cli_case(1, cause, f"resume from {name}", condense_argv("{f}/o.pt", "--resume"), ["o.pt.ckpt", field],
                     keep=["{f}/o.pt.ckpt"], absent=["{f}/o.pt"], before_work="training",
                     prepare=lambda f, c={field: bad}: ws.checkpoint_beside(f / "o.pt", **c))
            for name, field, bad in (
                ("NaN images", "images", lambda t: t.index_fill(0, torch.tensor([0]), float("nan"))),
                ("infinite momentum", "momentum", lambda t: t.index_fill(0, torch.tensor([1]), float("inf"))))]


def killed_worker_case(folder: Path, result: Outcome) -> None:
    """A worker killed in its unit: the command's message is one line, without the warnings of
    the semaphores the worker left."""
    from harness.hostile_inputs import killed_worker

    code, err = killed_worker(folder, ENV)
    result.code, result.stderr = code, err.strip()
    lines = err.strip().splitlines()
    if code != 0 or len(lines) != 1 or "ended early" not in lines[0]:
        result.problems.append(f"exit {code}, {len(lines)} stderr lines: {err.strip()[-300:]!r}")


def shell_text_cases(ws: Workspace) -> list[Case]:
    """Every value `nas init --training-service remote` writes where NNI builds a remote command
    line, with shell metacharacters: refused, naming the flag, nothing written."""
    cause = "a value that would run on the remote machine"
    remote = ["nas", "init", "--data", "digits", "--proxy", ws.set, "--out", "{f}/exp", "--training-service",
              "remote", "--ssh-key", "{f}/plain"]
    machine = ["--machine", "me@host"]
    values = {"--machine": ["me;touch x@host", "`id`@host", "me@host;touch x", "me@$(id)", "-oProxyCommand=x@host",
                            "me@host name"],
              "--python": ["/opt/py;touch x/python", "/opt/$(id)/python", "/opt/py bin/python", "/opt/`id`/python"],
              "--manager-ip": ["10.0.0.1;touch x", "$(hostname -I)", "nni.example.org"]}
    return [cli_case(6, cause, f"nas init {flag} {value!r}",
                     [*remote, *([] if flag == "--machine" else machine), flag, value], [flag],
                     absent=["{f}/exp"], before_work=True, keep=["{f}/plain"], prepare=unwritable)
            for flag, texts in values.items() for value in texts]


def group6(ws: Workspace) -> list[Case]:
    return shell_text_cases(ws)


# --- the campaign -------------------------------------------------------------------------------

def run_campaign(groups: list[int], root: Path, match: tuple[str, ...] = ("",), shard: tuple[int, int] = (0, 1)
                 ) -> list[Outcome]:
    """Build the cases of `groups` whose names hold one of `match`, and run those of `shard`
    (0-based I of N: every N-th case from the I-th), each in a folder of its own under `root`."""
    torch.set_num_threads(1)
    ws = Workspace(root)
    builders = {1: group1, 2: group2, 3: group3, 4: group4, 5: group5, 6: group6}
    cases = [c for g in groups for c in builders[g](ws) if any(m in c.name for m in match)]
    outcomes = []
    for i, case in enumerate(cases):
        if i % shard[1] != shard[0]:
            continue
        folder = root / "cases" / f"{i:03d}"
        folder.mkdir(parents=True)
        t0 = time.time()
        try:
            outcome = case.run(folder)
        except Exception as e:  # noqa: BLE001 (a case that could not be set up counts as not handled)
            outcome = Outcome(case.group, case.cause, case.name, problems=[f"the case failed: {e!r}"])
        outcome.seconds, outcome.index = round(time.time() - t0, 2), i
        outcome.handled = not outcome.problems
        outcomes.append(outcome)
        mark = "ok " if outcome.handled else "BAD"
        print(f"{mark} [{case.group}] {case.name}" + ("" if outcome.handled else f": {'; '.join(outcome.problems)}"),
              flush=True)
    return outcomes


def in_jobs(jobs: int, groups: str, match: str) -> list[Outcome]:
    """The campaign in `jobs` processes, one shard each (its own workspace and one thread), merged
    in case order: on a machine with that many cores, the same cases in a `jobs`-th of the time."""
    with tempfile.TemporaryDirectory(prefix="dcapps-hostile-jobs-") as parts:
        runs = [subprocess.Popen([sys.executable, __file__, "--out", f"{parts}/{k}.json", "--groups", groups, "--match",
                                  match, "--shard", f"{k + 1}/{jobs}"], env=ENV) for k in range(jobs)]
        for run in runs:
            run.wait()
        outcomes = []
        for k in range(jobs):
            part = Path(parts) / f"{k}.json"
            if not part.exists():
                raise RuntimeError(f"the campaign's shard {k + 1}/{jobs} ended without its results")
            outcomes += [Outcome(**case) for case in json.loads(part.read_text())["cases"]]
    return sorted(outcomes, key=lambda o: o.index)


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
    from condense_core.sweep import parse_shard

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON file of every case's outcome")
    p.add_argument("--groups", default=",".join(map(str, GROUPS)), help="comma list of the groups to run")
    p.add_argument("--keep", default=None, metavar="DIR", help="build and keep the cases' files in DIR (one job)")
    p.add_argument("--match", default="", metavar="TEXTS", help="only the cases whose name holds one of these "
                                                                "(comma list)")
    p.add_argument("--jobs", type=int, default=1, help="processes sharing the cases (one per core)")
    p.add_argument("--shard", default=None, metavar="I/N", help="run every N-th case from the I-th only")
    args = p.parse_args()
    groups = [int(g) for g in args.groups.split(",")]
    t0 = time.time()
    if args.jobs > 1:
        outcomes = in_jobs(args.jobs, args.groups, args.match)
    else:
        root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dcapps-hostile-"))
        root.mkdir(parents=True, exist_ok=True)
        try:
            outcomes = run_campaign(groups, root, tuple(args.match.split(",")),
                                    parse_shard(args.shard) if args.shard else (0, 1))
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    if args.shard is None:
        print(report(outcomes))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"tried": len(outcomes), "handled": sum(o.handled for o in outcomes),
                                          "seconds": round(time.time() - t0, 1), "jobs": args.jobs,
                                          "torch": torch.__version__, "cases": [asdict(o) for o in outcomes]},
                                         indent=1) + "\n")
    return 0 if all(o.handled for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main_campaign())
