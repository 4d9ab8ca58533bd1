"""What the commands share: the data and output arguments, flags derived from declared settings,
and the one JSON line of `--json`. Imports nothing heavy at the top."""
from __future__ import annotations

import argparse
import json
import os
from contextlib import contextmanager
from typing import Iterator

# The most local workers of one command: one per core or GPU, and more than the cores of any one
# machine (two 192-core CPUs); a larger number is a typing mistake that would start that many
# processes, each holding the data and a copy of PyTorch.
WORKERS_MAX = 512


def emit_json(obj) -> None:
    """Print one JSON object as the last line of stdout (`--json`)."""
    print(json.dumps(obj, default=str), flush=True)


def add_data_arguments(p: argparse.ArgumentParser, default: str = "") -> None:
    """--data SPEC, --root DIR, --download: shared by every command that reads real data (--data
    is required unless `default` says where else it comes from)."""
    p.add_argument("--data", required=not default, metavar="SPEC",
                   help="digits | mnist | fashionmnist | cifar10 | cifar100 | svhn | PATH.npz | DIR/"
                        + (f" (default: {default})" if default else ""))
    p.add_argument("--root", default=None, help="folder of torchvision data sets (default ./data)")
    p.add_argument("--download", action="store_true", help="allow downloading a torchvision set")


def add_stream_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", action="store_true",
                   help="read an ImageFolder from disk per batch instead of loading it (automatic when "
                        "it would not fit in half the available memory)")


JSON_HELP = "print one JSON object as the last line of stdout (accuracies as fractions in [0, 1]; the text shows %%)"


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """--json (every command also gets -v, -q and --progress: `add_log_arguments`)."""
    p.add_argument("--json", action="store_true", help=JSON_HELP)


def add_log_arguments(p: argparse.ArgumentParser) -> None:
    """-v/--verbose, -q/--quiet and --progress, which every command takes (added by `build_parser`)."""
    from condense_core.progress import HELP, MODES

    p.add_argument("-v", "--verbose", action="store_true", help="also debug messages")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="only warnings and errors: no progress and no line per finished unit")
    p.add_argument("--progress", choices=MODES, default="auto", help=HELP + " (default auto)")


@contextmanager
def logging_shown(args: argparse.Namespace) -> Iterator[None]:
    """For the duration of a command: the `dcapps` logger's records on stderr, time-stamped
    (INFO: progress lines; -v: DEBUG too; -q: warnings only, and no progress at all); the logger
    is left as it was found afterwards (main() may run inside another program or a test)."""
    import logging
    import sys

    logger = logging.getLogger("dcapps")
    before = logger.level, logger.propagate
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    if quiet:
        args.progress = "off"
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False  # shown once, here, whatever the root logger does
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--seed, --device, --json (for commands whose seed and device are not a method's)."""
    from condense_core.settings import SEED_MAX

    p.add_argument("--seed", type=at_least(0, SEED_MAX), default=0, help="seed of every random choice (default 0)")
    p.add_argument("--device", type=device_flag, default="auto", help="auto | cpu | cuda | cuda:N")
    add_output_arguments(p)


def add_layout_flags(p: argparse.ArgumentParser) -> None:
    """--workers N, --shard I/N: how a sweep's units are shared out (`condense_core.sweep`)."""
    p.add_argument("--workers", type=at_least(1, WORKERS_MAX), default=1,
                   help="local worker processes taking units in turn (spread over the GPUs; on a CPU "
                        "each unit runs with one thread, so use one worker per core)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run shard I of N only (e.g. one job of a SLURM array); every shard writes "
                        "into the same --out")


def layout_of(args: argparse.Namespace):
    """The `condense_core.sweep.Layout` of --workers and --shard."""
    from condense_core.settings import flag_name
    from condense_core.sweep import Layout, parse_shard

    shard, shards = parse_shard(args.shard, flag_name) if args.shard is not None else (0, 1)
    return Layout(workers=args.workers, shard=shard, shards=shards)


def add_setting_flags(p: argparse.ArgumentParser, classes: dict[str, type], skip: tuple = (),
                      required: tuple = ()) -> None:
    """One flag per declared setting of the classes (`lr_img` -> `--lr-img`; a bool gets
    `--x/--no-x`; a mapping is given as JSON), which are alternatives (e.g. the methods of a
    kind: the one chosen refuses the flags of the others); the classes of another call apply
    together with them. A setting that not every class has is marked with the names of those
    that do. Flags default to None: the class's own default applies."""
    from condense_core.settings import flag_name, settings_of

    owners: dict[str, list] = {}
    for cls_name, cls in classes.items():
        for s in settings_of(cls).values():
            if s.name not in skip and not s.rule.display_only:  # --progress: add_log_arguments
                owners.setdefault(s.name, []).append((cls_name, s))
    for name, found in owners.items():
        s = found[0][1]
        defaults = {str(t.default) for _, t in found}
        text = s.rule.help
        if len(found) < len(classes):
            text = f"{', '.join(n for n, _ in found)}: {text}"
        if name not in required:
            text += (f" (default {defaults.pop()})" if len(defaults) == 1 else
                     " (default " + ", ".join(f"{n} {t.default}" for n, t in found) + ")")
        kwargs: dict = {"dest": name, "default": None, "help": text.replace("%", "%%")}
        if s.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif s.rule.choices:
            kwargs["choices"] = s.rule.choices
        elif s.type is dict:
            kwargs.update(type=json_mapping, metavar="JSON")
        else:
            kwargs.update(type=s.type, metavar="N" if s.type is int else "X" if s.type is float else None)
        p.add_argument(flag_name(name), required=name in required, **kwargs)
    p.set_defaults(_setting_groups=(*(p.get_default("_setting_groups") or ()), tuple(owners)))


def json_mapping(text: str) -> dict:
    """An argparse type: a JSON mapping (a flag such as --model-options)."""
    from condense_core.errors import shown

    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"not JSON: {shown(text)}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON mapping: {shown(text)}")
    return value


