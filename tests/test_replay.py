"""DMReplay, ReducedSetReplayPlugin and ReducedSetBuffer on tiny class-incremental splits of digits."""
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from condense_core import InputError, load_data
from condense_core.networks import build_model

avalanche = pytest.importorskip("avalanche")
from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark  # noqa: E402
from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark  # noqa: E402
from avalanche.benchmarks.utils import as_classification_dataset  # noqa: E402
from avalanche.evaluation.metrics import accuracy_metrics  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin  # noqa: E402
from avalanche.training.supervised import Naive  # noqa: E402

from dcapps import ReducedSetReplayPlugin, DMReplay, ReducedSetBuffer  # noqa: E402

TINY = {"model_options": {"width": 8, "depth": 2}, "batch_real": 16}
CLASSES = [0, 1, 2, 3]

warnings.filterwarnings("ignore", category=UserWarning, module="avalanche")


@pytest.fixture(scope="module")
def digits():
    data = load_data("digits")
    keep = torch.isin(data.y_train, torch.tensor(CLASSES))
    keep_test = torch.isin(data.y_test, torch.tensor(CLASSES))
    return data.x_train[keep][::5], data.y_train[keep][::5], data.x_test[keep_test], data.y_test[keep_test]


def _tensors(x, y):
    ds = TensorDataset(x, y)
    ds.targets = y.tolist()
    return ds


def nc(digits):
    """nc_benchmark: items (x, y, t)."""
    x, y, xt, yt = digits
    return nc_benchmark(_tensors(x, y), _tensors(xt, yt), n_experiences=2, task_labels=False,
                        fixed_class_order=CLASSES)


def ci(digits):
    """class_incremental_benchmark: items (x, y)."""
    x, y, xt, yt = digits
    return class_incremental_benchmark({"train": as_classification_dataset(_tensors(x, y)),
                                        "test": as_classification_dataset(_tensors(xt, yt))},
                                       class_order=CLASSES, num_experiences=2)


def naive(plugin, **kw):
    model = build_model("ConvNet", 1, 10, (8, 8), width=8, depth=2)
    evaluator = EvaluationPlugin(accuracy_metrics(stream=True), loggers=[])
    return Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                 criterion=torch.nn.CrossEntropyLoss(), train_mb_size=32, train_epochs=1,
                 evaluator=evaluator, plugins=[plugin], **kw)


def per_class(buffer: ReducedSetBuffer) -> dict:
    y = torch.cat([s.labels for s in buffer.sets])
    return {int(c): int((y == c).sum()) for c in torch.unique(y)}


@pytest.mark.parametrize("make, knowledge", [(nc, "labels"), (ci, "labels"), (nc, "auto")],
                         ids=["nc_benchmark", "class_incremental_benchmark", "nc_benchmark-logits"])
def test_plugin_on_naive_keeps_ipc_per_class_with_matching_items(digits, make, knowledge):
    """Memory items have the data's tuple, and the learner's logits last when the memory keeps
    them (knowledge auto in mix)."""
    bench = make(digits)
    plugin = ReducedSetReplayPlugin(ipc=3, method="dm", method_settings={**TINY, "iterations": 2}, seed=0,
                                    knowledge=knowledge)
    logits = knowledge != "labels"
    strategy = naive(plugin)
    seen = []
    for exp in bench.train_stream:
        strategy.train(exp)
        seen += sorted({int(c) for c in exp.dataset.targets})
        assert per_class(plugin.memory) == {c: 3 for c in seen}
        assert len(plugin.memory.buffer) == plugin.memory.max_size == 3 * len(seen)
        real, stored = exp.dataset.eval()[0], plugin.memory.buffer[0]
        assert len(stored) == len(real) + logits and (not logits or stored[-1].shape == (10,))
        assert stored[0].shape == real[0].shape and stored[0].dtype == real[0].dtype
        assert all(type(a) is type(b) or torch.is_tensor(a) for a, b in zip(stored[1:len(real)], real[1:]))
        for s in plugin.memory.sets:
            assert not s.images.requires_grad and s.images.device.type == "cpu"
    assert any(k.startswith("Top1_Acc_Stream") for k in strategy.eval(bench.test_stream))


def test_mem_size_is_never_exceeded_and_old_classes_shrink(digits):
    buffer = ReducedSetBuffer(mem_size=10, method="dm", method_settings={**TINY, "iterations": 2}, seed=1)
    plugin = ReducedSetReplayPlugin(storage_policy=buffer)
    strategy = naive(plugin)
    bench = nc(digits)
    strategy.train(bench.train_stream[0])
    assert per_class(buffer) == {0: 5, 1: 5}
    old = buffer.sets[0].images.clone()
    strategy.train(bench.train_stream[1])
    assert per_class(buffer) == {c: 2 for c in CLASSES}  # 10 // 4 classes
    assert len(buffer.buffer) <= 10
    assert buffer.sets[0].meta["reduced_to_ipc"] == 2
    assert not torch.equal(buffer.sets[0].images, old[:2])  # condensed onto fewer images, not cut


