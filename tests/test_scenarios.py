"""Scripted class-incremental benchmarks: builders, config validation, `dcapps cl run` end to end."""
import json
import os

import pytest
import yaml

from dcapps.cli import main
from scenarios import runner
from scenarios.benchmarks import class_order, experience_sizes, make_benchmark
from scenarios.config import CONFIG_DIR, load_config

TINY = {"data": "digits", "experiences": 2, "seeds": [0],
        "model": {"name": "ConvNet", "width": 8, "depth": 1},
        "train": {"epochs": 3, "batch_size": 128}, "memory": {"ipc": 3},
        "methods": {"iterations": 3, "batch_real": 16},
        "strategies": ["naive", "replay", "dmreplay", "joint"]}


def write_config(tmp_path, name="tiny", **changes):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return str(path)


def test_experience_sizes_and_class_order():
    assert experience_sizes(10, 5) == [2] * 5
    assert experience_sizes(10, 3) == [4, 3, 3]
    assert experience_sizes(100, 6, 50) == [50, 10, 10, 10, 10, 10]
    assert class_order(10, 0) == class_order(10, 0)
    assert sorted(class_order(10, 0)) == list(range(10))
    assert class_order(10, 0) != class_order(10, 1)


def test_benchmark_splits_classes_in_the_seed_order(digits):
    bench = make_benchmark(digits, 3, seed=1, first_experience_classes=4)
    order = class_order(10, 1)
    got = [sorted(e.classes_in_this_experience) for e in bench.train_stream]
    assert got == [sorted(order[:4]), sorted(order[4:7]), sorted(order[7:])]
    assert sum(len(e.dataset) for e in bench.train_stream) == len(digits.y_train)
    assert sum(len(e.dataset) for e in bench.test_stream) == len(digits.y_test)


@pytest.mark.parametrize("name", ["digits", "splitmnist", "splitcifar10", "dmpaper_cifar100",
                                  "dmpaper_cifar100_10steps", "dmpaper_fashion"])
def test_builtin_configs_are_valid(name):
    cfg = load_config(name)
    assert cfg.name == name and cfg.strategies


