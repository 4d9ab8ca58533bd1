"""The CLI end to end on digits with tiny settings, and every bad input: exit 2, one line, nothing
half-written at --out."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from condense_core import ReducedSet
from dcapps.cli import main

TINY = ["--quiet", "--model", "ConvNet"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out):
    return json.loads(out.strip().splitlines()[-1])


def test_condense_select_evaluate_end_to_end(tmp_path, capsys):
    dm_out, sel_out = tmp_path / "dm.pt", tmp_path / "herding.pt"
    code, out, err = run_cli(capsys, "condense", "--data", "digits", "--method", "dm", "--ipc", 2,
                             "--iterations", 5, "--batch-real", 32, "--seed", 3, "--png",
                             "--out", dm_out, "--json", *TINY)
    assert code == 0, err
    res = last_json(out)
    assert res["images"] == 20 and os.path.exists(res["png"])
    reduced = ReducedSet.load(str(dm_out))
    assert reduced.meta["method"] == "dm" and reduced.meta["iterations"] == 5 and reduced.meta["seed"] == 3
    assert reduced.meta["batch_real"] == 32 and reduced.meta["data"] == "digits"

    code, out, err = run_cli(capsys, "select", "--data", "digits", "--method", "herding", "--ipc", 2,
                             "--selection-epochs", 1, "--out", sel_out, *TINY)
    assert code == 0, err
    assert ReducedSet.load(str(sel_out)).meta["method"] == "herding"

    code, out, err = run_cli(capsys, "evaluate", dm_out, "--runs", 2,  # --data: the set's own (digits)
                             "--epochs", 3, "--json", "--quiet")
    assert code == 0, err
    res = last_json(out)
    assert len(res["accuracies"]) == 2 and 0.0 <= res["mean"] <= 1.0
    assert res["set_meta"]["method"] == "dm" and res["data"] == "digits"
    # --json gives fractions, the text percent (as --json's help says)
    assert f"accuracy {100 * res['mean']:.2f} +- {100 * res['std']:.2f} %" in out.splitlines()[0]

    code, out, err = run_cli(capsys, "evaluate", "--full", "--data", "digits", "--runs", 1,
                             "--epochs", 1, "--json", "--quiet")
    assert code == 0 and last_json(out)["set"] == "full"


def test_console_script_runs_and_help_is_cheap(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "dcapps")
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "condense" in done.stdout
    done = subprocess.run([exe, "condense", "--data", "nowhere.npz", "--method", "dm", "--ipc", "1",
                           "--out", str(tmp_path / "x.pt")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


@pytest.fixture
def bad_files(tmp_path):
    """A corrupt .pt, a foreign .pt, and .npz files with each kind of defect."""
    (tmp_path / "corrupt.pt").write_bytes(b"\x00not a torch file")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    x = np.zeros((20, 8, 8), np.uint8)
    y = np.repeat(np.arange(2), 10)
    np.savez(tmp_path / "missing.npz", x_train=x, y_train=y, x_test=x)
    np.savez(tmp_path / "lengths.npz", x_train=x, y_train=y[:15], x_test=x, y_test=y)
    np.savez(tmp_path / "floatlabels.npz", x_train=x, y_train=y + 0.5, x_test=x, y_test=y)
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["condense", "--data", "{d}/absent.npz", "--method", "dm", "--ipc", "1"], "not found"),
    (["condense", "--data", "imagenet", "--method", "dm", "--ipc", "1"], "imagenet"),
    (["condense", "--data", "digits", "--method", "magic", "--ipc", "1"], "magic"),
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "0"], "--ipc"),
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "1000"], "smallest class"),
    (["select", "--data", "digits", "--method", "random", "--ipc", "1000"], "smallest class"),
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--iterations", "0"], "--iterations"),
    (["condense", "--data", "{d}/missing.npz", "--method", "dm", "--ipc", "1"], "y_test"),
    (["condense", "--data", "{d}/lengths.npz", "--method", "dm", "--ipc", "1"], "length"),
    (["condense", "--data", "{d}/floatlabels.npz", "--method", "dm", "--ipc", "1"], "integer"),
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "x"], "invalid int"),
    (["evaluate", "{d}/absent.pt", "--data", "digits"], "not found"),
    (["evaluate", "{d}/corrupt.pt", "--data", "digits"], "not a readable"),
    (["evaluate", "{d}/foreign.pt", "--data", "digits"], "not a dcapps ReducedSet"),
    (["evaluate", "--data", "digits"], "--full"),
    (["evaluate", "--full", "--data", "digits", "--batch-size", "0"], "--batch-size"),
    (["evaluate", "--full", "--data", "digits", "--lr", "-1"], "--lr"),
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--rho", "0.5"], "does not apply"),
    (["select", "--data", "digits", "--method", "random", "--ipc", "1", "--selection-epochs", "2"],
     "does not apply"),
])
def test_bad_input_exits_2_with_one_line(bad_files, capsys, argv, message):
    out_file = bad_files / "out.pt"
    argv = [a.format(d=bad_files) for a in argv]
    if argv[0] != "evaluate":
        argv += ["--out", str(out_file)]
    code, out, err = run_cli(capsys, *argv, "--quiet")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message.lower() in lines[0].lower(), err
    assert not out_file.exists()


def test_failed_run_leaves_existing_output_untouched(tmp_path, capsys):
    out_file = tmp_path / "keep.pt"
    out_file.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "condense", "--data", "digits", "--method", "dm", "--ipc", "1000",
                           "--out", out_file, "--quiet")
    assert code == 2 and out_file.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]


def test_out_must_be_a_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "select", "--data", "digits", "--method", "random", "--ipc", "1",
                           "--out", tmp_path, "--quiet")
    assert code == 2 and "directory" in err


def test_out_inside_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "plain").write_text("x")
    code, _, err = run_cli(capsys, "select", "--data", "digits", "--method", "random", "--ipc", "1",
                           "--out", tmp_path / "plain" / "set.pt", "--quiet")
    assert code == 2 and "is a file" in err and len(err.strip().splitlines()) == 1


def test_help_says_defaults_json_fractions_and_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("dcapps ")
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "networks trained from scratch and tested (the mean and std over them are reported) (default 5)" in help_text
    assert "fractions in [0, 1]; the text shows %" in help_text
    assert "(default: the data spec FILE.pt records)" in help_text
    with pytest.raises(SystemExit):
        main(["nas", "init", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "trials NNI runs in all (default 20)" in help_text and "trials run at once (default 1)" in help_text


def test_methods_shows_ipc_as_condense_asks_for_it(capsys):
    code, out, _ = run_cli(capsys, "methods", "--json")
    assert code == 0
    ipc_lines = [line.split() for line in out.splitlines() if line.strip().startswith("--ipc ")]
    assert ipc_lines and all(words[1] == "required" for words in ipc_lines)
    assert last_json(out)["condense dm"]["required"] == ["ipc"]


@pytest.mark.parametrize("argv, line", [
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--iteration", "5"],
     "unrecognized arguments: --iteration 5 (did you mean --iterations?)"),
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--iter", "5"],
     "unrecognized arguments: --iter 5"),
    (["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--batch-rael", "5"],
     "unrecognized arguments: --batch-rael 5 (did you mean --batch-real?)"),
    (["condense", "--data", "digits", "--method", "herding", "--ipc", "1"],
     "unknown condense method 'herding' (herding is a select method): choose from dm, idm, lcmat, m3d"),
    (["select", "--data", "digits", "--method", "dm", "--ipc", "1"],
     "unknown select method 'dm' (dm is a condense method): choose from herding, kcenter, lcmat, random"),
    (["condense", "--data", "./missing/", "--method", "dm", "--ipc", "1"],
     "data not found: ./missing/ (no such file or folder)"),
    (["condense", "--method", "dm", "--ipc", "1"], "condense: the following arguments are required: --data"),
    ([], "the following arguments are required: COMMAND"),
])
def test_usage_errors_are_one_line_with_the_prefix_once(tmp_path, capsys, argv, line):
    code, out, err = run_cli(capsys, *argv, *(["--out", tmp_path / "x.pt"] if argv else []))
    assert code == 2 and err == f"dcapps: error: {line}\n", err
    assert not (tmp_path / "x.pt").exists()


def test_a_reduced_set_prints_in_one_line(digits):
    from condense_core import make_method

    made = make_method("select", "random", ipc=2, seed=1).condense(digits)
    assert repr(made) == "ReducedSet(20 images of 1x8x8, 10 classes, ipc 2; method random, data digits, seed 1)"
