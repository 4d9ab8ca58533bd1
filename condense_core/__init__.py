"""condense_core: dataset condensation and selection algorithms (no Avalanche or NNI here).

Data flows one way: `load_data` -> a method from `make_method` -> `SyntheticSet` -> evaluation,
replay memory or NAS proxy. Names are resolved on first use, so importing a torch-free part
(`condense_core.errors`, `condense_core.settings`) does not import torch. (`evaluate` and
`methods` are modules of this package too: import those functions from `condense_core.evaluate`
and `condense_core.registry`.)
"""
import importlib

_WHERE = {
    "DSA": "augment", "DSAParams": "augment", "ImageData": "data", "load_data": "data",
    "InputError": "errors", "TrainConfig": "evaluate",
    "test_accuracy": "evaluate", "train_model": "evaluate", "Method": "method",
    "build_model": "networks", "make_method": "registry", "method_class": "registry",
    "SyntheticSet": "synthetic",
}
__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
