"""`dcapps nas report`: the ranking of a finished (or stopped) NNI experiment.

Results are read from the experiment's own database (`<working dir>/<ID>/db/nni.sqlite`), which
NNI keeps after `nnictl stop`, so no manager needs to be running. The ranking goes to the screen,
to `ranking.csv` and to a bar chart `ranking.png`.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import sqlite3

from condense_core import InputError
from condense_core.reduced import atomic_write_text, pyplot, save_png

from .space import OPTIONS, arch_name

COLUMNS = ["rank", "trial", "accuracy", "params", "train_time_s", "arch", *OPTIONS]


def find_database(experiment: str | None = None, directory: str | None = None) -> str:
    """The nni.sqlite of experiment ID (via NNI's experiment list) or found under `directory`
    (an experiment folder, its working directory or a `dcapps nas init` folder; newest wins)."""
    if directory is not None:
        if not os.path.isdir(directory):
            raise InputError(f"--dir {directory} is not a folder")
        patterns = ("db/nni.sqlite", "*/db/nni.sqlite", "nni-experiments/*/db/nni.sqlite")
        found = {os.path.realpath(p) for pat in patterns for p in glob.glob(os.path.join(directory, pat))}
        if experiment:
            found = [p for p in found if os.path.basename(os.path.dirname(os.path.dirname(p))) == experiment]
        if not found:
            raise InputError(f"no NNI experiment database under {directory}")
        return max(found, key=os.path.getmtime)
    if not experiment:
        raise InputError("give --experiment ID or --dir DIR")
    entry = _manifest().get(experiment)
    log_dir = entry.get("logDir") if isinstance(entry, dict) else None
    log_dir = log_dir if isinstance(log_dir, str) and log_dir else nni_home()
    path = os.path.join(os.path.expanduser(log_dir), experiment, "db", "nni.sqlite")
    if not os.path.isfile(path):
        raise InputError(f"experiment {experiment!r} not found (no {path})")
    return path


def nni_home() -> str:
    """NNI's default experiment folder, which also holds its list of experiments."""
    return os.path.join(os.path.expanduser("~"), "nni-experiments")


def _manifest() -> dict:
    """NNI's list of experiments (id -> port, status, logDir, ...); empty when absent."""
    try:
        with open(os.path.join(nni_home(), ".experiment")) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _decode(text):
    """NNI stores metrics as JSON strings of JSON: decode until it is no longer a string. None
    for anything that is not JSON (a trial that reported garbage is skipped, not fatal)."""
    try:
        value = json.loads(text)
        while isinstance(value, str):
            value = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        return None
    return value


def _finite(value) -> float | None:
    """`value` as a float if it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _accuracy(final) -> float | None:
    """The accuracy of a final result (`{"default": acc, ...}`), if it is a finite number."""
    return _finite(final.get("default")) if isinstance(final, dict) else None


def _trial(tid: str) -> dict:
    return {"trial": tid, "status": "UNKNOWN", "params": None, "intermediate": [], "final": None}


def read_trials(db: str) -> list[dict]:
    """Every trial of the experiment: id, status, parameters, intermediate and final results."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            events = con.execute("SELECT trialJobId, event, data FROM TrialJobEvent ORDER BY timestamp").fetchall()
            metrics = con.execute("SELECT trialJobId, type, data FROM MetricData ORDER BY timestamp").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise InputError(f"{db}: not a readable NNI database ({e})") from None
    trials: dict[str, dict] = {}
    for tid, event, data in events:
        t = trials.setdefault(str(tid), _trial(str(tid)))
        t["status"] = str(event)
        job = _decode(data) if data else None
        if isinstance(job, dict) and t["params"] is None:
            params = job.get("parameters")
            t["params"] = params if isinstance(params, dict) else None
    for tid, kind, data in metrics:
        t = trials.setdefault(str(tid), _trial(str(tid)))
        value = _decode(data)
        if value is None:
            continue
        if kind == "FINAL":
            t["final"] = value if isinstance(value, dict) else {"default": value}
        else:
            t["intermediate"].append(value)
    return list(trials.values())


def ranking(trials: list[dict]) -> list[dict]:
    """Trials with a final accuracy (a finite number) and parameters, best accuracy first (ties:
    fewer parameters first)."""
    done = [t for t in trials if _accuracy(t["final"]) is not None and t["params"] is not None]
    for t in done:  # the extra keys a trial reports are shown only when they are numbers
        params, seconds = t["final"].get("params"), _finite(t["final"].get("train_time_s"))
        t["final"] = {**t["final"], "params": params if type(params) is int else None, "train_time_s": seconds}
    done.sort(key=lambda t: (-_accuracy(t["final"]), t["final"]["params"] or 0, t["trial"]))
    return [{"rank": i + 1, "trial": t["trial"], "accuracy": _accuracy(t["final"]),
             "params": t["final"]["params"], "train_time_s": t["final"]["train_time_s"],
             "arch": arch_name(t["params"]), **{k: t["params"].get(k) for k in OPTIONS}}
            for i, t in enumerate(done)]


def write_csv(rows: list[dict], path: str) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(buf.getvalue(), path)


def plot_ranking(rows: list[dict], path: str, title: str, top: int = 30) -> str:
    """Horizontal bars of the best `top` architectures' proxy test accuracy."""
    plt = pyplot()

    shown = rows[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.2))
    ax.barh([r["arch"] for r in shown], [100 * r["accuracy"] for r in shown], color="tab:blue")
    ax.set_xlabel("test accuracy after proxy training (%)")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def report(experiment: str | None = None, directory: str | None = None, out: str | None = None) -> dict:
    """Read the experiment, rank its trials, write ranking.csv and ranking.png into `out`
    (default: `directory`, else the experiment's own folder)."""
    from condense_core.outputs import check_output_folder

    db = find_database(experiment, directory)
    exp_dir = os.path.dirname(os.path.dirname(db))
    exp_id = os.path.basename(exp_dir)  # NNI names the folder after the experiment id
    flag = "--out" if out else "--dir" if directory else "the experiment folder"
    out = out or directory or exp_dir
    check_output_folder(out, flag)
    trials = read_trials(db)
    rows = ranking(trials)
    if not rows:
        raise InputError(f"experiment {exp_id} has no finished trials with a final result")
    statuses: dict[str, int] = {}
    for t in trials:
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
    csv_path = write_csv(rows, os.path.join(out, "ranking.csv"))
    png = plot_ranking(rows, os.path.join(out, "ranking.png"), f"NNI experiment {exp_id}: proxy ranking")
    return {"experiment": exp_id, "database": db, "trials": len(trials), "statuses": statuses,
            "ranking": rows, "csv": csv_path, "png": png}
