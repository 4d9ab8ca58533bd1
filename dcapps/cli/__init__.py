"""The `dcapps` command line: the top layer, above the core, the replay strategy, `scenarios`
and `nas`, none of which imports it.

Each command's module (`COMMANDS`, one level of dispatch) has `HELP` (command name -> one line),
`add_arguments(name, parser)` and `run(args)`; `condense` and `select` share one. Only the chosen command's module adds its
arguments, and those modules import nothing heavy at the top, so `dcapps --help` imports no
torch. Every command also takes `-v`/`-q` and `--progress` (`common.add_log_arguments`): the
command line configures the `dcapps` logger the library reports through. Flags are never
abbreviated (`--iteration` is not `--iterations`), and a misspelt one gets a "did you mean".
Bad input (`InputError`, bad flags, settings or data too large for the machine's memory)
ends with one line on stderr and exit status 2; anything unexpected with a traceback and status 1.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from condense_core.extras import installed_version

from .common import add_log_arguments, logging_shown
from .renamed import renamed_flag

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
    """argparse that reports errors as one line (no usage dump, the command named once: `dcapps:
    error: condense: ...`), never takes an abbreviation of a flag, and suggests the flag meant."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if message.startswith("unrecognized arguments: "):
            message += suggestion(message.split(": ", 1)[1].split(), flags_of(self))
        command = self.prog.removeprefix("dcapps").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    """Every long flag of `parser` and of the sub-commands below it (those whose arguments were added)."""
    found = []
    for action in parser._actions:
        found += [f for f in action.option_strings if f.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += flags_of(sub)
    return found


def suggestion(words: list[str], flags: list[str]) -> str:
    """`; did you mean --iterations?` for the first unknown flag close to a known one (else '')."""
    for word in words:
        close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.75) if word.startswith("--") else []
        if close:
            return f" (did you mean {close[0]}?)"
    return ""


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the arguments of the command named in `argv` (the others listed only)."""
    parser = Parser(prog="dcapps", description="Dataset condensation as continual-learning memories "
                                                 "and NAS proxies.")
    parser.add_argument("--version", action="version", version=f"dcapps {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP[name], description=module.HELP[name])
        if name == chosen:
            module.add_arguments(name, p)
            for leaf in leaves(p):
                add_log_arguments(leaf)
            p.set_defaults(_run=module.run)
    return parser


def leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that take a command's flags: `parser` itself, or its sub-commands' (cl run, ...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [leaf for s in subs for p in s.choices.values() for leaf in leaves(p)] if subs else [parser]


def main(argv=None) -> int:
    from condense_core.environment import CUBLAS_CONFIG
    from condense_core.errors import InputError, Interrupted, one_line

    for name, value in CUBLAS_CONFIG.items():  # before cuBLAS starts: deterministic on CUDA
        os.environ.setdefault(name, value)
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    try:
        if renamed_flag(argv):
            raise UsageError(renamed_flag(argv))
        args = build_parser(argv).parse_args(argv)
        with logging_shown(args):
            return int(args._run(args) or 0)
    except (InputError, UsageError) as e:
        print(f"dcapps: error: {one_line(str(e)) or type(e).__name__}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"dcapps: {e}" + (" (continue with --resume)" if e.path else ""), file=sys.stderr)
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