@pytest.mark.parametrize("changes, words", [
    ({"trian": {"epochs": 1}}, ["trian"]),
    ({"train": {"epoch": 1}}, ["train.epoch"]),
    ({"strategies": ["naive", "ewc2"]}, ["ewc2"]),
    ({"train": {"epochs": 0}}, ["train.epochs"]),
    ({"train": {"memory_epochs": 0}}, ["train.memory_epochs"]),
    ({"memory": {"ipc": 3, "mem_size": 10}}, ["memory.ipc", "memory.mem_size"]),
    ({"experiences": 11}, ["experiences", "10 classes"]),
    ({"memory": {"mem_size": 6}}, ["memory.mem_size", "10 classes"]),
    ({"model": {"name": "ConvNet", "widht": 8}}, ["model.widht"]),
    ({"methods": {"lcmat": {"pool": 1}}}, ["methods.lcmat.pool"]),
    ({"condense": {"iterations": 3}}, ["condense is renamed methods"]),
])
def test_bad_config_is_rejected_with_the_key_name(tmp_path, capsys, changes, words):
    out = tmp_path / "out"
    assert main(["cl", "run", write_config(tmp_path, **changes), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not (out / "units").exists()


def test_run_is_resumed_after_an_interruption(tmp_path, capsys, monkeypatch):
    """First run dies after one unit; the second skips it, runs the rest and writes the report."""
    cfg, out = write_config(tmp_path), tmp_path / "out"
    real_unit, calls = runner.run_unit, []

    def interrupted(cfg, data, name, seed, *args, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append(name)
        return real_unit(cfg, data, name, seed, *args, **kw)

    monkeypatch.setattr(runner, "run_unit", interrupted)
    assert main(["cl", "run", cfg, "--out", str(out), "--quiet"]) == 130
    assert sorted(os.listdir(out / "units")) == ["naive-seed0.json"]
    first = (out / "units" / "naive-seed0.json").read_text()

    def counted(cfg, data, name, seed, *args, **kw):
        calls.append(name)
        return real_unit(cfg, data, name, seed, *args, **kw)

    monkeypatch.setattr(runner, "run_unit", counted)
    capsys.readouterr()
    assert main(["cl", "run", cfg, "--out", str(out), "--quiet", "--json"]) == 0
    assert calls == ["naive", "replay", "dmreplay", "joint"]  # naive ran once only
    assert (out / "units" / "naive-seed0.json").read_text() == first
    printed = capsys.readouterr().out
    last = json.loads(printed.strip().splitlines()[-1])
    assert list(last["summary"]) == TINY["strategies"]

    results = json.loads((out / "results.json").read_text())
    runs = {r["strategy"]: r for r in results["runs"]}
    for r in runs.values():
        assert len(r["accuracy"]) == 2 and all(0 <= a <= 1 for a in r["accuracy"])
        assert r["classes_per_experience"] == [5, 5] and r["settings"]["train"]["epochs"] == 3
    # naive forgets the first experience; joint (all data at once) forgets nothing
    assert runs["naive"]["per_experience"][1][0] < runs["naive"]["per_experience"][0][0] - 0.2
    assert runs["naive"]["forgetting"] > 0.2 and runs["joint"]["forgetting"] == 0
    assert runs["dmreplay"]["memory_images"] == runs["dmreplay"]["memory_training_images"] == 3 * 10
    assert runs["dmreplay"]["memory_bytes"] == 3 * 10 * (8 * 8 + 10) * 4 and runs["dmreplay"]["memory_time_s"] > 0
    assert runs["dmreplay"]["memory_logit_bytes"] == 3 * 10 * 10 * 4  # the learner's logits (knowledge auto, mix)
    assert (out / runs["dmreplay"]["memory_png"]).read_bytes()[:4] == b"\x89PNG"
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "matrix.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert all(f"| {s} |" in report for s in TINY["strategies"])
    # the condensed memory against the real-image one: the same pair in the file, the report,
    # the printout and the JSON line
    from scenarios.report import margin_lines, verdict_lines
    assert [(g["condensed"], g["baseline"]) for g in results["margins"]] == [("dmreplay", "replay")]
    assert last["margins"] == results["margins"]
    line, = margin_lines(results["margins"])
    verdict, = verdict_lines(results["margins"])
    assert line in report and line in printed and verdict in report and verdict in printed
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(TINY["strategies"])
    assert "===== joint seed 0 =====" in (out / "logs" / "joint-seed0.txt").read_text()


def test_metrics_of_a_hand_checked_two_and_three_experience_run():
    """Final accuracy, average incremental accuracy and Avalanche's forgetting from a unit's
    accuracy matrix and curve, against values worked out by hand."""
    from scenarios.report import run_metrics, summarize, table

    two = {"strategy": "s", "seed": 0, "accuracy": [0.9, 0.7], "per_experience": [[0.9], [0.6, 0.8]],
           "train_time_s": 1.0, "memory_time_s": 0.5}
    m = run_metrics(two)
    # final 0.7; average incremental (0.9 + 0.7) / 2; forgetting: experience 1 went 0.9 -> 0.6
    assert m["final_accuracy"] == 0.7 and m["average_incremental_accuracy"] == pytest.approx(0.8)
    assert m["forgetting"] == pytest.approx(0.3)
    # forgetting is measured from just after learning (Avalanche), not from the best earlier point:
    # experience 1: 0.9 -> 0.5 (its 0.95 after experience 2 does not count), experience 2: 0.8 -> 0.6
    three = {**two, "accuracy": [0.9, 0.85, 0.6], "per_experience": [[0.9], [0.95, 0.8], [0.5, 0.6, 0.7]]}
    assert run_metrics(three)["forgetting"] == pytest.approx(0.3)
    summary = summarize([two, {**two, "seed": 1, "accuracy": [0.8, 0.5], "per_experience": [[0.8], [0.4, 0.6]]}])
    assert summary["s"]["matrix"] == [[pytest.approx(0.85)], [pytest.approx(0.5), pytest.approx(0.7)]]
    assert summary["s"]["forgetting"]["mean"] == pytest.approx(0.35)  # 0.3 and 0.4
    # average incremental: seed 0 (0.9 + 0.7) / 2 = 0.8, seed 1 (0.8 + 0.5) / 2 = 0.65
    assert "| s | 60.00 ± 10.00 | 72.50 ± 7.50 | 35.00 ± 5.00 |" in table(summary)


def test_margins_pair_condensed_and_real_memories_by_seed():
    """A condensed memory is compared with each real-image memory by its per-seed differences,
    and called ahead only when every seed agrees and the mean exceeds the spread."""
    from scenarios.report import margin_lines, margins, verdict_lines

    def unit(strategy, seed, final, images=20):
        return {"strategy": strategy, "seed": seed, "accuracy": [0.9, final], "per_experience": [[0.9], [0.5, final]],
                "train_time_s": 1.0, "memory_time_s": 0.0, "memory_images": images}

    finals = {"dmreplay": [0.80, 0.82, 0.78], "herding": [0.79, 0.83, 0.77], "replay": [0.70, 0.71, 0.69]}
    runs = [unit(s, k, f) for s, fs in finals.items() for k, f in enumerate(fs)] + [unit("naive", 0, 0.2, 0)]
    got = {(g["condensed"], g["baseline"]): g for g in margins(runs)}
    assert set(got) == {("dmreplay", "herding"), ("dmreplay", "replay")}  # naive holds no memory
    # herding: differences +0.01, -0.01, +0.01 -> mean 0.00333, ahead on 2 of 3: a tie
    h = got[("dmreplay", "herding")]
    assert h["mean"] == pytest.approx(0.01 / 3) and h["ahead"] == 2 and h["verdict"] == "tie"
    # replay: +0.10, +0.11, +0.09 -> every seed ahead, mean 0.10 against std 0.0082
    r = got[("dmreplay", "replay")]
    assert r["mean"] == pytest.approx(0.10) and r["std"] == pytest.approx(0.00816, abs=1e-4)
    assert r["verdict"] == "ahead"
    assert "- dmreplay - replay: +10.00 ± 0.82 points, ahead on 3 of 3 seeds: ahead beyond the spread" \
        in margin_lines(margins(runs))
    assert verdict_lines(margins(runs)) == ["dmreplay: NOT ahead of herding beyond the spread on this data"]
    beaten = [r for r in runs if r["strategy"] != "herding"]
    assert verdict_lines(margins(beaten)) == ["dmreplay: ahead of every real-image memory beyond the spread"]


def test_builtin_configs_live_in_the_package():
    assert {"digits.yaml", "splitmnist.yaml", "splitcifar10.yaml", "dmpaper_cifar100.yaml",
            "dmpaper_fashion.yaml"} <= set(os.listdir(CONFIG_DIR))


def test_missing_memory_method_is_named_before_any_training(tmp_path, capsys, monkeypatch):
    from condense_core import registry

    registry.methods("condense")  # every method loaded, then dm taken away
    monkeypatch.delitem(registry.TABLE, ("condense", "dm"))
    out = tmp_path / "out"
    assert main(["cl", "run", write_config(tmp_path), "--out", str(out), "--quiet"]) == 2
    assert "'dm'" in capsys.readouterr().err
    assert not (out / "units").exists()


def test_icarl_and_der_run_from_avalanche_with_the_same_stored_images(tmp_path, capsys):
    """Avalanche's own ICaRL and DER, two experiences on digits: each ends holding ipc x classes
    images, like every other memory strategy."""
    out = tmp_path / "out"
    cfg = write_config(tmp_path, strategies=["icarl", "der"], memory={"ipc": 3})
    assert main(["cl", "run", cfg, "--out", str(out), "--quiet"]) == 0
    runs = {r["strategy"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    for name in ("icarl", "der"):
        assert runs[name]["memory_images"] == 3 * 10 and len(runs[name]["accuracy"]) == 2
        assert 0.2 < runs[name]["final_accuracy"] <= 1  # well above chance (0.1) on all ten classes


@pytest.mark.parametrize("mode", ["gdumb", "mix"])
def test_memory_epochs_train_only_the_models_trained_on_the_memory_only(tmp_path, digits, mode):
    """`train.memory_epochs` sets the epochs of gdumb and of the memory strategies under
    replay_mode gdumb; strategies that train on the stream (and every one under mix) keep `epochs`."""
    import torch

    from avalanche.training.plugins import EvaluationPlugin
    from scenarios.strategies import build_strategy

    cfg = load_config(write_config(tmp_path, train={"epochs": 3, "memory_epochs": 7, "batch_size": 128},
                                   memory={"ipc": 3, "replay_mode": mode}))
    expected = {"gdumb": 7, "herding": 7 if mode == "gdumb" else 3, "dmreplay": 7 if mode == "gdumb" else 3,
                "replay": 3, "icarl": 3, "der": 3, "naive": 3}
    for name, epochs in expected.items():
        model = runner.new_model(cfg.model, digits, 0)
        strategy = build_strategy(name, model, cfg.train, cfg.memory, cfg.method_settings(name), 10, 0,
                                  EvaluationPlugin(loggers=[]), torch.device("cpu"))
        assert strategy.train_epochs == epochs, name


def test_data_flag_runs_the_same_config_on_other_data(tmp_path, capsys, digits_npz):
    """`--data` replaces the config's data spec (the rest of the config unchanged); a spec that
    does not load stops the run with one line, before any unit."""
    out = tmp_path / "out"
    cfg = write_config(tmp_path, strategies=["replay"])
    assert main(["cl", "run", cfg, "--data", digits_npz, "--out", str(out), "--quiet", "--json"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["data"] == digits_npz and results["config"]["train"] == load_config(cfg).as_dict()["train"]
    assert [r["strategy"] for r in results["runs"]] == ["replay"]
    capsys.readouterr()
    missing = str(tmp_path / "nowhere.npz")
    assert main(["cl", "run", cfg, "--data", missing, "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere.npz" in err
    assert not (tmp_path / "o2" / "units").exists()


def test_a_record_written_before_the_glossary_renames_is_read_with_the_new_names(tmp_path):
    """`cl report` on a folder whose record still says `condense:` reads it as `methods:`."""
    from condense_core.sweep import Sweep

    cfg = load_config(write_config(tmp_path))
    old = {("condense" if k == "methods" else k): v for k, v in cfg.as_dict().items()}
    Sweep(str(tmp_path / "out"), cfg.settings()).plan(runner.plan(cfg), {"config": old})
    read, results, missing = runner.finished(str(tmp_path / "out"))
    assert read.methods == cfg.methods and read.methods.shared == {"iterations": 3, "batch_real": 16}
    assert results == [] and missing == list(runner.plan(cfg))
def test_set_overrides_any_config_key_is_checked_and_recorded(tmp_path, capsys):
    cfg, out = write_config(tmp_path), tmp_path / "out"
    assert main(["cl", "run", cfg, "--out", str(out), "--set", "train.epochs=1", "--set", "strategies=[naive, joint]",
                 "--set", "methods.dm.iterations=2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "seed 0: final accuracy" in line]
    assert [line.split("[")[1].split(" units")[0] for line in lines] == ["1/2", "2/2"]
    assert "ETA " in lines[0] and "ETA" not in lines[1]
    record = json.loads((out / "sweep.json").read_text())
    assert record["info"]["overrides"] == ["train.epochs=1", "strategies=[naive, joint]", "methods.dm.iterations=2"]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["train"]["epochs"] == 1 and results["config"]["strategies"] == ["naive", "joint"]
    assert results["config"]["methods"]["dm"] == {"iterations": 2}


@pytest.mark.parametrize("assignment, words", [
    ("train.lr=abc", "train.lr must be a finite number > 0, got 'abc'"),
    ("train.lrr=0.1", "unknown setting train.lrr (allowed: train.lr, train.momentum, "),
    ("train.lr", "--set must be KEY=VALUE (e.g. train.lr=0.01), got 'train.lr'"),
    ("data.root=x", "--set data.root: data is not a mapping of keys"),
    ("memory.ipc=0", "memory.ipc must be an integer >= 1 (or none), got 0"),
])
def test_a_bad_set_is_refused_like_the_yaml_key(tmp_path, capsys, assignment, words):
    out = tmp_path / "out"
    assert main(["cl", "run", write_config(tmp_path), "--out", str(out), "--set", assignment, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dcapps: error: {words}") and len(err.splitlines()) == 1 and not out.exists()


def test_the_matrix_picture_labels_its_colour_bar_and_writes_each_cell():
    from scenarios.report import matrix_figure

    summary = {"naive": {"matrix": [[0.9], [0.2, 0.95]]}, "joint": {"matrix": [[0.91], [0.9, 0.93]]}}
    fig = matrix_figure(summary)
    fig.canvas.draw()
    *heat_maps, bar = fig.axes
    assert [t.get_text() for t in heat_maps[0].texts] == ["90", "20", "95"]
    assert [t.get_text() for t in heat_maps[1].texts] == ["91", "90", "93"]
    label = bar.yaxis.label
    assert label.get_text() == "accuracy (%)"
    box, whole = label.get_window_extent(), fig.bbox
    assert whole.x0 <= box.x0 and box.x1 <= whole.x1 and whole.y0 <= box.y0 and box.y1 <= whole.y1
