"""The `dcapps` command line: the top layer, above the core, the replay strategy, `scenarios`
and `nas`, none of which imports it.

Each command's module (`COMMANDS`, one level of dispatch) has `HELP` (command name -> one line),
`add_arguments(name, parser)` and `run(args)`; `condense` and `select` share one. Only the chosen command's module adds its
arguments, and those modules import nothing heavy at the top, so `dcapps --help` imports no
torch. Bad input (`InputError`, bad flags, settings or data too large for the machine's memory)
ends with one line on stderr and exit status 2; anything unexpected with a traceback and status 1.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "condense": "dcapps.cli.sets",
    "select": "dcapps.cli.sets",
    "evaluate": "dcapps.cli.evaluate",
    "methods": "dcapps.cli.methods",
    "cl": "dcapps.cli.cl",
    "demo": "dcapps.cli.cl",
    "nas": "dcapps.cli.nas",
    "bench": "dcapps.cli.bench",
}


class UsageError(Exception):
    """A bad command line (unknown flag, bad value): exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) and exits 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the arguments of the command named in `argv` (the others listed only)."""
    parser = Parser(prog="dcapps", description="Dataset condensation as continual-learning memories "
                                                 "and NAS proxies.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP[name], description=module.HELP[name])
        if name == chosen:
            module.add_arguments(name, p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    from condense_core.environment import CUBLAS_CONFIG
    from condense_core.errors import InputError, Interrupted, one_line

    for name, value in CUBLAS_CONFIG.items():  # before cuBLAS starts: deterministic on CUDA
        os.environ.setdefault(name, value)
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    try:
        args = build_parser(argv).parse_args(argv)
        return int(args._run(args) or 0)
    except (InputError, UsageError) as e:
        print(f"dcapps: error: {one_line(str(e)) or type(e).__name__}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"dcapps: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("dcapps: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:  # settings or data too large for this machine: bad input
        if not out_of_memory(e):
            raise
        reason = one_line(str(e)) or type(e).__name__
        reason = reason.split("] err == 0. ")[-1]  # PyTorch's allocator prefixes its source position
        print(f"dcapps: error: not enough memory for this run ({reason}); smaller settings or data need less",
              file=sys.stderr)
        return 2


def out_of_memory(e: BaseException) -> bool:
    """True for an allocation that failed (host or GPU memory), not for other runtime errors."""
    text = str(e).lower()
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text or "out of memory" in text)


if __name__ == "__main__":
    sys.exit(main())
