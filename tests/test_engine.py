"""The DM engine: same set as the reference loop, speed flags, torchrun sharding, checkpoint and
resume (killed and interrupted runs), streamed ImageFolder data, and `dcapps bench`."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from condense_core import ReducedSet, load_data, make_method
from condense_core import engine as engine_module
from condense_core.engine import Engine, Span, forwards_of
from condense_core.methods.dm import DM
from condense_core.reference import ReferenceLoop
from dcapps.cli import main

SMALL = {"model_options": {"width": 16}, "device": "cpu"}
CPU = torch.device("cpu")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def steps(loop, n):
    for _ in range(n):
        loop.step()
    return loop


def test_engine_computes_the_reference_loops_set(digits):
    for flags in ({}, {"channels_last": True, "real_chunk": 7}, {"init": "noise", "dsa": False}):
        dm = DM(ipc=2, batch_real=40, iterations=4, seed=3, **SMALL, **flags)
        ref = steps(ReferenceLoop(dm, digits, CPU), 4).images()
        engine = steps(Engine(dm, digits, CPU), 4).result()[0]
        assert torch.allclose(engine, ref, atol=1e-4, rtol=1e-4), flags
        assert not torch.allclose(engine, DM(**{**dm.settings(), "iterations": 1}).condense(digits).images, atol=1e-3)


def test_forwards_shared_by_several_classes_compute_the_reference_set(digits, monkeypatch):
    """The GPU layout (classes packed into shared forwards), run here on the CPU."""
    monkeypatch.setitem(engine_module.FORWARD_PIXELS, "cpu", 100 * 8 * 8)  # 100 rows of 8x8 per forward
    for flags in ({}, {"real_chunk": 7}):  # units of a whole class's batch (40), or of 7 rows
        dm = DM(ipc=2, batch_real=40, iterations=3, seed=5, **SMALL, **flags)
        engine = Engine(dm, digits, CPU)
        assert [sum(s.end - s.start for s in f.spans) for f in engine.real_forwards] == [80] * 5  # 2 classes each
        assert [len(f.spans) for f in engine.syn_forwards] == [2] * 5
        ref = steps(ReferenceLoop(dm, digits, CPU), 3).images()
        assert torch.allclose(steps(engine, 3).result()[0], ref, atol=1e-4, rtol=1e-4), flags


def test_ranks_run_the_forwards_of_one_process(digits, monkeypatch):
    """Under torch.distributed a rank owns whole blocks of classes, so each of its forwards is one
    that a single process runs (what makes sharded GPU runs bit-identical)."""
    monkeypatch.setitem(engine_module.FORWARD_PIXELS, "cpu", 100 * 8 * 8)
    dm = DM(ipc=2, batch_real=30, iterations=1, **SMALL)  # 3 classes (90 rows) per forward

    def plan(ranks):
        monkeypatch.setattr(engine_module.Ranks, "current", classmethod(lambda cls: ranks))
        engine = Engine(dm, digits, CPU)
        return [[f.spans for f in engine.real_forwards], [f.spans for f in engine.syn_forwards], engine.own]

    one = plan(engine_module.Ranks())
    ranks = [plan(engine_module.Ranks(rank, 2)) for rank in range(2)]
    assert ranks[0][2] == [0, 1, 2, 6, 7, 8] and ranks[1][2] == [3, 4, 5, 9]
    for part in (0, 1):
        assert sorted(ranks[0][part] + ranks[1][part]) == sorted(one[part])


def test_forwards_keep_spans_whole_and_in_order():
    spans = [Span(0, 0, 30), Span(0, 30, 40), Span(1, 0, 40), Span(2, 0, 5)]
    assert forwards_of(spans, 0) == [[s] for s in spans]
    assert forwards_of(spans, 45) == [[(0, 0, 30), (0, 30, 40)], [(1, 0, 40), (2, 0, 5)]]
    assert forwards_of(spans, 20) == [[s] for s in spans]  # a span larger than the limit still runs


def test_bf16_and_compile_run_and_stay_close(digits):
    base = dict(ipc=1, batch_real=32, iterations=3, seed=0, **SMALL)
    fp32 = make_method("condense", "dm", **base).condense(digits)
    compiled = make_method("condense", "dm", compile=True, **base).condense(digits)
    bf16 = make_method("condense", "dm", precision="bf16", **base).condense(digits)
    assert torch.allclose(compiled.images, fp32.images, atol=1e-4)
    assert bf16.meta["precision"] == "bf16" and torch.isfinite(bf16.images).all()
    assert (bf16.images - fp32.images).abs().max() < 0.5  # lower precision, same direction


def _condense_argv(out, *extra, method="dm", iterations="6"):
    return ["condense", "--data", "digits", "--method", method, "--ipc", "2", "--iterations", iterations,
            "--batch-real", "32", "--seed", "1", "--device", "cpu", "--quiet", "--out", str(out), *extra]


def test_torchrun_two_processes_write_the_single_process_set(tmp_path):
    for method, extra in (("dm", []), ("lcmat", ["--pool-size", "2", "--net-epochs", "1"])):
        single, shared = tmp_path / f"{method}_1.pt", tmp_path / f"{method}_2.pt"
        for launcher, out in (([sys.executable], single), (TORCHRUN, shared)):  # same threads per process
            done = subprocess.run(launcher + ["-m", "dcapps"] + _condense_argv(out, *extra, method=method),
                                  capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path)
            assert done.returncode == 0, done.stderr[-2000:]
        a, b = ReducedSet.load(str(single)), ReducedSet.load(str(shared))
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert b.meta["world_size"] == 2 and a.meta["world_size"] == 1


REPLAY_SCRIPT = """
import sys, torch, torch.distributed as dist
from torch.utils.data import TensorDataset
from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
from condense_core import load_data
from dcapps.replay import ReducedSetBuffer
if len(sys.argv) > 2:
    dist.init_process_group("gloo")
