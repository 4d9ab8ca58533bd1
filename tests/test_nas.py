"""Proxy NAS: search spaces, `dcapps nas init|report|rank-eval`, the trial, and a real nnictl run."""
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from condense_core import InputError
from dcapps.cli import main
from harness.hostile_inputs import cheap_rank_eval
from nas.space import FULL, architectures, check_space, load_space, to_nni

NNICTL = os.path.join(os.path.dirname(sys.executable), "nnictl")


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_spaces_match_the_paper_and_reject_empty(tmp_path):
    assert len(architectures(FULL)) == 720
    assert len(architectures(load_space("small"))) == 72
    assert to_nni({"depth": [1, 2]}) == {"depth": {"_type": "choice", "_value": [1, 2]}}
    narrowed = check_space({"depth": {"_type": "choice", "_value": [2]}, "norm": ["batchnorm", "none"]})
    assert len(architectures(narrowed)) == 2 and narrowed["width"] == [128]
    for bad in ({}, {"depth": []}, {"depth": [7]}, {"colour": ["red"]}):
        with pytest.raises(ValueError):
            check_space(bad)


def test_init_writes_a_runnable_experiment_and_trial_runs_standalone(tmp_path, capsys, proxy):
    out = tmp_path / "exp"
    rc, text, err = run_cli(capsys, "nas", "init", "--data", "digits", "--proxy", proxy, "--out", str(out),
                            "--tuner", "random", "--max-trials", "3", "--epochs", "2", "--json")
    assert rc == 0, err
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["architectures"] == 72 and summary["max_trials"] == 3
    cfg = yaml.safe_load((out / "config.yml").read_text())
    assert cfg["trialCommand"].startswith(sys.executable)
    assert cfg["trainingService"]["platform"] == "local" and cfg["tuner"]["name"] == "Random"
    assert json.loads((out / "search_space.json").read_text())["depth"]["_value"] == [1, 2, 3]
    assert (out / "proxy.pt").is_file() and json.loads((out / "trial.json").read_text())["train"]["epochs"] == 2

    from nas.trial import main as trial_main
    assert trial_main(["--setup", str(out / "trial.json"), "--params", '{"depth": 1, "width": 32}']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [l.split(":")[0] for l in lines[:-1]] == ["epoch 1", "epoch 2"]
    result = json.loads(lines[-1])
    assert result["arch"] == "d1-w32-relu-instancenorm-avg" and result["proxy_images"] == 20
    assert 0 <= result["accuracy"] <= 1 and result["params"] > 0
    assert trial_main(["--setup", str(out / "trial.json"), "--params", '{"depth": 9}']) == 2


def test_every_offered_tuner_accepts_the_written_config(tmp_path, capsys, proxy):
    """NNI's own tuner classes, built from config.yml's classArgs, propose architectures of the space."""
    from nni.algorithms.hpo.evolution_tuner import EvolutionTuner
    from nni.algorithms.hpo.gridsearch_tuner import GridSearchTuner
    from nni.algorithms.hpo.random_tuner import RandomTuner
    from nni.algorithms.hpo.tpe_tuner import TpeTuner

    classes = {"GridSearch": GridSearchTuner, "Random": RandomTuner, "TPE": TpeTuner, "Evolution": EvolutionTuner}
    small = load_space("small")
    for tuner in ("grid", "random", "tpe", "evolution"):
        out = tmp_path / tuner
        assert run_cli(capsys, "nas", "init", "--data", "digits", "--proxy", proxy, "--out", str(out),
                       "--tuner", tuner, "--max-trials", "4")[0] == 0
        section = yaml.safe_load((out / "config.yml").read_text())["tuner"]
        algo = classes[section["name"]](**section.get("classArgs", {}))
        algo.update_search_space(json.loads((out / "search_space.json").read_text()))
        params = algo.generate_parameters(0)
        assert all(params[k] in small[k] for k in small), (tuner, params)
    rc, _, err = run_cli(capsys, "nas", "init", "--data", "digits", "--proxy", proxy, "--out", str(tmp_path / "a"),
                         "--tuner", "anneal")
    assert rc == 2 and "anneal" in err


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, proxy, digits_arrays):
    x_tr, y_tr, x_te, y_te = digits_arrays
    five = tmp_path / "five.npz"  # 8x8 digits, but only classes 0-4
    np.savez(five, x_train=x_tr[y_tr < 5], y_train=y_tr[y_tr < 5], x_test=x_te[y_te < 5], y_test=y_te[y_te < 5])
    big = tmp_path / "big.npz"  # all 10 classes, but 16x16 images
    up = lambda a: a.repeat(2, axis=1).repeat(2, axis=2)
    np.savez(big, x_train=up(x_tr), y_train=y_tr, x_test=up(x_te), y_test=y_te)
    garbage = tmp_path / "bad.pt"
    garbage.write_bytes(b"not a tensor file")
    empty = tmp_path / "space.json"
    empty.write_text("{}")
    out = tmp_path / "exp"
    cases = [("--proxy", str(garbage)), ("--data", str(five)), ("--data", str(big)), ("--space", str(empty))]
    for flag, value in cases:
        args = {"--data": "digits", "--proxy": proxy, "--space": "small", flag: value}
        rc, _, err = run_cli(capsys, "nas", "init", "--out", str(out), *[t for kv in args.items() for t in kv])
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (flag, err)
        assert not out.exists()
    rc, _, err = run_cli(capsys, "nas", "rank-eval", "--data", str(five), "--proxy", proxy, "--archs", "2")
    assert rc == 2 and "classes" in err
    for options in ('{"iteration": 3}', '{"train_nets": 1}'):  # misspelt; a setting of idm, not of dm
        rc, _, err = run_cli(capsys, "nas", "rank-eval", "--data", "digits", "--condense", "dm", "--ipc", "1",
                             "--method-settings", options, "--out", str(out))
        assert rc == 2 and "--method-settings" in err and "not a setting of dm" in err and not out.exists(), err
    rc, _, err = run_cli(capsys, "nas", "rank-eval", "--data", "digits", "--proxy", proxy, "--archs", "0")
    assert rc == 2 and "--archs" in err
    rc, _, err = run_cli(capsys, "nas", "report", "--dir", str(tmp_path))
    assert rc == 2 and "no NNI experiment" in err


