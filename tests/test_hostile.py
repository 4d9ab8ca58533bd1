"""Hostile inputs, one or more per cause of the groups of the hostile-input campaign
(`tests/harness/hostile_campaign.py`, whose inputs these tests share: `harness/hostile_inputs.py`).

Every refusal is checked the same way (`refused`): exit status 2, exactly one line on stderr that
names what the user typed (the flag, the YAML key, the file), no traceback, and nothing lost (the
files given in `keep` byte-identical; no temporary file left anywhere in the test's folder). The
cases run on digits with tiny settings; the few that need a second process say so.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from condense_core import InputError, ReducedSet
from condense_core.checkpoint import Checkpoint
from dcapps.cli import main
from harness.hostile_inputs import (bomb_png, checkpoint_of_two_iterations, condense_argv, edited, memory_set,
                                    nni_database, random_images, reduced_set, refusal_problems, save_npz,
                                    snapshot, write_config)

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def condense(out, *extra, data="digits", method="dm"):
    return condense_argv(out, *extra, method=method, data=data)


def refused(capsys, argv, *words, keep=()):
    """Run the command line: exit 2, one stderr line holding every word, the `keep` files as they were."""
    before = snapshot(*keep)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    problems = refusal_problems(code, err, words, before)
    assert not problems, (problems, err)
    return err.strip()


@pytest.fixture(autouse=True)
def no_half_written_files(tmp_path):
    yield
    left = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".dcapps-probe")]
    assert not left, left


@pytest.fixture
def set_file(tmp_path, digits):
    """A valid ReducedSet file of digits: two real images per class."""
    return reduced_set(digits, tmp_path / "set.pt")


@pytest.fixture
def checkpoint(tmp_path, digits):
    """(--out, its checkpoint): two iterations of the run that `condense(out)` describes."""
    out = tmp_path / "dm.pt"
    checkpoint_of_two_iterations(digits, Checkpoint.next_to(str(out)))
    return out, Path(Checkpoint.next_to(str(out)))


# --- 1. results that are silently wrong ------------------------------------------------------

def test_an_empty_set_is_refused_not_replaced_by_the_training_set(tmp_path, capsys, set_file):
    empty = edited(set_file, tmp_path / "empty.pt", images=torch.zeros(0, 1, 8, 8),
                   labels=torch.zeros(0, dtype=torch.long))
    refused(capsys, ["evaluate", empty, "--data", "digits", "--runs", "1", "--epochs", "1"],
            str(empty), "no images", keep=[empty])


@pytest.mark.parametrize("argv, name, value", [
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--lr-img", "nan"], "--lr-img", "nan"),
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--momentum=-inf"], "--momentum", "-inf"),
    (["select", "--data", "digits", "--method", "lcmat", "--ipc", "1", "--eps", "nan"], "--eps", "nan"),
    (["evaluate", "--full", "--data", "digits", "--lr", "inf"], "--lr", "inf"),
    (["nas", "init", "--data", "digits", "--proxy", "{set}", "--lr", "nan"], "--lr", "nan"),
    (["nas", "rank-eval", "--data", "digits", "--proxy", "{set}", "--weight-decay", "nan"], "--weight-decay", "nan"),
])
def test_nan_and_inf_settings_are_refused_naming_the_flag(tmp_path, capsys, set_file, argv, name, value):
    argv = [a.format(set=set_file) for a in argv]
    if argv[0] in ("condense", "select", "nas") and argv[1] != "rank-eval":
        argv += ["--out", tmp_path / "out"]
    refused(capsys, argv, name, f"got {value}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("changes, key", [
    ({"train": {"epochs": 1, "lr": float("nan")}}, "train.lr"),
    ({"methods": {"dm": {"lr_img": float("inf")}}}, "methods.dm.lr_img"),
    ({"methods": {"momentum": float("nan")}}, "methods.momentum"),
])
def test_nan_and_inf_in_a_config_are_refused_naming_the_key(tmp_path, capsys, changes, key):
    refused(capsys, ["cl", "run", write_config(tmp_path, **changes), "--out", tmp_path / "out"], key)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, words", [
    ("images", "nan", ["images", "NaN"]),
    ("images", "inf", ["images", "infinite"]),
    ("labels", "fraction", ["labels", "integers"]),
    ("std", "zero", ["std", "> 0"]),
    ("std", "negative", ["std", "> 0"]),
])
def test_a_set_with_impossible_values_is_refused_naming_the_file(tmp_path, capsys, set_file, field, value, words):
    obj = torch.load(set_file, weights_only=True)
    bad = {"nan": lambda t: t.index_fill(0, torch.tensor([0]), float("nan")),
           "inf": lambda t: t.index_fill(0, torch.tensor([3]), float("inf")),
           "fraction": lambda t: t.float() + 0.5, "zero": lambda t: torch.zeros_like(t),
           "negative": lambda t: -t}[value](obj[field])
    path = edited(set_file, tmp_path / "bad.pt", **{field: bad})
    refused(capsys, ["evaluate", path, "--data", "digits", "--runs", "1", "--epochs", "1"],
            str(path), *words, keep=[path])


@pytest.mark.parametrize("iteration", [37, -1, 2.0])
def test_a_checkpoint_past_the_end_is_not_taken_at_its_word(capsys, checkpoint, iteration):
    out, ckpt = checkpoint
    edited(ckpt, ckpt, iteration=iteration)
    refused(capsys, condense(out, "--resume"), str(ckpt), "iteration", keep=[ckpt])
    assert not out.exists()


def test_a_diverged_condensation_writes_nothing(tmp_path, capsys):
    out = tmp_path / "big_steps.pt"
    refused(capsys, condense(out, "--lr-img", "1e30"), "diverged", "lr_img")
    assert not out.exists()


# --- 2. data lost or overwritten -------------------------------------------------------------

@pytest.mark.parametrize("command", ["select", "condense"])
def test_the_data_file_is_never_the_output(tmp_path, capsys, digits_npz, command):
    argv = ([command, "--data", digits_npz, "--method", "random", "--ipc", "1", "--out", digits_npz]
            if command == "select" else condense(digits_npz, data=digits_npz))
    refused(capsys, argv, "--out", digits_npz, "--data", keep=[digits_npz])


def test_rank_eval_never_writes_over_a_proxy(capsys, set_file):
    refused(capsys, ["nas", "rank-eval", "--data", "digits", "--proxy", set_file, "--out", set_file],
            "--out", "--proxy", keep=[set_file])


def test_a_checkpoint_of_other_settings_is_refused_not_deleted(capsys, checkpoint):
    out, ckpt = checkpoint
    refused(capsys, condense(out, "--lr-img", "3"), str(ckpt), "--resume", "--restart", keep=[ckpt])
    assert main(condense(out, "--lr-img", "3", "--restart")) == 0  # asked for: replaced, then done
    assert out.exists() and not ckpt.exists()


def test_a_second_run_on_the_same_output_is_refused_while_the_first_lives(tmp_path, capsys):
    out = tmp_path / "shared.pt"
    long_run = condense(out, "--checkpoint-every", "1", "--iterations", "100000")  # the last --iterations counts
    first = subprocess.Popen([sys.executable, "-m", "dcapps", *map(str, long_run)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.time() + 120
        while not Path(str(out) + ".ckpt").exists():  # the first run is iterating, holding the lock
            assert first.poll() is None and time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        refused(capsys, condense(out), "--out", "another run", f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143, err  # the first run was not disturbed: it stops cleanly, checkpointed
    assert Path(str(out) + ".ckpt").exists()


def test_load_memory_is_all_or_nothing(tmp_path):
    from dcapps.replay import ReducedSetBuffer

    buffer = ReducedSetBuffer(ipc=2, method="random", kind="select")
    buffer.sets = [memory_set(1)]
    buffer._refresh()
    held_sets, held_buffer = list(buffer.sets), buffer.buffer
    colour = tmp_path / "colour"
    ReducedSetBuffer(ipc=2, method="random", kind="select").save(str(colour))  # an empty memory's index
    for i, channels in enumerate((3, 3)):
        memory_set(channels).save(str(colour / f"experience_{i:03d}.pt"))
    (colour / "index.txt").write_text("experience_000.pt\nexperience_001.pt\n")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    memory_set(1).save(str(mixed / "a.pt"))
    memory_set(3).save(str(mixed / "b.pt"))
    (mixed / "index.txt").write_text("a.pt\nb.pt\n")
    escape = tmp_path / "escape"
    escape.mkdir()
    (escape / "index.txt").write_text("../colour/experience_000.pt\n")
    for folder, words in ((colour, "3x8x8"), (mixed, "b.pt"), (escape, "index.txt")):
        with pytest.raises(InputError, match=words):
            buffer.load(str(folder))
        assert buffer.sets == held_sets and buffer.buffer is held_buffer  # the memory as it was


@pytest.mark.parametrize("umask, existing, mode", [(0o022, None, 0o644), (0o077, None, 0o600),
                                                    (0o077, 0o644, 0o644)])
def test_written_files_follow_the_umask(tmp_path, capsys, umask, existing, mode):
    out = tmp_path / "set.pt"
    if existing is not None:
        out.write_bytes(b"old")
        out.chmod(existing)
    old = os.umask(umask)
    try:
        assert main(["select", "--data", "digits", "--method", "random", "--ipc", "1", "--out", out, "--png",
                     "--quiet"]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode
    assert (tmp_path / "set.png").stat().st_mode & 0o777 == 0o666 & ~umask
    assert not Path(str(out) + ".lock").exists()


# --- 3. work wasted before an error that could have come first --------------------------------

@pytest.fixture
def no_work(monkeypatch):
    """Loading data fails the test: the refusal must come before any work."""
    monkeypatch.setattr("condense_core.load_data", lambda *a, **k: pytest.fail("work started before the refusal"))


@pytest.mark.parametrize("out, words", [("", ["--out"]), ("sub/", ["--out", "slash"]),
                                        ("/proc/dcapps-out.pt", ["--out", "/proc"]),
                                        (".", ["--out", "directory"]), ("fifo", ["--out", "regular file"]),
                                        ("x" * 250 + ".pt", ["--out", "too long"])])
@pytest.mark.usefixtures("no_work")
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, monkeypatch, out, words):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "fifo")  # not a regular file (never /dev/null: a miss would replace it)
    refused(capsys, ["select", "--data", "digits", "--method", "random", "--ipc", "1", "--out", out], *words)


def test_bad_strategy_options_stop_a_cl_run_before_its_first_unit(tmp_path, capsys, monkeypatch):
    from scenarios import runner

    monkeypatch.setattr(runner, "run_unit", lambda *a, **k: pytest.fail("a unit started"))
    refused(capsys, ["cl", "run", write_config(tmp_path, methods={"dm": {"lr_img": -1}}), "--out", tmp_path / "o"],
            "methods.dm.lr_img")
    small = tmp_path / "small.npz"  # 4x4 images: the config's ConvNet-3 cannot look at them
    save_npz(small, random_images(40, 4), np.repeat(np.arange(2), 20))
    config = write_config(tmp_path, data=str(small), experiences=1, model={"name": "ConvNet", "width": 8, "depth": 3})
    refused(capsys, ["cl", "run", config, "--out", tmp_path / "o"], "model", str(small), "too small")
    assert not (tmp_path / "o" / "units").exists()


def test_evaluating_without_a_test_split_is_refused_before_training(tmp_path, capsys, monkeypatch, set_file):
    import condense_core.evaluate as evaluate

    monkeypatch.setattr(evaluate, "train_model", lambda *a, **k: pytest.fail("trained before refusing"))
    no_test = save_npz(tmp_path / "no_test.npz", random_images(40, 8), np.repeat(np.arange(2), 20),
                  np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64))
    refused(capsys, ["evaluate", "--full", "--data", no_test, "--runs", "1"], str(no_test), "test")
    refused(capsys, ["nas", "init", "--data", no_test, "--proxy", set_file, "--out", tmp_path / "exp"], "test")
    assert not (tmp_path / "exp").exists()


def test_a_refused_checkpoint_names_the_setting_and_lcmat_trains_no_pool_first(capsys, monkeypatch, checkpoint):
    from condense_core.methods.lcmat import LCMatC

    out, ckpt = checkpoint
    monkeypatch.setattr(LCMatC, "pool", lambda *a, **k: pytest.fail("the pool was trained"))
    line = refused(capsys, condense(out, "--resume", "--lr-img", "2"), "lr_img=1.0", "2.0", keep=[ckpt])
    assert "{" not in line
    refused(capsys, condense(out, "--resume", method="lcmat"), "method='dm'", "'lcmat'", keep=[ckpt])


@pytest.mark.usefixtures("no_work")
def test_resume_without_a_checkpoint_is_refused(tmp_path, capsys):
    refused(capsys, condense(tmp_path / "never.pt", "--resume"), "--resume", "never.pt.ckpt")


# --- 4. tracebacks instead of one line --------------------------------------------------------

@pytest.mark.parametrize("side", [1, 3])
@pytest.mark.parametrize("argv", [
    ["condense", "--method", "dm", "--ipc", "1", "--out", "{out}"],
    ["select", "--method", "herding", "--ipc", "1", "--out", "{out}"],
    ["bench", "condense", "--iterations", "1", "--ipc", "1"],
])
def test_images_below_the_networks_minimum_are_refused(tmp_path, capsys, side, argv):
    data = save_npz(tmp_path / f"tiny{side}.npz", random_images(40, side), np.repeat(np.arange(2), 20))
    argv = [a.format(out=tmp_path / "out.pt") for a in argv]
    refused(capsys, [*argv, "--data", data], str(data), f"{side}x{side}", "8x8", keep=[data])
    assert not (tmp_path / "out.pt").exists()


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path, capsys, digits_arrays):
    from PIL import Image

    x, y, _, _ = digits_arrays
    for split in ("train", "test"):
        for i in range(6):
            folder = tmp_path / "folder" / split / f"c{y[i] % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(folder / f"{i}.png")
    bomb = tmp_path / "folder" / "train" / "c0" / "9.png"
    bomb_png(bomb)
    refused(capsys, ["condense", "--data", tmp_path / "folder", "--method", "dm", "--ipc", "1", "--out",
                     tmp_path / "out.pt"], str(bomb), "decompression", keep=[bomb])


@pytest.mark.parametrize("device", ["meta", "mps", "cuda:x", "gpu"])
@pytest.mark.parametrize("command", ["condense", "evaluate", "bench", "cl"])
def test_devices_other_than_auto_cpu_cuda_are_refused(tmp_path, capsys, set_file, device, command):
    argv = {"condense": condense(tmp_path / "o.pt"), "evaluate": ["evaluate", set_file, "--data", "digits"],
            "bench": ["bench", "condense", "--data", "digits"], "cl": ["cl", "run", write_config(tmp_path)]}[command]
    refused(capsys, [*argv, "--device", device], "--device", device)


@pytest.mark.parametrize("changes, words", [
    ({"mean": [0.1, 0.2]}, ["mean", "1 numbers"]),
    ({"mean": "dark"}, ["mean"]),
    ({"meta": 7}, ["meta", "mapping"]),
    ({"classes": 10}, ["classes"]),
    ({"labels": torch.zeros(20, 2, dtype=torch.long)}, ["labels"]),
    ({"images": torch.zeros(20, 8, 8)}, ["images"]),
    ({"images": torch.zeros(20, 1, 8, 8, dtype=torch.uint8)}, ["images", "float"]),
    ({"std": None}, ["missing std"]),
])
def test_a_hand_made_set_with_malformed_fields_is_refused(tmp_path, capsys, set_file, changes, words):
    path = edited(set_file, tmp_path / "hand.pt", **changes)
    refused(capsys, ["evaluate", path, "--data", "digits"], str(path), *words, keep=[path])


@pytest.mark.parametrize("changes, words", [
    ({"images": torch.zeros(10, 2, 1, 8, 8)}, ["images", "10x1x1x8x8"]),
    ({"momentum": None}, ["momentum"]),
    ({"generator": torch.zeros(7, dtype=torch.uint8)}, ["generator"]),
    ({"generator": torch.zeros(5056)}, ["generator", "uint8"]),
    ({"losses": torch.zeros(2)}, ["losses", "4 values"]),
    ({"identity": "x"}, ["was made with"]),
    ({"images": lambda t: t.index_fill(0, torch.tensor([0]), float("nan"))}, ["images", "NaN"]),
    ({"momentum": lambda t: t.index_fill(0, torch.tensor([1]), float("inf"))}, ["momentum", "infinite"]),
])
def test_a_checkpoint_with_malformed_fields_is_refused(capsys, monkeypatch, checkpoint, changes, words):
    out, ckpt = checkpoint
    edited(ckpt, ckpt, **changes)
    monkeypatch.setattr("condense_core.engine.Engine.step", lambda self: pytest.fail("an iteration ran first"))
    refused(capsys, condense(out, "--resume"), str(ckpt), *words, keep=[ckpt])


@pytest.mark.parametrize("argv, words", [
    (condense("{out}", "--iterations", str(10 ** 30)), ["--iterations", "at most 9223372036854775807"]),
    (condense("{out}", "--model", "M" * 10 ** 6), ["--model", "at most 4096 characters, got 1000000"]),
    (condense("{out}", "--model-options", json.dumps({"width": "w" * 10 ** 6})), ["width"]),
])
def test_huge_values_are_refused_in_one_short_line(tmp_path, capsys, argv, words):
    argv = [str(tmp_path / "o.pt") if a == "{out}" else a for a in argv]
    line = refused(capsys, argv, *words)
    assert len(line) < 700 and not (tmp_path / "o.pt").exists()


def test_a_config_that_is_not_utf8_is_refused(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data: digits\nname: caf\u00e9\n".encode("latin-1"))
    refused(capsys, ["cl", "run", path, "--out", tmp_path / "o"], str(path), "UTF-8")


@pytest.mark.parametrize("damaged", ["units/naive-seed0.json", "sweep.json"])
@pytest.mark.parametrize("content", ['{"strategy": "naive", "seed"', "[]", '{"strategy": "naive"}'])
def test_a_damaged_file_in_a_cl_folder_is_refused_before_any_unit(tmp_path, capsys, monkeypatch, damaged, content):
    from condense_core.sweep import Sweep
    from scenarios import runner
    from scenarios.config import load_config
    from scenarios.runner import plan

    monkeypatch.setattr(runner, "run_unit", lambda *a, **k: pytest.fail("a unit started"))
    config, out = write_config(tmp_path), tmp_path / "out"
    (out / "units").mkdir(parents=True)
    Sweep(str(out), load_config(str(config)).settings()).plan(plan(load_config(str(config))))
    (out / damaged).write_text(content)
    refused(capsys, ["cl", "run", config, "--out", out, "--quiet"], str(out / damaged), "delete it",
            keep=[out / damaged])


def test_report_skips_a_trial_whose_metric_is_not_json(tmp_path, capsys):
    good = json.dumps(json.dumps({"default": 0.9, "params": 100, "train_time_s": 1.0}))
    metrics = [("good", good), ("garbage", "{not json"), ("nan", json.dumps({"default": "nan"})), ("list", "[1, 2")]
    nni_database(tmp_path / "EXP1" / "db" / "nni.sqlite", metrics)
    assert main(["nas", "report", "--dir", str(tmp_path), "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ranking"]
    assert [r["trial"] for r in ranking] == ["good"]


@pytest.mark.parametrize("space, key", [({"depth": [1.0, 2.0]}, "depth"), ({"width": [True]}, "width"),
                                        ({"depth": {"_type": "choice", "_value": [2.5]}}, "depth")])
def test_nas_init_refuses_values_every_trial_would_reject(tmp_path, capsys, set_file, space, key):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    refused(capsys, ["nas", "init", "--data", "digits", "--proxy", set_file, "--space", path,
                     "--out", tmp_path / "exp"], str(path), repr(key))
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("argv, words", [
    (["cl", "run", "{cfg}", "--seeds", str(2 ** 32)], ["--seeds", str(2 ** 32)]),
    (["nas", "init", "--data", "digits", "--proxy", "{set}", "--seed", str(2 ** 32)], ["--seed"]),
    (condense("{out}", "--iterations", str(10 ** 11)), ["not enough memory", "allocate"]),
    (condense("{out}", "--model-options", '{"width": 8.5}'), ["width", "8.5"]),
])
def test_values_past_what_the_libraries_underneath_take_are_one_line(tmp_path, capsys, set_file, argv, words):
    fill = {"{cfg}": write_config(tmp_path), "{set}": set_file, "{out}": tmp_path / "o.pt"}
    argv = [str(fill.get(a, a)) for a in argv]
    refused(capsys, [*argv, "--out", tmp_path / "o.pt"] if argv[0] == "nas" else argv, *words)
    assert not (tmp_path / "o.pt").exists() and not (tmp_path / "o.pt.lock").exists()


def test_a_replay_memory_refuses_what_it_sets_itself_before_any_training():
    from dcapps.replay import ReducedSetBuffer

    for kwargs, words in (({"ipc": 1, "method_settings": {"ipc": 3}}, "ipc"),
                          ({"ipc": 1, "method_settings": {"seed": 2}}, "seed"),
                          ({"ipc": None, "mem_size": None}, "mem_size")):
        with pytest.raises(InputError, match=words):
            ReducedSetBuffer(method="random", kind="select", **kwargs)


def test_save_memory_onto_a_file_is_one_error(tmp_path):
    from dcapps.replay import ReducedSetBuffer

    taken = tmp_path / "memory"
    taken.write_text("mine")
    with pytest.raises(InputError, match="is a file"):
        ReducedSetBuffer(ipc=1, method="random", kind="select").save(str(taken))
    assert taken.read_text() == "mine"


# --- 5. misleading or noisy messages ----------------------------------------------------------

def test_an_image_folder_with_empty_training_classes_says_so(tmp_path, capsys, digits_arrays):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "folder" / "train" / c).mkdir(parents=True)
        (tmp_path / "folder" / "test" / c).mkdir(parents=True)
        Image.fromarray(digits_arrays[0][0]).save(tmp_path / "folder" / "test" / c / "0.png")
    refused(capsys, ["select", "--data", tmp_path / "folder", "--method", "random", "--ipc", "1",
                     "--out", tmp_path / "o.pt"], "train", "no images")


@pytest.mark.parametrize("x_train, words", [
    (np.full((8, 8, 8), 2.0), ["x_train", "[0, 1]"]), (np.zeros((8, 8)), ["x_train", "N x H x W"]),
    (np.zeros((8, 8, 8, 0)), ["x_train", "empty"]), (np.zeros((8, 8, 8), np.uint8), ["same value"]),
])
def test_errors_about_the_arrays_name_the_file(tmp_path, capsys, x_train, words):
    data = tmp_path / "arrays.npz"
    np.savez(data, x_train=x_train, y_train=np.arange(8) % 2, x_test=np.zeros((2, 8, 8), np.uint8),
             y_test=np.arange(2))
    refused(capsys, ["select", "--data", data, "--method", "random", "--ipc", "1", "--out", tmp_path / "o.pt"],
            str(data), *words, keep=[data])


def test_cl_run_hides_qpsolvers_warning_and_keeps_its_own():
    script = ("import warnings\nfrom scenarios.quiet import other_libraries_quiet\nwith other_libraries_quiet():\n"
              "    warnings.warn('no QP solver found on your system, you can install solvers')\n"
              "    warnings.warn('an Avalanche deprecation', DeprecationWarning)\n"
              "    warnings.warn('a warning of the run')\n")
    done = subprocess.run([sys.executable, "-W", "default", "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "QP solver" not in done.stderr and "deprecation" not in done.stderr
    assert "a warning of the run" in done.stderr


def test_cl_run_workers_hide_avalanches_deprecations(tmp_path):
    """Avalanche's GDumb warns of a deprecation on every experience, with its filter forced to
    "always": spawned workers, which do not inherit the command's filters, must hide it too."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"data": "digits", "experiences": 2, "seeds": [0, 1],
                                   "model": {"name": "ConvNet", "width": 8, "depth": 1},
                                   "train": {"epochs": 1, "batch_size": 128}, "memory": {"ipc": 1},
                                   "strategies": ["gdumb"]}))
    done = subprocess.run([sys.executable, "-m", "dcapps", "cl", "run", str(cfg), "--out", str(tmp_path / "o"),
                           "--workers", "2", "--quiet"], capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "o" / "units")) == ["gdumb-seed0.json", "gdumb-seed1.json"]
    assert "Warning" not in done.stderr, done.stderr[-2000:]