d = load_data("digits")
train, test = TensorDataset(d.x_train, d.y_train), TensorDataset(d.x_test, d.y_test)
train.targets, test.targets = d.y_train.tolist(), d.y_test.tolist()
bench = nc_benchmark(train, test, n_experiences=2, task_labels=False, fixed_class_order=list(range(10)))
buf = ReducedSetBuffer(ipc=2, method_settings={"iterations": 4, "model_options": {"width": 8}, "batch_real": 16})
buf.post_adapt(type("State", (), {"device": torch.device("cpu")})(), bench.train_stream[0])
if not dist.is_initialized() or dist.get_rank() == 0:
    torch.save(buf.sets[0].images, sys.argv[1])
"""


def test_dmreplay_condensation_under_torchrun_matches_one_process(tmp_path):
    script = tmp_path / "replay_step.py"
    script.write_text(REPLAY_SCRIPT)
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt")], capture_output=True,
                         text=True, timeout=300, env=ENV)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(TORCHRUN + [str(script), str(tmp_path / "two.pt"), "dist"], capture_output=True,
                         text=True, timeout=300, env=ENV)
    assert two.returncode == 0, two.stderr[-2000:]
    assert torch.equal(torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "whole.pt"
    done = subprocess.run([sys.executable, "-m", "dcapps"] + _condense_argv(out, iterations="60"),
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    return ReducedSet.load(str(out))


def _start_and_wait_for_checkpoint(out, every="10"):
    proc = subprocess.Popen([sys.executable, "-m", "dcapps"] + _condense_argv(out, "--checkpoint-every", every,
                                                                             iterations="60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 120
    while not os.path.exists(str(out) + ".ckpt"):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    return proc


def _resume(out):
    done = subprocess.run([sys.executable, "-m", "dcapps"] + _condense_argv(out, "--resume", iterations="60"),
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not os.path.exists(str(out) + ".ckpt")  # superseded by the finished set
    return ReducedSet.load(str(out))


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    out = tmp_path / "syn.pt"
    proc = _start_and_wait_for_checkpoint(out)
    proc.kill()
    proc.wait(timeout=60)
    state = torch.load(str(out) + ".ckpt", weights_only=True)
    assert 0 < state["iteration"] < 60 and state["iteration"] % 10 == 0
    assert torch.equal(_resume(out).images, uninterrupted.images)


def test_sigint_checkpoints_the_current_iteration_and_exits_130(tmp_path, uninterrupted):
    out = tmp_path / "syn.pt"
    proc = _start_and_wait_for_checkpoint(out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "stopped by SIGINT after iteration" in err and "Traceback" not in err
    state = torch.load(str(out) + ".ckpt", weights_only=True)
    assert f"after iteration {state['iteration']};" in err and not out.exists()
    assert torch.equal(_resume(out).images, uninterrupted.images)


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, capsys):
    out = tmp_path / "syn.pt"
    dm = make_method("condense", "dm", ipc=2, iterations=6, batch_real=32, seed=1, device="cpu")
    from condense_core.checkpoint import Checkpoint
    engine = steps(Engine(dm, load_data("digits"), CPU), 2)
    ckpt = Checkpoint(str(out) + ".ckpt")
    engine.save(ckpt)
    assert main(_condense_argv(out, "--resume", "--lr-img", "3")) == 2
    assert "was made with lr_img=1.0, this run has 3.0" in capsys.readouterr().err and os.path.exists(ckpt.path)
    assert main(_condense_argv(out, "--checkpoint-every", "-1")) == 2


def test_streamed_image_folder_condenses_like_the_loaded_one(tmp_path, digits_arrays, capsys):
    from PIL import Image

    x, y, _, _ = digits_arrays
    for split, rows in (("train", range(0, 150)), ("test", range(150, 200))):
        for i in rows:
            folder = tmp_path / "folder" / split / f"c{y[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(folder / f"{i}.png")
    root = str(tmp_path / "folder")
    loaded, streamed = load_data(root), load_data(root, stream=True)
    assert not torch.is_tensor(streamed.x_train) and streamed.x_train.shape == loaded.x_train.shape
    assert torch.allclose(streamed.mean, loaded.mean) and torch.allclose(streamed.std, loaded.std)
    assert torch.allclose(streamed.x_train[[3, 1, 4]], loaded.x_train[[3, 1, 4]], atol=1e-5)
    cfg = dict(ipc=2, batch_real=16, iterations=3, seed=0, **SMALL)
    a, b = DM(**cfg).condense(loaded), DM(**cfg).condense(streamed)
    assert torch.allclose(a.images, b.images, atol=1e-4)
    assert main(["condense", "--data", root, "--stream", "--method", "dm", "--ipc", "1", "--iterations", "2",
                 "--quiet", "--out", str(tmp_path / "s.pt")]) == 0
    assert main(["evaluate", str(tmp_path / "s.pt"), "--data", root, "--stream", "--runs", "1", "--epochs", "2",
                 "--quiet"]) == 0
    assert main(["evaluate", "--full", "--data", root, "--stream", "--runs", "1"]) == 2
    select = ["select", "--data", root, "--stream", "--ipc", "1", "--quiet", "--out", str(tmp_path / "r.pt")]
    assert main(select + ["--method", "random"]) == 0
    assert main(select + ["--method", "herding"]) == 2
    assert "needs its images in memory" in capsys.readouterr().err


def test_bench_prints_both_loops_and_json(capsys):
    assert main(["bench", "condense", "--data", "digits", "--ipc", "2", "--batch-real", "16",
                 "--iterations", "1", "--warmup", "0", "--json"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    assert "reference" in out and "speed-up" in out and "matmul peak" in out
    assert res["engine_s_per_it"] > 0 and res["reference_s_per_it"] > 0 and res["gflop_per_it"] > 0
    assert res["speedup"] == pytest.approx(res["reference_s_per_it"] / res["engine_s_per_it"])
    assert res["peak_memory_gb"] > 0 and res["matmul_peak_gflops"] > 0


@pytest.mark.parametrize("argv", [
    ["bench", "condense", "--data", "digits", "--iterations", "0"],
    ["bench", "condense", "--data", "digits", "--precision", "fp16"],
    ["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--real-chunk", "-2", "--out", "x.pt"],
    ["select", "--data", "digits", "--method", "random", "--ipc", "1", "--compile", "--out", "x.pt"],
])
def test_bad_engine_flags_exit_2(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_reproducible_sets_deterministic_cuda_kernels_and_restores_them():
    from condense_core.runtime import reproducible

    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark)
    with reproducible(torch.device("cuda")):  # only sets flags: runs without a GPU
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.deterministic and not cudnn.benchmark
    assert (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark) == before
    with reproducible(CPU):
        assert not torch.are_deterministic_algorithms_enabled()


def test_torchrun_with_one_process_joins_a_group(monkeypatch):
    from condense_core.distributed import launched_by_torchrun

    for name in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert not launched_by_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_by_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run")  # torchrun --nproc-per-node 1 (nccl with one GPU)
    assert launched_by_torchrun()


def test_an_iteration_never_reads_the_device(digits, monkeypatch):
    """What a CUDA graph needs, checked on the CPU: with the GPU's augmentation path, one
    iteration makes no host read of a tensor (no .item(), .tolist(), bool() ...), so it can be
    captured once and replayed; its loss goes to the device-side slot."""
    from condense_core.augment import DSA

    monkeypatch.setattr(DSA, "apply", lambda self, x, op, u: self._selected(x, op, u.to(x.dtype)))
    dm = DM(ipc=2, batch_real=16, iterations=3, seed=0, **SMALL)
    engine = Engine(dm, digits, CPU)
    engine.step()  # the first draw of everything, outside the guard

    def refuse(*args, **kwargs):
        raise AssertionError("a host read inside an iteration")
    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    engine.iterate()
    monkeypatch.undo()
    assert int(engine.slot) == 2 and bool((engine.losses[:2] > 0).all())