def given_settings(cls: type, args: argparse.Namespace, what: str) -> dict:
    """The settings of `cls` given as flags, checked and named as flags; a flag of an
    alternative class's setting is refused (`--rho does not apply to method 'dm'`)."""
    from condense_core.errors import InputError
    from condense_core.settings import check, flag_name, settings_of

    own = settings_of(cls)
    given = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    alternatives = {k for group in getattr(args, "_setting_groups", ()) if set(own) & set(group) for k in group}
    for key, value in given.items():
        if value is not None and key in alternatives and key not in own:
            raise InputError(f"{flag_name(key)} does not apply to {what}")
    return check(cls, {k: given[k] for k in own if given.get(k) is not None}, flag_name)


def check_out(path: str, inputs: list[tuple[str, str]] = (), flag: str = "--out") -> None:
    """--out can be written as a file at the end of the run and is none of the run's `inputs`
    ((flag, path) pairs): checked before any work (`condense_core.outputs`)."""
    from condense_core.outputs import check_output_file

    check_output_file(path, flag, inputs)


def check_out_folder(path: str, inputs: list[tuple[str, str]] = (), flag: str = "--out") -> None:
    """--out can be made (or is) a folder the run can write in, and is none of its `inputs`."""
    from condense_core.outputs import check_output_folder

    check_output_folder(path, flag, inputs)


def lock_out(path: str, flag: str = "--out"):
    """The exclusive lock of a run writing `path` (`condense_core.outputs.OutputLock`; under
    torchrun only rank 0, the rank that writes, takes it)."""
    from condense_core.outputs import OutputLock

    return OutputLock(path, flag, enabled=os.environ.get("RANK", "0") == "0")


def device_flag(text: str) -> str:
    """An argparse type: a device name of the form `settings.DEVICE` (auto, cpu, cuda, cuda:N)."""
    from condense_core.errors import InputError
    from condense_core.settings import DEVICE, check_form

    try:
        return check_form(text, DEVICE, "it")
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("it ")) from None


def at_least(low: int, high: int | None = None):
    """An argparse type: an integer >= `low` (and <= `high`): a count or a seed, refused as one
    line otherwise."""
    from condense_core.errors import shown

    want = f"an integer >= {low}" + (f", at most {high}" if high is not None else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {shown(text)}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {want}, got {value}")
        return value
    parse.__name__ = want
    return parse
