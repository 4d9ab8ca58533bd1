"""Soft targets: carried by a reduced set, learnt in evaluation, replayed with a memory (issue 32)."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from condense_core import InputError, ReducedSet, load_data, make_method
from condense_core.evaluate import evaluate
from condense_core.knowledge import dark_replay_loss, distillation_loss, soft_target_term
from condense_core.networks import build_model
from condense_core.reduced import SoftTargets
from dcapps.cli import main

TINY = {"model_options": {"width": 8, "depth": 1}, "batch_real": 8, "iterations": 3}
warnings.filterwarnings("ignore", category=UserWarning, module="avalanche")


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_der_loss_against_a_hand_computation_on_two_images():
    out = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    labels = torch.tensor([0, 2])
    mse = ((1 ** 2 + 0 + 1 ** 2) + (0.5 ** 2 + 0.5 ** 2 + 1 ** 2)) / 6
    ce = [-(2.0 - math.log(math.exp(2) + 1 + math.exp(-1))), -(0.0 - math.log(math.exp(0.5) + math.exp(1.5) + 1))]
    want = 0.1 * mse + 0.5 * (ce[0] + ce[1]) / 2
    assert dark_replay_loss(out, labels, logits, 0.1, 0.5).item() == pytest.approx(want, rel=1e-6)


def test_distillation_is_cross_entropy_plus_t_squared_kl():
    out, target = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 0.0]])
    t = 2.0
    q = torch.softmax(out / t, 1)[0]
    kl = sum(0.5 * math.log(0.5 / q[i].item()) for i in range(2))
    assert soft_target_term(out, target, t).item() == pytest.approx(t * t * kl, rel=1e-6)
    ce = F.cross_entropy(out, torch.tensor([0])).item()
    assert distillation_loss(out, torch.tensor([0]), target, t).item() == pytest.approx(ce + t * t * kl, rel=1e-6)
    assert soft_target_term(out, out, t).item() == pytest.approx(0.0, abs=1e-7)  # its own logits: nothing to learn


def test_soft_targets_round_trip_and_count_in_the_bytes(tmp_path, digits):
    made = make_method("condense", "dm", ipc=1, seed=0, device="cpu", soft_labels=True, teacher_epochs=1,
                       **TINY).condense(digits)
    assert made.targets is not None and made.targets.source == "teacher" and made.targets.temperature == 4.0
    assert made.targets.logits.shape == (10, 10)
    assert 0 < made.meta["teacher_time_s"] <= made.meta["wall_time_s"]  # the teacher counts in the set's cost
    assert made.nbytes == 10 * 64 * 4 + 10 * 10 * 4  # images, plus a row of K floats per image
    back = ReducedSet.load(made.save(str(tmp_path / "s.pt")))
    assert torch.equal(back.targets.logits, made.targets.logits) and back.targets.temperature == 4.0
    assert back.nbytes == made.nbytes
    plain = made.with_targets(None)
    assert plain.nbytes == 10 * 64 * 4 and ReducedSet.load(plain.save(str(tmp_path / "p.pt"))).targets is None


def test_targets_follow_multi_formation_decoding(digits):
    made = make_method("condense", "dm", ipc=1, seed=0, device="cpu", soft_labels=True, teacher_epochs=1,
                       factor=2, **TINY).condense(digits)
    assert made.targets.logits.shape == (40, 10)  # one row per decoded training image
    kept = made.keep(made.labels < 3)
    assert len(kept) == 3 and kept.targets.logits.shape == (12, 10)
    assert torch.equal(kept.targets.logits, made.targets.logits[:12])


def test_a_damaged_targets_field_is_refused(tmp_path, digits):
    made = make_method("select", "random", ipc=1, seed=0, device="cpu").condense(digits)
    path = str(tmp_path / "s.pt")
    for targets, words in (({"logits": torch.zeros(3, 10), "temperature": 1.0, "source": "teacher"}, "one row"),
                           ({"logits": torch.full((10, 10), float("nan")), "temperature": 1.0, "source": "teacher"},
                            "NaN"),
                           ({"logits": torch.zeros(10, 10), "temperature": 0.0, "source": "teacher"}, "temperature"),
                           ({"logits": torch.zeros(10, 10), "temperature": 1.0, "source": "oracle"}, "source")):
        payload = torch.load(made.save(path), weights_only=True)
        payload["targets"] = targets
        torch.save(payload, path)
        with pytest.raises(InputError, match=words):
            ReducedSet.load(path)


def test_an_old_set_without_targets_loads_and_evaluates(tmp_path, capsys, digits):
    old = make_method("select", "random", ipc=2, seed=0, device="cpu").condense(digits)
    payload = {"format": "dcapps.SyntheticSet/1", "images": old.images, "labels": old.labels,
               "classes": old.classes, "mean": old.mean, "std": old.std, "meta": old.meta}  # as files were written
    torch.save(payload, tmp_path / "old.pt")
    assert ReducedSet.load(str(tmp_path / "old.pt")).targets is None
    assert main(["evaluate", str(tmp_path / "old.pt"), "--data", "digits", "--runs", "1", "--epochs", "2",
                 "--device", "cpu", "--quiet"]) == 0
    assert "hard labels" in capsys.readouterr().out


def test_evaluation_trains_on_soft_targets_unless_hard(tmp_path, capsys, digits):
    path = str(tmp_path / "soft.pt")
    assert main(["select", "--data", "digits", "--method", "random", "--ipc", "2", "--soft-labels",
                 "--teacher-epochs", "1", "--model-options", '{"width": 8, "depth": 1}', "--out", path,
                 "--device", "cpu", "--quiet"]) == 0
    common = ["evaluate", path, "--data", "digits", "--runs", "1", "--epochs", "3", "--device", "cpu", "--quiet",
              "--json"]
    assert main(common) == 0
    soft = capsys.readouterr().out
    assert main([*common, "--hard"]) == 0
    hard = capsys.readouterr().out
    assert "soft targets of a teacher at T=4" in soft and "hard labels" in hard
    assert '"targets": {"source": "teacher", "temperature": 4.0}' in soft and '"targets": null' in hard
    assert soft.splitlines()[-1] != hard.splitlines()[-1]  # the soft targets changed the training


def test_soft_targets_that_do_not_fit_the_images_are_refused(digits):
    x, y = digits.x_train[:4], digits.y_train[:4]
    with pytest.raises(InputError, match="do not fit"):
        evaluate(x, y, digits, runs=1, device="cpu", targets=SoftTargets(torch.zeros(4, 3)))


# --- replay ----------------------------------------------------------------------------------------
avalanche = pytest.importorskip("avalanche")


def _stream(digits, experiences=2, classes=(0, 1, 2, 3)):
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
    from torch.utils.data import TensorDataset

    keep = torch.isin(digits.y_train, torch.tensor(classes))
    keep_test = torch.isin(digits.y_test, torch.tensor(classes))

    def tensors(x, y):
        ds = TensorDataset(x, y)
        ds.targets = y.tolist()
        return ds
    return nc_benchmark(tensors(digits.x_train[keep][::4], digits.y_train[keep][::4]),
                        tensors(digits.x_test[keep_test], digits.y_test[keep_test]), n_experiences=experiences,
                        task_labels=False, fixed_class_order=list(classes))


def _strategy(**memory):
    from avalanche.training.plugins import EvaluationPlugin

    from dcapps import DMReplay

    torch.manual_seed(0)
    model = build_model("ConvNet", 1, 10, (8, 8), width=8, depth=1)
    return DMReplay(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=16,
                    train_epochs=1, evaluator=EvaluationPlugin(loggers=[]), seed=0,
                    method_settings={**TINY, "teacher_epochs": 1}, **memory)


def test_mix_memory_records_the_learners_logits_and_learns_them(digits, tmp_path):
    strategy = _strategy(ipc=2, knowledge="logits")
    plugin = strategy.replay_plugin
    seen = []
    learnt = plugin.before_backward

    def spy(strategy_, **kw):
        if plugin._replayed is not None:
            seen.append(plugin._replayed[0])
        return learnt(strategy_, **kw)
    plugin.before_backward = spy
    for exp in _stream(digits).train_stream:
        strategy.train(exp)
    sets = strategy.memory.sets
    assert [s.targets.source for s in sets] == ["learner", "learner"]
    assert all(s.targets.logits.shape == (4, 10) for s in sets)  # the learner's 10 outputs
    want = torch.cat([s.training_images()[0] for s in sets])
    got = torch.stack([strategy.memory.buffer[i][0] for i in range(len(strategy.memory.buffer))])
    assert torch.equal(got, want) and len(strategy.memory.buffer[0]) == 4  # (x, y, t, logits)
    assert seen and set(seen) == {4}  # the second experience replayed its 4 stored images with their logits
    strategy.save_memory(str(tmp_path / "mem"))
    again = _strategy(ipc=2, knowledge="logits")
    again.load_memory(str(tmp_path / "mem"))
    assert all(torch.equal(a.targets.logits, b.targets.logits) for a, b in zip(again.memory.sets, sets))
    with pytest.raises(InputError, match="soft"):
        again.load_memory(str(_memory_without_targets(tmp_path, digits)))


def _memory_without_targets(tmp_path, digits):
    strategy = _strategy(ipc=2, knowledge="labels")
    strategy.train(_stream(digits).train_stream[0])
    return strategy.save_memory(str(tmp_path / "plain"))


def test_gdumb_memory_learns_a_teachers_targets_and_recondensed_classes_get_new_ones(digits):
    strategy = _strategy(mem_size=8, knowledge="logits", replay_mode="gdumb")
    stream = _stream(digits).train_stream
    strategy.train(stream[0])
    first = strategy.memory.sets[0]
    assert first.targets.source == "teacher" and len(first) == 8 and first.targets.logits.shape == (8, 10)
    strategy.train(stream[1])
    old, new = strategy.memory.sets
    assert len(old) == 4 and len(new) == 4  # the first classes were re-condensed onto their new share
    assert old.meta["reduced_to_ipc"] == 2 and old.targets.logits.shape == (4, 10)
    assert not torch.equal(old.targets.logits, first.targets.logits[:4])  # new images, new targets
    assert all(s.targets.source == "teacher" for s in (old, new))


def test_knowledge_auto_is_the_learners_logits_in_mix_and_labels_in_gdumb():
    assert _strategy(ipc=2).memory.logits_from == "learner"
    assert _strategy(ipc=2, replay_mode="gdumb").memory.logits_from is None
    assert _strategy(ipc=2, replay_mode="gdumb", knowledge="logits").memory.logits_from == "teacher"
    assert _strategy(ipc=2, knowledge="labels").memory.logits_from is None


def test_a_memory_can_look_through_the_learners_embedding(digits):
    strategy = _strategy(ipc=2, embedding="learner")
    assert strategy.memory.embedding == "learner"
    strategy.train(_stream(digits).train_stream[0])
    assert strategy.memory.sets[0].meta["embedding"] == "given"
    with pytest.raises(InputError, match="embedding"):
        _strategy(ipc=2, embedding="teacher")


def test_embedding_auto_is_the_learners_in_mix_and_the_methods_own_in_gdumb(digits):
    """auto: a learner that has learnt the experience lends its embedding (mix); one reset before
    the memory is built (gdumb), or one without embed()/features(), does not."""
    from dcapps.replay import ReducedSetBuffer

    stream = _stream(digits).train_stream
    mix = _strategy(ipc=2)
    assert mix.memory.embedding == "auto"
    mix.train(stream[0])
    assert mix.memory.sets[0].meta["embedding"] == "given"
    gdumb = _strategy(ipc=2, replay_mode="gdumb")
    assert gdumb.memory.embedding == "own"
    gdumb.train(stream[0])
    assert "embedding" not in gdumb.memory.sets[0].meta
    plain = torch.nn.Linear(64, 10)  # no embedding to look through
    assert ReducedSetBuffer(ipc=2)._embedding(plain) is None
    with pytest.raises(InputError, match="embed"):
        ReducedSetBuffer(ipc=2, embedding="learner")._embedding(plain)


def test_memory_bytes_count_the_logits(tmp_path):
    import yaml

    config = {"data": "digits", "experiences": 2, "seeds": [0], "model": {"name": "ConvNet", "width": 8, "depth": 1},
              "train": {"epochs": 1, "batch_size": 64}, "memory": {"ipc": 1, "knowledge": "logits"},
              "methods": {"iterations": 2, "batch_real": 8}, "strategies": ["dmreplay", "der"]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["cl", "run", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    import json

    units = {u: json.loads((tmp_path / "o" / "units" / f"{u}-seed0.json").read_text()) for u in ("dmreplay", "der")}
    assert units["dmreplay"]["memory_logit_bytes"] == 10 * 10 * 4  # 10 stored images, 10 floats each
    assert units["dmreplay"]["memory_bytes"] == 10 * 64 * 4 + 10 * 10 * 4
    assert units["der"]["memory_logit_bytes"] == units["der"]["memory_images"] * 10 * 4  # DER keeps logits too


def test_a_selected_memory_keeps_its_logits_when_it_shrinks(digits):
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.supervised import Naive

    from dcapps import ReducedSetReplayPlugin

    torch.manual_seed(0)
    model = build_model("ConvNet", 1, 10, (8, 8), width=8, depth=1)
    plugin = ReducedSetReplayPlugin(mem_size=8, method="herding", kind="select", knowledge="logits",
                                    embedding="learner", seed=0)
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=16,
                     train_epochs=1, evaluator=EvaluationPlugin(loggers=[]), plugins=[plugin])
    stream = _stream(digits).train_stream
    strategy.train(stream[0])
    first = plugin.memory.sets[0]
    strategy.train(stream[1])
    old = plugin.memory.sets[0]
    assert len(first) == 8 and len(old) == 4
    kept = old.meta["reduced_by"]["indices"]
    assert torch.equal(old.images, first.images[kept])
    assert torch.equal(old.targets.logits, first.targets.logits[kept])  # recorded when first stored

