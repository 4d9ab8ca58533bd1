"""Deprecated: this module is now `condense_core.reduced` (`SyntheticSet` is `ReducedSet`)."""
from .deprecation import renamed

renamed("condense_core.synthetic", "condense_core.reduced")

from .reduced import *  # noqa: E402,F401,F403
from .reduced import ReducedSet as SyntheticSet  # noqa: E402,F401
