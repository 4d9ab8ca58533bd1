import pytest
import torch

from condense_core import InputError, ReducedSet


def small_set():
    return ReducedSet(torch.randn(4, 1, 8, 8), torch.tensor([0, 0, 1, 1]), ["a", "b"],
                        torch.tensor([0.5]), torch.tensor([0.2]), {"method": "dm", "ipc": 2})


def test_round_trip_and_grid(tmp_path):
    s = small_set()
    s.save(str(tmp_path / "s.pt"))
    t = ReducedSet.load(str(tmp_path / "s.pt"))
    assert torch.equal(s.images, t.images) and torch.equal(s.labels, t.labels)
    assert t.classes == ["a", "b"] and t.meta == {"method": "dm", "ipc": 2} and t.ipc == 2
    s.save_grid(str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "s.pt"]  # no temporary left


def test_stored_images_are_detached_cpu():
    s = ReducedSet(torch.randn(2, 1, 8, 8, requires_grad=True), [0, 1], [0, 1], [0.0], [1.0])
    assert not s.images.requires_grad and s.images.device.type == "cpu"


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        ReducedSet.load(str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable"):
        ReducedSet.load(str(tmp_path / "junk.pt"))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not a dcapps ReducedSet"):
        ReducedSet.load(str(tmp_path / "foreign.pt"))
    s = small_set()
    s.save(str(tmp_path / "ok.pt"))
    obj = torch.load(tmp_path / "ok.pt")
    obj["labels"] = torch.tensor([0, 1])
    torch.save(obj, tmp_path / "short.pt")
    with pytest.raises(InputError, match="one label per image"):
        ReducedSet.load(str(tmp_path / "short.pt"))


def test_for_data_checks_and_renormalises(digits):
    s = ReducedSet(digits.x_train[:3], digits.y_train[:3], digits.classes, digits.mean, digits.std)
    x, y = s.for_data(digits)
    assert torch.allclose(x, digits.x_train[:3], atol=1e-6)
    with pytest.raises(InputError, match="classes"):
        small_set().for_data(digits) if False else ReducedSet(
            digits.x_train[:2], [0, 1], ["x", "y"], digits.mean, digits.std).for_data(digits)
    with pytest.raises(InputError, match="C x H x W"):
        ReducedSet(torch.zeros(2, 3, 8, 8), [0, 1], digits.classes, [0] * 3, [1] * 3).for_data(digits)
