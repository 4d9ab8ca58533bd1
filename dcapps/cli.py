"""The `dcapps` command line.

Each subcommand lives in a small module with `HELP`, `add_arguments(parser)` and `run(args)`;
those modules import nothing heavy at the top, so `dcapps --help` is instant and only the chosen
subcommand pays for torch, Avalanche or NNI. Bad input (`InputError`, bad flags) ends with one
line on stderr and exit status 2; anything unexpected with a traceback and status 1.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

COMMANDS = {
    "condense": "dcapps.commands",
    "select": "dcapps.commands",
    "evaluate": "dcapps.commands",
    "cl": "scenarios.command",
    "demo": "scenarios.command",
    "nas": "nas.command",
    "bench": "dcapps.bench",
}


class UsageError(Exception):
    """A bad command line (unknown flag, bad value): exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage dump) and exits 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dcapps", description="Dataset condensation as continual-learning memories "
                                                 "and NAS proxies.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, module in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.HELP[name], description=mod.HELP[name])
        mod.add_arguments(name, p)
        p.set_defaults(_module=module)
    return parser


def emit_json(obj) -> None:
    """Print one JSON object as the last line of stdout (`--json`)."""
    print(json.dumps(obj, default=str), flush=True)


def main(argv=None) -> int:
    from condense_core.checkpoint import Interrupted
    from condense_core.errors import InputError
    from condense_core.runtime import CUBLAS_CONFIG

    for name, value in CUBLAS_CONFIG.items():  # before cuBLAS starts: deterministic on CUDA
        os.environ.setdefault(name, value)

    try:
        args = build_parser().parse_args(argv)
        return int(importlib.import_module(args._module).run(args) or 0)
    except (InputError, UsageError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"dcapps: error: {msg}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"dcapps: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("dcapps: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
