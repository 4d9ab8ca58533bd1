"""Shared fixtures: the bundled digits data (loaded once) and small helper writers."""
import numpy as np
import pytest
import torch

# One thread: the tests' networks are tiny, and on the project's 2-core machine, shared with other
# jobs, two threads that wait for a busy core made the suite up to 40x slower (test_methods.py:
# 12m40s with 2 threads against 17 s with 1 while another job held a core).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from condense_core import load_data

    return load_data("digits")


@pytest.fixture(scope="session")
def digits_arrays():
    """Raw digits as uint8 N x H x W arrays (a real data set in the .npz layout)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0 * 255).round().astype(np.uint8)
    return x[:1200], d.target[:1200], x[1200:], d.target[1200:]


@pytest.fixture
def digits_npz(tmp_path, digits_arrays):
    x_tr, y_tr, x_te, y_te = digits_arrays
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return str(path)


@pytest.fixture(scope="session")
def proxy(tmp_path_factory, digits):
    """A tiny real proxy set for the NAS tests: 2 random digits per class."""
    from condense_core import make_method

    path = str(tmp_path_factory.mktemp("proxy") / "proxy.pt")
    make_method("select", "random", ipc=2, seed=0).condense(digits).save(path)
    return path