@pytest.mark.parametrize("settings, words", [
    ({"lr_img": "fast"}, ["lr_img", "'fast'"]), ({"lr_img": float("nan")}, ["lr_img", "nan"]),
    ({"iterations": -1}, ["iterations", ">= 1"]), ({"iterations": 10 ** 30}, ["iterations", "at most"]),
    ({"device": "meta"}, ["device", "--device"]), ({"ipc": 2}, ["ipc", "--ipc"]), ({"seed": 1}, ["seed", "--seed"]),
])
def test_rank_eval_refuses_method_settings_before_it_writes_or_loads(tmp_path, capsys, monkeypatch, settings, words):
    monkeypatch.setattr("nas.rank_eval_run.load_data", lambda *a, **k: pytest.fail("data loaded before the refusal"))
    rc, _, err = run_cli(capsys, *cheap_rank_eval(tmp_path, settings))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "--method-settings" in err and all(w in err for w in words), err
    assert not (tmp_path / "r").exists()


def test_a_rank_eval_refused_after_its_first_write_removes_it_and_the_corrected_command_runs(tmp_path, capsys):
    rc, _, err = run_cli(capsys, *cheap_rank_eval(tmp_path, {"iterations": 4, "lr_img": 1e30}))
    assert rc == 2 and "diverged" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()  # its sweep.json and proxies/ were written, then removed
    rc, out, err = run_cli(capsys, *cheap_rank_eval(tmp_path, {"iterations": 2}, "--json"))
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["summary"][0]["proxy"] == "dm ipc1"
    assert sorted(os.listdir(tmp_path / "r")) == ["claims", "proxies", "result.json", "sweep.json", "units"]


def test_correlations_and_sampling_are_exact_and_seeded():
    from nas.rank_eval import correlations, sample_architectures

    full = [0.9, 0.8, 0.7, 0.6]
    assert correlations([4, 3, 2, 1], full)["spearman"] == 1.0
    assert correlations([1, 2, 3, 4], full)["kendall"] == -1.0
    space = load_space("small")
    assert sample_architectures(space, 5, 3) == sample_architectures(space, 5, 3)
    assert sample_architectures(space, 5, 3) != sample_architectures(space, 5, 4)
    assert len({json.dumps(a) for a in sample_architectures(space, 72, 0)}) == 72


def _timings_aside(x):
    if isinstance(x, dict):
        return {k: _timings_aside(v) for k, v in x.items()
                if not k.endswith(("_s", "seconds")) and not k.startswith("speedup")}
    return [_timings_aside(v) for v in x] if isinstance(x, list) else x


