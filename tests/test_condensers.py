"""Beyond DM: multi-formation (factor), IDM and M3D in the same engine: decoding, falling losses,
the seeded network queue, the MMD against a direct computation, checkpoint/resume and torchrun."""
import os
import subprocess
import sys

import pytest
import torch

from condense_core import ReducedSet, load_data, make_method
from condense_core.checkpoint import Checkpoint
from condense_core.engine import Engine
from condense_core.formation import decode, decoded_labels, encode
from condense_core.methods.m3d import gaussian_mmd

CPU = torch.device("cpu")
TINY = {"model_options": {"width": 16}, "device": "cpu", "batch_real": 32}
QUEUE = {"queue_size": 3, "refresh_every": 2, "train_nets": 1, "train_steps": 2, "train_batch": 64}


def test_decode_shapes_labels_and_factor_one_identity():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    assert decode(x, 1) is x and encode(x, 1) is x
    out = decode(x, 2)
    assert out.shape == (8, 3, 8, 8) and decoded_labels(torch.tensor([4, 7]), 2).tolist() == [4] * 4 + [7] * 4
    assert torch.allclose(decode(x[1:], 2), out[4:])  # stored image i gives rows 4i..4i+3
    flat = torch.rand(8, 1, 9, 9) * 0 + torch.arange(8.0).view(8, 1, 1, 1)  # constant images
    assert torch.allclose(decode(encode(flat, 2), 2), flat)  # tiles of constants round-trip exactly
    assert decode(torch.rand(1, 1, 7, 5), 3).shape == (9, 1, 7, 5)  # sizes that do not divide


def test_a_factor_one_set_trains_on_its_stored_images_and_a_factor_two_set_on_four_times_as_many(digits):
    plain = make_method("select", "random", ipc=2, seed=0).condense(digits)
    x, y = plain.for_data(digits)
    assert torch.equal(x, plain.images) and torch.equal(y, plain.labels)
    reduced = make_method("condense", "dm", ipc=1, iterations=1, factor=2, **TINY).condense(digits)
    x, y = reduced.for_data(digits)
    assert reduced.images.shape == (10, 1, 8, 8) and x.shape == (40, 1, 8, 8) and reduced.meta["factor"] == 2
    assert y.tolist() == [c for c in range(10) for _ in range(4)]


def test_factor_needs_enough_real_images_per_class(digits):
    from condense_core import InputError

    with pytest.raises(InputError, match="factor"):
        make_method("condense", "dm", ipc=60, factor=2, **TINY).condense(digits)


@pytest.mark.parametrize("name", ["idm", "m3d"])
def test_each_method_lowers_its_loss_under_a_fixed_network(digits, name):
    """With a queue of one network that never changes (never trained, so no class-aware term),
    the method's own matching loss falls as the images move (DM: tests/test_methods.py)."""
    fixed = {"queue_size": 1, "refresh_every": 10 ** 6, "train_nets": 0}
    method = make_method("condense", name, ipc=2, iterations=40, init="noise", dsa=False, lr_img=5.0,
                         **TINY, **fixed)
    reduced = method.condense(digits.subset([0, 1, 2]))
    first, last = reduced.meta["loss_first"], reduced.meta["loss_last"]
    assert last < 0.7 * first, (first, last)


def test_idm_queue_is_drawn_from_the_seed(digits):
    data = digits.subset([0, 1, 2])

    def run(seed):
        method = make_method("condense", "idm", ipc=1, iterations=5, seed=seed, **TINY, **QUEUE)
        engine = Engine(method, data, CPU)
        for _ in range(5):
            engine.step()
        return engine.result()[0], engine.run_state.state_dict()

    (a, qa), (b, qb), (c, _) = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(qa["nets"]) == 3 and qa["iteration"] == 5 and torch.equal(qa["accuracy"], qb["accuracy"])
    for sa, sb in zip(qa["nets"], qb["nets"]):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_gaussian_mmd_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g) + 0.5
    z = torch.cat([x, y])
    d2 = [[float(((a - b) ** 2).sum()) for b in z] for a in z]
    base = sum(d2[i][j] for i in range(9) for j in range(9) if i != j) / (81 - 9)
    widths = [base * 2.0 ** (i - 2) for i in range(5)]

    def k(i, j):
        return sum(torch.exp(torch.tensor(-d2[i][j] / w)).item() for w in widths)
    xx = sum(k(i, j) for i in range(5) for j in range(5)) / 25
    yy = sum(k(i, j) for i in range(5, 9) for j in range(5, 9)) / 16
    xy = sum(k(i, j) for i in range(5) for j in range(5, 9)) / 20
    assert gaussian_mmd(x, y, 5, 2.0).item() == pytest.approx(xx + yy - 2 * xy, rel=1e-4)
    assert gaussian_mmd(x, x.clone(), 5, 2.0).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("name", ["idm", "m3d"])
