"""condense_core: dataset condensation and selection algorithms (no Avalanche or NNI here).

Data flows one way: `load_data` -> a method from `make_method` -> `SyntheticSet` -> evaluation,
replay memory or NAS proxy.
"""
from .augment import DSA, DSAParams
from .data import ImageData, load_data
from .errors import InputError
from .evaluate import TrainConfig, evaluate, test_accuracy, train_model
from .method import Method
from .networks import build_model
from .registry import CONDENSERS, SELECTORS, make_method
from .synthetic import SyntheticSet

__all__ = ["DSA", "DSAParams", "ImageData", "load_data", "InputError", "TrainConfig", "evaluate",
           "test_accuracy", "train_model", "Method", "build_model", "CONDENSERS", "SELECTORS",
           "make_method", "SyntheticSet"]