def test_rank_eval_compares_proxies_with_whole_data(tmp_path, capsys, proxy):
    out = tmp_path / "rank"
    space = tmp_path / "space.json"  # three cheap architectures: the activations of a 1-layer, 32-wide net
    space.write_text(json.dumps({"depth": [1], "width": [32], "act": ["sigmoid", "relu", "leakyrelu"]}))
    args = ["nas", "rank-eval", "--data", "digits", "--proxy", proxy, "--archs", "3", "--space", str(space),
            "--epochs", "3", "--full-epochs", "1", "--baselines", "random,early", "--quiet", "--json"]
    rc, text, err = run_cli(capsys, *args, "--out", str(out))
    assert rc == 0, err
    res = json.loads(text.strip().splitlines()[-1])
    assert res == json.loads((out / "result.json").read_text()) and res["missing"] == []
    assert [s["proxy"] for s in res["summary"]] == ["random ipc2", "random subset ipc2", "whole data, 1 ep",
                                                    "naswot", "synflow", "grad_norm", "snip"]
    assert len(res["per_arch"]) == 3 and all(0 <= r["full"] <= 1 for r in res["per_arch"])
    for s in res["summary"]:
        assert s["images"] in (20, 1257, 64) and s["picked"] in {r["arch"] for r in res["per_arch"]}
        assert s["spearman"] is None or -1 <= s["spearman"] <= 1
    early = res["summary"][2]
    assert early["epochs"] == max(1, round(3 * 20 / 1257))
    assert all(set(r["zero_cost"]) == {"naswot", "synflow", "grad_norm", "snip"} for r in res["per_arch"])

    # Two shards into one folder: the same result; after the first, the second's architecture is missing.
    shards = tmp_path / "shards"
    rc, text, _ = run_cli(capsys, *args, "--out", str(shards), "--shard", "1/2")
    assert rc == 0 and json.loads(text.strip().splitlines()[-1])["missing"] == ["arch001"]
    rc, text, _ = run_cli(capsys, *args, "--out", str(shards), "--shard", "2/2")
    assert rc == 0 and _timings_aside(json.loads(text.strip().splitlines()[-1])) == _timings_aside(res)

    # A DM proxy added in a folder of its own: the whole data is trained again to the same accuracies,
    # and the two results join into one comparison (trained proxies first); other runs do not join.
    from nas.rank_eval import join_results

    added = args[:4] + ["--condense", "dm", "--ipc", "2", "--method-settings", '{"iterations": 2}'] + args[6:]
    added[added.index("random,early")] = "none"
    rc, text, err = run_cli(capsys, *added, "--zero-cost", "none", "--out", str(tmp_path / "added"))
    assert rc == 0, err
    more = json.loads(text.strip().splitlines()[-1])
    joined = join_results([res, more])
    assert [s["proxy"] for s in joined["summary"]] == ["random ipc2", "random subset ipc2", "whole data, 1 ep",
                                                       "dm ipc2", "naswot", "synflow", "grad_norm", "snip"]
    assert joined["summary"][3] == more["summary"][0] and joined["full_s"] == res["full_s"]
    assert all(set(r["proxies"]) == {"random ipc2", "random subset ipc2", "whole data, 1 ep", "dm ipc2"}
               for r in joined["per_arch"])
    with pytest.raises(InputError, match="both have .*random ipc2"):
        join_results([res, res])
    more["per_arch"][0]["full"] += 0.01
    with pytest.raises(InputError, match="whole-data accuracies"):
        join_results([res, more])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _finished_trials(exp_dir) -> int:
    dbs = list(exp_dir.glob("nni-experiments/*/db/nni.sqlite"))
    if not dbs:
        return 0
    con = sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM TrialJobEvent WHERE event IN "
                           "('SUCCEEDED', 'FAILED', 'USER_CANCELED', 'SYS_CANCELED')").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def two_trials(exp, home, wait_s: float) -> str:
    """`nnictl create` the experiment of folder `exp` (NNI's list of experiments in `home`), wait
    until its two trials are finished, stop it; returns its id."""
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1"}
    port = str(_free_port())
    try:
        created = subprocess.run([NNICTL, "create", "--config", str(exp / "config.yml"), "--port", port],
                                 env=env, capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stdout + created.stderr
        exp_id = re.search(r"Experiment ID: (?:\x1b\[\d+m)?(\w+)", created.stdout).group(1)
        deadline = time.time() + wait_s
        while _finished_trials(exp) < 2 and time.time() < deadline:
            time.sleep(1)
        logs = sorted(exp.glob("nni-experiments/*/log/nnimanager.log"))
        assert _finished_trials(exp) == 2, logs[0].read_text()[-3000:] if logs else "no NNI manager log"
    finally:
        subprocess.run([NNICTL, "stop", "--port", port], env=env, capture_output=True, timeout=60)
    return exp_id


def test_nnictl_runs_a_two_trial_experiment_and_report_ranks_it(tmp_path, capsys, proxy, monkeypatch):
    exp = tmp_path / "exp"
    rc, _, err = run_cli(capsys, "nas", "init", "--data", "digits", "--proxy", proxy, "--out", str(exp),
                         "--tuner", "grid", "--max-trials", "2", "--concurrency", "2", "--epochs", "2")
    assert rc == 0, err
    home = tmp_path / "home"  # NNI's experiment list goes here, not into the real home
    exp_id = two_trials(exp, home, 75)
    rc, text, err = run_cli(capsys, "nas", "report", "--dir", str(exp), "--json")
    assert rc == 0, err
    res = json.loads(text.strip().splitlines()[-1])
    assert res["experiment"] == exp_id and res["statuses"] == {"SUCCEEDED": 2}
    ranked = res["ranking"]
    assert [r["rank"] for r in ranked] == [1, 2] and ranked[0]["accuracy"] >= ranked[1]["accuracy"]
    assert {r["depth"] for r in ranked} == {1} and all(r["params"] > 0 for r in ranked)
    assert (exp / "ranking.csv").read_text().count("\n") == 3 and (exp / "ranking.png").stat().st_size > 0
    monkeypatch.setenv("HOME", str(home))  # by id, through NNI's own list of experiments
    rc, text, err = run_cli(capsys, "nas", "report", "--experiment", exp_id, "--out", str(tmp_path / "r"))
    assert rc == 0 and exp_id in text and (tmp_path / "r" / "ranking.csv").is_file()