def test_resume_from_a_checkpoint_gives_the_uninterrupted_set(digits, tmp_path, name):
    """The queue (networks, their SGD state, accuracies) travels in the checkpoint."""
    data = digits.subset([0, 1, 2])
    method = make_method("condense", name, ipc=1, iterations=6, **TINY, **QUEUE)
    whole = Engine(method, data, CPU)
    for _ in range(6):
        whole.step()
    path = str(tmp_path / "run.ckpt")
    first = Engine(method, data, CPU, Checkpoint(path))
    for _ in range(3):
        first.step()
    first.save(Checkpoint(path))
    second = Engine(method, data, CPU, Checkpoint(path, resume=True))
    assert second.done == 3
    while second.done < 6:
        second.step()
    assert torch.equal(second.result()[0], whole.result()[0])


def test_torchrun_two_processes_write_the_single_process_m3d_set(tmp_path):
    argv = ["condense", "--data", "digits", "--method", "m3d", "--ipc", "1", "--iterations", "4",
            "--batch-real", "16", "--seed", "2", "--device", "cpu", "--quiet", "--model-options", '{"width": 16}',
            "--queue-size", "3", "--refresh-every", "2", "--train-steps", "2", "--train-batch", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = []
    for i, launcher in enumerate(([sys.executable],
                                  [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                   "--nproc-per-node", "2"])):
        outs.append(tmp_path / f"m3d_{i}.pt")
        done = subprocess.run(launcher + ["-m", "dcapps", *argv, "--out", str(outs[-1])], capture_output=True,
                              text=True, timeout=300, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    a, b = ReducedSet.load(str(outs[0])), ReducedSet.load(str(outs[1]))
    assert torch.equal(a.images, b.images) and b.meta["world_size"] == 2


def test_new_condensers_serve_replay_memories(digits):
    from dcapps.replay import ReducedSetBuffer, memory_dataset

    buffer = ReducedSetBuffer(ipc=1, method="idm", method_settings={**TINY, **QUEUE, "iterations": 2})
    made = buffer.method_for(1, "cpu").condense(load_data("digits").subset([0, 1]))
    made.meta.update({"item_arity": 2, "task_labels": {}})
    assert len(memory_dataset([made])) == 2 * 4  # two stored images, each decoded to four


@pytest.mark.parametrize("name", ["idm", "m3d"])
def test_settings_that_bound_one_another_take_effect_or_are_refused(tmp_path, digits, name, capsys):
    """queue_size bounds train_nets (the networks trained are distinct queue networks): more is
    refused, in one line saying which bounds which; without a queue the metadata records the
    values the run used, so two runs that computed the same say the same."""
    from condense_core import InputError
    from dcapps.cli import main

    with pytest.raises(InputError, match="train_nets 3 is more than queue_size 2: queue_size bounds train_nets"):
        make_method("condense", name, queue_size=2, train_nets=3)
    out = tmp_path / "never.pt"
    assert main(["condense", "--data", "digits", "--method", name, "--ipc", "1", "--queue-size", "1", "--out",
                 str(out)]) == 2  # the default train_nets, 2, is more than one network
    assert "queue_size bounds train_nets" in capsys.readouterr().err and not out.exists()
    small = digits.subset([0, 1])
    sets = [make_method("condense", name, ipc=1, iterations=2, queue_size=0, **TINY, **given).condense(small)
            for given in ({}, {"train_nets": 0, "ce_weight": 0.0}, {"train_nets": 5, "ce_weight": 2.0})]
    assert all(torch.equal(s.images, sets[0].images) for s in sets)
    assert {(s.meta["train_nets"], s.meta["ce_weight"]) for s in sets} == {(0, 0.0)}


def test_m3d_kernels_are_bounded():
    from condense_core import InputError
    from condense_core.methods.m3d import KERNELS_MAX

    with pytest.raises(InputError, match=f"kernel_num must be an integer >= 1, at most {KERNELS_MAX}, got 100000"):
        make_method("condense", "m3d", kernel_num=100_000)
    with pytest.raises(InputError, match="kernel_mul 1e\\+300 to the power 2 .* past the largest float"):
        make_method("condense", "m3d", kernel_mul=1e300)
    assert make_method("condense", "m3d", kernel_num=KERNELS_MAX, kernel_mul=2.0).kernel_num == KERNELS_MAX