def test_mem_size_smaller_than_classes_is_an_input_error(digits):
    buffer = ReducedSetBuffer(mem_size=3, method="random", kind="select", seed=0)
    strategy = naive(ReducedSetReplayPlugin(storage_policy=buffer))
    bench = nc(digits)
    strategy.train(bench.train_stream[0])
    with pytest.raises(InputError, match="mem_size 3"):
        strategy.train(bench.train_stream[1])


def test_bad_settings_fail_at_construction():
    with pytest.raises(InputError, match="unknown condense method 'nope'"):
        ReducedSetReplayPlugin(method="nope")
    with pytest.raises(InputError, match="unknown condense method 'herding'"):  # a selector is not DM
        DMReplay(model=build_model("MLP", 1, 10, (8, 8)), optimizer=None, method="herding")
    with pytest.raises(InputError, match="unknown setting no_such_option"):
        ReducedSetBuffer(method="dm", method_settings={"no_such_option": 1})
    with pytest.raises(InputError, match="lr_img must be a finite number > 0"):
        ReducedSetBuffer(method="dm", method_settings={"lr_img": float("nan")})
    with pytest.raises(InputError, match="replay_mode"):
        ReducedSetReplayPlugin(replay_mode="sometimes")
    model = build_model("MLP", 1, 10, (8, 8))
    with pytest.raises(TypeError):
        DMReplay(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), not_a_setting=1)


def test_memories_start_from_the_memory_preset_that_options_override():
    from condense_core.methods.dm import DM

    dm = ReducedSetBuffer(method="dm").method_for(10, "cpu", "check")
    assert {k: getattr(dm, k) for k in DM.presets["memory"]} == DM.presets["memory"]
    assert ReducedSetBuffer(method="dm", method_settings={"init": "real"}).method_for(10, "cpu").init == "real"
    assert ReducedSetBuffer(method="herding", kind="select").method_for(10, "cpu").name == "herding"  # no preset


class Watch(SupervisedPlugin):
    """Records the mini-batch sizes and checks the weights when training starts."""

    def __init__(self, initial: dict):
        super().__init__()
        self.initial, self.batches = initial, []

    def before_training_exp(self, strategy, **kw):
        assert all(torch.equal(v, self.initial[k]) for k, v in strategy.model.state_dict().items())

    def before_training_iteration(self, strategy, **kw):
        self.batches.append(len(strategy.mb_y))


def test_dmreplay_gdumb_trains_on_memory_from_the_initial_weights(digits):
    model = build_model("ConvNet", 1, 10, (8, 8), width=8, depth=2)
    watch = Watch({k: v.clone() for k, v in model.state_dict().items()})
    strategy = DMReplay(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                        criterion=torch.nn.CrossEntropyLoss(), ipc=2, method="dm",
                        method_settings={**TINY, "iterations": 2}, replay_mode="gdumb", seed=0,
                        train_mb_size=4, train_epochs=1, evaluator=EvaluationPlugin(loggers=[]),
                        plugins=[watch])
    for exp in nc(digits).train_stream:
        watch.batches.clear()
        strategy.train(exp)
        assert sum(watch.batches) == len(strategy.memory) == 2 * len(strategy.memory.classes())
    assert len(strategy.memory) == 8


def test_memory_save_load_round_trip(digits, tmp_path):
    plugin = ReducedSetReplayPlugin(ipc=2, method="herding", kind="select", method_settings={"selection_epochs": 1},
                                    seed=0, knowledge="labels")  # a memory of logits: tests/test_knowledge.py
    strategy = naive(plugin)
    for exp in nc(digits).train_stream:
        strategy.train(exp)
    folder = plugin.memory.save(str(tmp_path / "memory"))
    loaded = ReducedSetBuffer(ipc=2, method="herding", kind="select").load(folder)
    assert len(loaded.sets) == 2
    for a, b in zip(plugin.memory.sets, loaded.sets):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert a.meta["experience"] == b.meta["experience"]
    for i in range(len(loaded.buffer)):
        a, b = plugin.memory.buffer[i], loaded.buffer[i]
        assert torch.equal(a[0], b[0]) and [int(v) for v in a[1:]] == [int(v) for v in b[1:]]
    with pytest.raises(InputError, match="not a saved replay memory"):
        ReducedSetBuffer().load(str(tmp_path))
    with pytest.raises(InputError, match="more than mem_size"):
        ReducedSetBuffer(mem_size=4, method="random", kind="select").load(folder)


