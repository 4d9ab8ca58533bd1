"""dcapps: condensed memories for continual learning (Avalanche) and proxies for NAS (NNI).

`from dcapps import DMReplay` is resolved lazily so that the CLI does not import Avalanche.
"""
__all__ = ["DMReplay", "CondensedReplayPlugin", "SyntheticBuffer"]


def __getattr__(name):
    if name in __all__:
        from . import replay

        return getattr(replay, name)
    raise AttributeError(f"module 'dcapps' has no attribute {name!r}")
