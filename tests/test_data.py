import os

import numpy as np
import pytest
import torch

from condense_core import InputError, load_data
from condense_core.settings import flag_name


def test_digits_split_is_fixed_and_normalised(digits):
    again = load_data("digits")
    assert digits.x_train.shape == (1257, 1, 8, 8) and digits.x_test.shape == (540, 1, 8, 8)
    assert torch.equal(digits.x_train, again.x_train) and torch.equal(digits.y_test, again.y_test)
    assert digits.classes == list(range(10))
    assert abs(digits.x_train.mean().item()) < 1e-4 and abs(digits.x_train.std().item() - 1) < 1e-2
    idx = digits.class_indices()
    assert sorted(idx) == list(range(10)) and sum(len(v) for v in idx.values()) == 1257
    assert all((digits.y_train[v] == c).all() for c, v in idx.items())


def test_npz_grey_uint8(digits_npz, digits_arrays):
    d = load_data(digits_npz)
    assert d.x_train.shape == (1200, 1, 8, 8) and len(d.y_test) == 597
    raw = d.x_train * d.std[None, :, None, None] + d.mean[None, :, None, None]
    assert torch.allclose(raw[0, 0], torch.from_numpy(digits_arrays[0][0] / 255.0).float(), atol=1e-5)


def test_npz_colour_float_and_sparse_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((30, 9, 10, 3), dtype=np.float32)
    y = np.repeat([3, 7, 42], 10)
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    d = load_data(str(tmp_path / "c.npz"))
    assert d.x_train.shape == (30, 3, 9, 10)
    assert d.classes == [3, 7, 42] and set(d.y_train.tolist()) == {0, 1, 2}


def test_image_folder(tmp_path, digits_arrays):
    from PIL import Image

    x_tr, y_tr, _, _ = digits_arrays
    for split, rows in (("train", range(0, 40)), ("test", range(40, 60))):
        for i in rows:
            folder = tmp_path / split / f"digit{y_tr[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x_tr[i]).save(folder / f"{i}.png")
    d = load_data(str(tmp_path))
    assert d.x_train.shape == (40, 1, 8, 8) and len(d.x_test) == 20
    assert all(str(c).startswith("digit") for c in d.classes)


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4)), "missing arrays x_test, y_test"),
    (dict(x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(3),
          x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.arange(2)), "4 images but y_train has 3"),
    (dict(x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0.5, 1, 2, 3]),
          x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.arange(2)), "integer labels"),
    (dict(x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array(["a", "b", "c", "d"]),
          x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.arange(2)), "integer labels"),
    (dict(x_train=np.full((4, 8, 8), 3.0), y_train=np.arange(4),
          x_test=np.zeros((2, 8, 8)), y_test=np.arange(2)), "[0, 1]"),
])
def test_bad_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_data(str(tmp_path / "bad.npz"))


def test_bad_specs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_data(str(tmp_path / "missing.npz"))
    with pytest.raises(InputError, match="unknown data spec"):
        load_data("imagenet-42")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable"):
        load_data(str(tmp_path / "junk.npz"))


def test_torchvision_never_downloads_unless_asked(tmp_path):
    with pytest.raises(InputError, match="allow download to fetch it, or give root the folder"):
        load_data("mnist", root=str(tmp_path))
    with pytest.raises(InputError, match="allow --download to fetch it, or give --root the folder"):
        load_data("mnist", root=str(tmp_path), spell=flag_name)  # the command line's words
    assert os.listdir(tmp_path) in ([], ["MNIST"]) and not any(
        f for _, _, fs in os.walk(tmp_path) for f in fs)
