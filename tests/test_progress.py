"""Progress and logs: log lines where there is no terminal (step, total, loss, ETA), the progress
word everywhere (never in a result), the loss curve a set records, DMReplay's memory metrics in
Avalanche's loggers, and `cl run`'s count of units."""
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from condense_core import InputError, ReducedSet, make_method
from condense_core.engine import Engine, loss_curve
from condense_core.progress import duration, mode_of, tracked

ROOT = Path(__file__).resolve().parent.parent
TINY = {"iterations": 4, "batch_real": 8, "model_options": {"width": 8}, "device": "cpu"}


def test_the_progress_word(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert [mode_of(p) for p in ("auto", "bar", "log", "off", True, False)] == ["log", "bar", "log", "off",
                                                                                "log", "off"]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert mode_of("auto") == "bar"
    with pytest.raises(InputError, match="progress must be one of auto, bar, log, off"):
        mode_of("loud")
    assert (duration(42), duration(181), duration(7500)) == ("42s", "3m01s", "2h05m")


def test_log_lines_say_step_total_loss_and_time_left(monkeypatch, caplog):
    monkeypatch.setenv("DCAPPS_PROGRESS_SECONDS", "0")  # a line after every step
    with caplog.at_level(logging.INFO, logger="dcapps"):
        assert list(tracked(range(2, 5), 5, "work", "log", loss=lambda: 0.25, initial=2)) == [2, 3, 4]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "work: 2/5 (40%)" and len(lines) == 4
    assert lines[1].startswith("work: 3/5 (60%), loss 0.25, ") and "ETA " in lines[1]
    assert lines[-1].startswith("work: 5/5 (100%), loss 0.25, ") and "took " in lines[-1]
    assert list(tracked(range(3), progress="off")) == [0, 1, 2] and len(caplog.records) == 4


def test_progress_is_a_setting_that_never_reaches_a_result(digits):
    dm = make_method("condense", "dm", ipc=1, progress="log", **TINY)
    assert make_method("condense", "dm", ipc=1, progress="off", **TINY).settings() == dm.settings()
    assert "progress" not in dm.settings()
    assert "progress" not in Engine(dm, digits, dm_device()).identity()["config"]
    with pytest.raises(InputError, match="progress must be one of auto, bar, log, off"):
        make_method("condense", "dm", ipc=1, progress="loud")
    made = dm.condense(digits)
    assert "progress" not in made.meta
    curve = made.meta["loss_curve"]
    assert [p[0] for p in curve] == [1, 2, 3, 4] and curve[0][1] == made.meta["loss_first"]
    assert curve[-1][1] == made.meta["loss_last"]


def dm_device():
    import torch

    return torch.device("cpu")


def test_the_loss_curve_keeps_about_a_hundred_points_with_the_first_and_last():
    losses = [float(i) for i in range(1000)]
    curve = loss_curve(losses)
    assert curve[0] == [1, 0.0] and curve[-1] == [1000, 999.0] and 90 <= len(curve) <= 101
    assert loss_curve([3.0]) == [[1, 3.0]]


def test_a_piped_condense_shows_progress_lines_before_it_ends(tmp_path):
    out = tmp_path / "dm.pt"
    with open(tmp_path / "log.txt", "w") as log:  # stdout and stderr to one file, as a SLURM job's
        done = subprocess.run([sys.executable, "-m", "dcapps", "condense", "--data", "digits", "--method", "dm",
                               "--ipc", "1", "--iterations", "3", "--batch-real", "8", "--model-options",
                               '{"width": 8}', "--png", "--out", str(out)], stdout=log, stderr=subprocess.STDOUT,
                              timeout=300, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                   "DCAPPS_PROGRESS_SECONDS": "0"})
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert done.returncode == 0, lines
    steps = [i for i, line in enumerate(lines) if " dm ipc1: " in line]
    assert [lines[i].split(" dm ipc1: ")[1].split(" ")[0] for i in steps] == ["0/3", "1/3", "2/3", "3/3"]
    assert "loss " in lines[steps[1]] and "ETA " in lines[steps[1]]
    wrote = next(i for i, line in enumerate(lines) if line.startswith("wrote "))
    assert max(steps) < wrote and lines[wrote].endswith(f"; picture {tmp_path / 'dm.png'}")
    assert ReducedSet.load(str(out)).meta["loss_curve"] and (tmp_path / "dm.png").exists()


def test_quiet_shows_nothing_but_the_result(tmp_path, capsys):
    from dcapps.cli import main

    assert main(["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--iterations", "2",
                 "--batch-real", "8", "--model-options", '{"width": 8}', "-q", "--out", str(tmp_path / "q.pt")]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("wrote ")


def test_dmreplay_reports_each_memory_build_to_avalanches_loggers(caplog):
    pytest.importorskip("avalanche")
    import torch
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.logging import TextLogger
    from avalanche.training.plugins import EvaluationPlugin

    from condense_core.networks import build_model
    from dcapps import DMReplay
    from scenarios.benchmarks import build_benchmark

    text = io.StringIO()
    model = build_model("ConvNet", 1, 10, (8, 8), width=8, depth=1)
    evaluator = EvaluationPlugin(accuracy_metrics(epoch=True), loggers=[TextLogger(text)])
    strategy = DMReplay(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), ipc=1,
                        method_settings={"iterations": 3, "batch_real": 8, "init": "real", "progress": "log",
                                         "model_options": {"width": 8}},
                        replay_mode="gdumb", train_epochs=1, train_mb_size=64, evaluator=evaluator)
    benchmark = build_benchmark("digits", experiences=2, seed=0)
    with caplog.at_level(logging.INFO, logger="dcapps"):
        for experience in benchmark.train_stream:
            strategy.train(experience)
    metrics = evaluator.get_all_metrics()
    for exp in (0, 1):
        for name in ("MemoryBuild_Seconds", "MemoryBuild_LossFirst", "MemoryBuild_LossLast", "Memory_StoredBytes"):
            assert f"{name}/train_phase/train_stream/Exp{exp:03d}" in metrics
    stored = metrics["Memory_StoredBytes/train_phase/train_stream/Exp001"][1][-1]
    assert stored == 10 * 64 * 4  # ten 8x8 float32 images after both experiences
    printed = text.getvalue()
    assert "MemoryBuild_LossLast/train_phase/train_stream/Exp000 = " in printed
    assert "Memory_StoredBytes/train_phase/train_stream/Exp001 = 2560" in printed
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("memory for experience 1 built in ") for m in logged)
    assert any(m.startswith("dm ipc1: 3/3 (100%), loss ") for m in logged)  # the build's own progress