# --- a kill -9 at any point, then --resume: the uninterrupted result -------------------------

def test_lcmat_killed_then_resumed_gives_the_uninterrupted_set(tmp_path):
    argv = ["condense", "--data", "digits", "--method", "lcmat", "--ipc", "1", "--iterations", "20",
            "--batch-real", "8", "--pool-size", "1", "--net-epochs", "1", "--model-options", '{"width": 8}',
            "--seed", "2", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "whole.pt")]) == 0  # here: one thread (conftest), as the killed run
    out = tmp_path / "killed.pt"
    run = subprocess.Popen([sys.executable, "-m", "dcapps", *argv, "--checkpoint-every", "4", "--out", str(out)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    deadline = time.time() + 120
    while not Path(str(out) + ".ckpt").exists():
        assert run.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    run.kill()
    run.wait(timeout=60)
    assert main([*argv, "--resume", "--out", str(out)]) == 0
    whole, resumed = ReducedSet.load(str(tmp_path / "whole.pt")), ReducedSet.load(str(out))
    assert resumed.meta["resumed_from"] > 0 and torch.equal(whole.images, resumed.images)
    assert not Path(str(out) + ".ckpt").exists() and not Path(str(out) + ".lock").exists()


def test_a_run_killed_before_its_first_checkpoint_resumes_from_zero(tmp_path, capsys):
    argv = ["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--iterations", "20",
            "--batch-real", "8", "--model-options", '{"width": 8}', "--quiet", "--out", tmp_path / "a.pt"]
    run = subprocess.Popen([sys.executable, "-m", "dcapps", *map(str, argv)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=ENV)
    lock = tmp_path / "a.pt.lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text()):
        assert run.poll() is None and time.time() < deadline
        time.sleep(0.01)
    run.kill()
    run.wait(timeout=60)
    assert main([*map(str, argv), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "starting from iteration 0" in err and len(err.strip().splitlines()) == 1
    assert not lock.exists() and ReducedSet.load(str(tmp_path / "a.pt")).meta["resumed_from"] == 0
