"""dcapps: condensed memories for continual learning (Avalanche) and proxies for NAS (NNI).

`from dcapps import DMReplay` is resolved lazily so that the CLI does not import Avalanche; without
Avalanche it says in one line to `pip install 'dcapps[cl]'`.
"""
__all__ = ["DMReplay", "ReducedSetReplayPlugin", "ReducedSetBuffer"]
_RENAMED = ("SyntheticBuffer", "CondensedReplayPlugin")  # old names: they warn (dcapps.replay)


def __getattr__(name):
    if name in __all__ or name in _RENAMED:
        from condense_core.extras import require

        require("cl", f"dcapps.{name}")
        from . import replay

        return getattr(replay, name)
    raise AttributeError(f"module 'dcapps' has no attribute {name!r}")