def _write_idx(path, array: "np.ndarray") -> None:
    """An uncompressed IDX file (the MNIST format) holding a uint8 array."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def test_dmreplay_on_avalanches_own_split_mnist(digits_arrays, tmp_path):
    """SplitMNIST as Avalanche builds it (its MNIST loader, ToTensor + Normalize, (x, y, t) items),
    from MNIST files holding the digits images upscaled to 28x28: no download."""
    import numpy as np
    from avalanche.benchmarks.classic import SplitMNIST

    x_tr, y_tr, x_te, y_te = digits_arrays
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    up = lambda x: np.kron(x, np.ones((1, 4, 4), np.uint8))[:, 2:30, 2:30]  # noqa: E731 (8x8 -> 28x28)
    for prefix, x, y in (("train", x_tr, y_tr), ("t10k", x_te, y_te)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", up(x))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    bench = SplitMNIST(n_experiences=5, seed=0, dataset_root=str(tmp_path))
    model = build_model("ConvNet", 1, 10, (28, 28), width=8, depth=2)
    strategy = DMReplay(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), ipc=2,
                        method_settings={**TINY, "iterations": 2}, train_mb_size=64, train_epochs=1,
                        evaluator=EvaluationPlugin(loggers=[]))
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
    real, stored = bench.train_stream[1].dataset.eval()[0], strategy.memory.buffer[0]
    assert len(real) == 3 and len(stored) == 4 and stored[0].shape == real[0].shape == (1, 28, 28)  # + logits
    assert len(strategy.memory) == 2 * 4  # two experiences of two classes, ipc 2
    first = strategy.memory.sets[0]
    assert float(first.images.min()) < -0.3  # normalised as the model sees it (raw pixels are >= 0)


def fast_benchmark(task_labels: bool):
    """Avalanche's own strategy-test benchmark (`get_fast_benchmark` in its tests): 10 classes of
    6 tabular features from scikit-learn, 60/40 split, 5 experiences of 2 classes."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(n_samples=1000, n_classes=10, n_features=6, n_informative=6, n_redundant=0,
                               random_state=0)
    x_tr, x_te, y_tr, y_te = train_test_split(torch.from_numpy(x).float(), torch.from_numpy(y).long(),
                                              train_size=0.6, shuffle=True, stratify=y, random_state=0)
    return nc_benchmark(_tensors(x_tr, y_tr), _tensors(x_te, y_te), 5, task_labels=task_labels, seed=0)


@pytest.mark.parametrize("replay_mode", ["mix", "gdumb"])
def test_dmreplay_in_avalanches_test_replay_pattern_tabular_sit_and_mt(replay_mode, tmp_path):
    """What Avalanche's `test_replay` does to every replay strategy, done to DMReplay: tabular
    features, `SimpleMLP` class-incremental (SIT) and `MTSimpleMLP` task-incremental (MT), train on
    every experience, evaluate on the test stream. The memory holds vectors condensed through an
    MLP without image augmentation, within its budget, with each item's task label."""
    from avalanche.models import MTSimpleMLP, SimpleMLP

    for multi_task in (False, True):
        bench = fast_benchmark(multi_task)
        model = MTSimpleMLP(input_size=6, hidden_size=10) if multi_task else SimpleMLP(input_size=6, hidden_size=10)
        strategy = DMReplay(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1e-3),
                            criterion=torch.nn.CrossEntropyLoss(), mem_size=10, replay_mode=replay_mode,
                            method_settings={"iterations": 3, "batch_real": 16}, train_mb_size=64,
                            eval_mb_size=50, train_epochs=2, evaluator=EvaluationPlugin(loggers=[]))
        for exp in bench.train_stream:
            strategy.train(exp)
            strategy.eval(bench.test_stream)
        memory = strategy.memory
        assert len(memory) <= 10 and len(memory.classes()) == 10
        items = [memory.buffer[i] for i in range(len(memory.buffer))]
        assert all(item[0].shape == (6,) for item in items)  # replayed as the vectors the model takes
        assert all(s.meta["model"] == "MLP" and s.meta["dsa"] is False for s in memory.sets)
        if multi_task:  # each class keeps the task it was learnt in
            task_of = {int(c): t for exp in bench.train_stream for c in exp.classes_in_this_experience
                       for t in [exp.task_label]}
            assert all(int(item[2]) == task_of[int(item[1])] for item in items)
        folder = str(tmp_path / f"memory{int(multi_task)}")
        resumed = ReducedSetBuffer(mem_size=10).load(strategy.save_memory(folder))
        assert resumed.vectors and torch.equal(resumed.buffer[0][0], items[0][0])


def test_dmreplay_warns_on_positional_arguments_like_avalanches_strategies():
    """Avalanche 0.6 strategies take keyword arguments; positional ones still work, with its
    deprecation warning. DMReplay behaves the same."""
    from avalanche.models import SimpleMLP
    from avalanche.training.templates.base import PositionalArgumentsDeprecatedWarning

    model = SimpleMLP(input_size=6, hidden_size=10)
    with pytest.warns(PositionalArgumentsDeprecatedWarning):
        strategy = DMReplay(model, torch.optim.SGD(model.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss(),
                            mem_size=10, evaluator=EvaluationPlugin(loggers=[]))
    assert strategy.memory.mem_size == 10 and isinstance(strategy._criterion, torch.nn.CrossEntropyLoss)
