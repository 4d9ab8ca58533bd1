"""condense_core: dataset condensation and selection algorithms (no Avalanche or NNI here).

Data flows one way: `load_data` -> a method from `make_method` -> `ReducedSet` -> evaluation,
replay memory or NAS proxy. Names are resolved on first use, so importing a torch-free part
(`condense_core.errors`, `condense_core.settings`) does not import torch. (`evaluate` and
`methods` are modules of this package too: import those functions from `condense_core.evaluate`
and `condense_core.registry`.)
"""
import importlib

_WHERE = {
    "DSA": "augment", "DSAParams": "augment", "ImageData": "data", "load_data": "data",
    "InputError": "errors", "SGDSettings": "training", "TrainSettings": "training",
    "test_accuracy": "evaluate", "train_model": "evaluate", "Method": "method",
    "build_model": "networks", "make_method": "registry", "method_class": "registry",
    "ReducedSet": "reduced",
}
# Names renamed by the glossary (docs/glossary.md): they work for one more release, with a warning.
_RENAMED = {"SyntheticSet": "ReducedSet", "TrainConfig": "TrainSettings"}
__all__ = list(_WHERE)


def __getattr__(name):
    if name in _RENAMED:
        from .deprecation import renamed

        renamed(f"condense_core.{name}", f"condense_core.{_RENAMED[name]}")
        name = _RENAMED[name]
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
