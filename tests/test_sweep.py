"""Units shared out over processes (`condense_core.sweep`): `dcapps cl run` sequential, with
`--workers 2`, under `torchrun --nproc-per-node 2` (gloo) and as two `--shard`s gives the same
merged results; a worker killed mid-unit leaves exactly that unit for the rerun; `cl report`."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from condense_core import InputError
from condense_core.settings import flag_name
from condense_core.sweep import Layout, Sweep, parse_shard
from dcapps.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"data": "digits", "experiences": 2, "seeds": [0, 1],
        "model": {"name": "ConvNet", "width": 8, "depth": 1},
        "train": {"epochs": 6, "batch_size": 128}, "memory": {"ipc": 3},
        "methods": {"iterations": 2, "batch_real": 16, "init": "real"},
        "strategies": ["naive", "replay", "dmreplay"]}
UNITS = sorted(f"{s}-seed{i}.json" for s in TINY["strategies"] for i in TINY["seeds"])


def write_config(tmp_path, **changes):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return str(path)


def merged(out) -> dict:
    """results.json without what may differ between layouts: timings."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not k.endswith("time_s")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(json.loads((out / "results.json").read_text()))


def test_layout_and_shard_flag():
    assert parse_shard("2/4") == (1, 4) and parse_shard(" 1 / 1 ") == (0, 1)
    for bad in ("0/2", "3/2", "1/0", "a/b", "1"):
        with pytest.raises(InputError, match="^shard must be I/N"):
            parse_shard(bad)
        with pytest.raises(InputError, match="^--shard must be I/N"):  # the caller's spelling
            parse_shard(bad, flag_name)
    keys = list("abcde")
    assert Layout(shard=0, shards=2).share(keys) == ["a", "c", "e"]
    assert Layout(shard=1, shards=2).share(keys) == ["b", "d"]
    assert sorted(sum((Layout(shard=i, shards=3).share(keys) for i in range(3)), [])) == keys


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The config and the merged results of a sequential run of it."""
    tmp_path = tmp_path_factory.mktemp("reference")
    cfg, out = write_config(tmp_path), tmp_path / "seq"
    assert main(["cl", "run", cfg, "--out", out, "--quiet"]) == 0
    assert sorted(os.listdir(out / "units")) == UNITS
    results = merged(out)
    assert results["missing"] == [] and len(results["runs"]) == len(UNITS)
    return cfg, results


def test_two_shards_give_the_sequential_results(reference, tmp_path, capsys):
    cfg, out = reference[0], tmp_path / "shards"
    assert main(["cl", "run", cfg, "--out", out, "--shard", "1/2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["missing"] == ["replay-seed0", "naive-seed1", "dmreplay-seed1"]  # units 1, 3, 5: shard 2's
    assert main(["cl", "report", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["missing"] == first["missing"]
    assert "replay-seed0" in (out / "report.md").read_text()  # the report names what is missing
    assert main(["cl", "run", cfg, "--out", out, "--shard", "2/2", "--quiet"]) == 0
    assert sorted(os.listdir(out / "units")) == UNITS
    assert merged(out) == reference[1]


def test_torchrun_ranks_give_the_sequential_results(reference, tmp_path):
    cfg, out = reference[0], tmp_path / "ranks"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(_free_port()), "-m", "dcapps", "cl", "run", cfg, "--out",
                           str(out), "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(os.listdir(out / "units")) == UNITS
    assert merged(out) == reference[1]


def test_workers_one_killed_mid_unit_then_the_rerun_does_exactly_its_unit(reference, tmp_path, capsys):
    """Two workers. The first to hold a unit is stopped (SIGSTOP) there until the other holds a
    later one, then killed (SIGKILL): the other never goes back, so that unit, and only it, is
    left; the rerun finishes it, and the results are the sequential run's."""
    cfg, out = reference[0], tmp_path / "workers"
    order = [f"{s}-seed{i}" for i in TINY["seeds"] for s in TINY["strategies"]]
    run = subprocess.Popen([sys.executable, "-m", "dcapps", "cl", "run", cfg, "--out", str(out), "--workers", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    def holders() -> dict:
        found = {}
        for key in order:
            try:
                found[key] = json.loads((out / "claims" / f"{key}.lock").read_text())["pid"]
            except (OSError, ValueError, KeyError):
                continue
        return found

    end, victim, killed = time.monotonic() + 240, None, False
    while not killed and time.monotonic() < end and run.poll() is None:
        held = holders()
        if victim is None and held:
            pid = next(iter(held.values()))
            os.kill(pid, signal.SIGSTOP)  # it keeps its claim, as a worker busy with its unit does
            mine = [k for k, p in holders().items()  # what it works on, now that it is frozen
                    if p == pid and not (out / "units" / f"{k}.json").exists()]
            if mine:
                victim = (mine[0], pid)
            else:  # stopped between two units: let it go on
                os.kill(pid, signal.SIGCONT)
        elif victim is not None and any(p != victim[1] for p in held.values()):
            os.kill(victim[1], signal.SIGKILL)
            killed = True
        time.sleep(0.01)
    stdout, stderr = run.communicate(timeout=300)
    assert killed, "the second worker never took a unit"
    victim = victim[0]
    assert run.returncode == 1 and "killed by signal 9" in stderr and "run the same command again" in stderr
    left = [k for k in order if not (out / "units" / f"{k}.json").exists()]
    assert left == [victim]

    capsys.readouterr()
    assert main(["cl", "run", cfg, "--out", out, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    ran = [f"{w[0]}-seed{w[2].rstrip(':')}" for w in (line.split() for line in lines) if w[1:2] == ["seed"]]
    assert ran == [victim]  # exactly the missing unit
    assert json.loads(lines[-1])["missing"] == []
    assert merged(out) == reference[1]


def test_other_settings_for_the_same_folder_are_refused_before_any_unit(tmp_path, capsys):
    out = tmp_path / "out"
    Sweep(str(out), {"train": "other"}).plan({"naive-seed0": {"strategy": "naive", "seed": 0}})
    assert main(["cl", "run", write_config(tmp_path), "--out", out, "--quiet"]) == 2
    assert "train" in capsys.readouterr().err and not (out / "units").exists()


def test_cl_report_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["cl", "report", str(tmp_path)]) == 2
    assert "sweep.json" in capsys.readouterr().err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _finished(folder, epochs):
    """(config, output folder) of a finished one-unit run (naive, seed 0) in `folder`, of `epochs`
    epochs per experience."""
    folder.mkdir(exist_ok=True)
    out = folder / "out"
    cfg = write_config(folder, seeds=[0], strategies=["naive"], train={"epochs": epochs, "batch_size": 128})
    assert main(["cl", "run", cfg, "--out", out, "--quiet"]) == 0
    return cfg, out


def test_a_unit_of_other_settings_copied_into_a_finished_folder_is_refused_and_never_merged(tmp_path, capsys):
    _, other = _finished(tmp_path / "other", 2)
    cfg, out = _finished(tmp_path / "mine", 1)
    unit = out / "units" / "naive-seed0.json"
    shutil.copy(other / "units" / "naive-seed0.json", unit)
    before = {p: (out / p).read_bytes() for p in ("report.md", "results.json", "results.csv")}
    capsys.readouterr()
    for argv in (["cl", "report", out], ["cl", "run", cfg, "--out", out, "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(unit) in err and "other settings" in err, err
        assert {p: (out / p).read_bytes() for p in before} == before  # the report is unchanged
    unit.unlink()  # as the message says: the unit runs again, under the folder's settings
    assert main(["cl", "run", cfg, "--out", out, "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["runs"][0]["settings"]["train"]["epochs"] == 1


def test_cl_report_on_what_is_not_a_run_is_one_line_and_leaves_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    run = tmp_path / "run"
    run.mkdir()
    Sweep(str(run), {"a": 1}).plan({"u": {}})
    (run / "units").write_text("not a folder")
    for folder, words in (("missing", "no such folder"), ("file", "not a folder"), ("empty", "sweep.json"),
                          ("run", "units is not a folder")):
        before = sorted(os.listdir(tmp_path))
        assert main(["cl", "report", str(tmp_path / folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and folder in err and words in err, err
        assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(tmp_path / "empty") == [] and sorted(os.listdir(run)) == ["sweep.json", "units"]


def test_a_plan_checks_the_folder_before_writing_and_leaves_no_lock_files(tmp_path):
    out = tmp_path / "out"
    sweep = Sweep(str(out), {"a": 1})
    sweep.plan({"u": {"n": 1}})
    sweep.work(["u"], lambda params, device: {"n": params["n"]}, "cpu")
    assert sweep.results(["u"]) == {"u": {"n": 1}}
    assert sorted(p.name for p in out.rglob("*")) == ["claims", "sweep.json", "u.json", "units"]  # no .lock
    record = (out / "sweep.json").read_bytes()
    (out / "units" / "u.json").write_text("[]")
    with pytest.raises(InputError, match="u.json"):
        Sweep(str(out), {"a": 1}).plan({"v": {}})
    assert (out / "sweep.json").read_bytes() == record  # refused before it wrote


def test_withdraw_removes_only_what_the_plan_made(tmp_path):
    fresh = Sweep(str(tmp_path / "new" / "out"), {"a": 1})
    fresh.plan({"u": {}})
    fresh.withdraw()
    assert os.listdir(tmp_path) == []  # the record and both folders it made
    kept = Sweep(str(tmp_path / "kept"), {"a": 1})
    kept.plan({"u": {}})
    kept.work(["u"], lambda params, device: {}, "cpu")
    kept.withdraw()  # a unit finished since: the record stays
    assert sorted(os.listdir(tmp_path / "kept")) == ["claims", "sweep.json", "units"]


def test_a_killed_workers_message_stays_one_line(tmp_path):
    """A worker killed in its unit after making a named semaphore (as tqdm does): the command says
    so in one line, without the resource tracker's two lines about the semaphore it left."""
    from harness.hostile_inputs import killed_worker

    code, err = killed_worker(tmp_path, {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT})
    assert code == 0 and len(err.strip().splitlines()) == 1 and "ended early" in err, err


def test_workers_are_bounded(tmp_path, capsys):
    from dcapps.cli.common import WORKERS_MAX

    assert main(["cl", "run", write_config(tmp_path), "--out", tmp_path / "o", "--workers", str(10 ** 5)]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and f"at most {WORKERS_MAX}" in err and not (tmp_path / "o").exists()
