"""`dcapps nas init | report | rank-eval`: proxy architecture search with NNI from the shell."""
from __future__ import annotations

import argparse
import os

from .common import (add_data_arguments, add_layout_flags, add_output_arguments, add_run_arguments, add_setting_flags,
                     at_least, emit_json, json_mapping)

HELP = {"nas": "proxy NAS with NNI: init an nnictl experiment, report its ranking, rank-eval a proxy"}
TUNER_CHOICES = ("grid", "random", "tpe", "evolution")  # no Anneal: it breaks on numpy 2


def _add_training(p: argparse.ArgumentParser) -> None:
    """Training on the proxy: the settings of the evaluation protocol (`TrainSettings`)."""
    from condense_core import TrainSettings

    add_setting_flags(p, {"training": TrainSettings})


def _training(args: argparse.Namespace):
    from condense_core import TrainSettings

    from .common import given_settings

    return TrainSettings(**given_settings(TrainSettings, args, "training"))


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="nas_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    init = sub.add_parser("init", help="write DIR/config.yml for `nnictl create --config DIR/config.yml`")
    add_data_arguments(init)
    init.add_argument("--proxy", required=True, metavar="FILE.pt", help="the proxy ReducedSet")
    init.add_argument("--out", required=True, metavar="DIR", help="experiment folder to write")
    init.add_argument("--space", default="small", help="full (720 ConvNets) | small (72) | FILE.json")
    init.add_argument("--tuner", default="tpe", choices=TUNER_CHOICES, help="NNI's tuner (default tpe)")
    init.add_argument("--max-trials", type=at_least(1), default=20, help="trials NNI runs in all (default 20)")
    init.add_argument("--concurrency", type=at_least(1), default=1, help="trials run at once (default 1)")
    init.add_argument("--training-service", default="local", choices=("local", "remote"),
                      help="where trials run: this machine, or --machine hosts over SSH (local)")
    init.add_argument("--machine", action="append", default=[], metavar="USER@HOST[:PORT]",
                      help="a remote machine (repeat for several; port 22 unless given)")
    init.add_argument("--ssh-key", default=None, metavar="PATH",
                      help="private key NNI logs in to the machines with (~/.ssh/id_rsa)")
    init.add_argument("--python", default=None, metavar="PATH",
                      help="the Python that runs trials, with dcapps and NNI installed, at this path on "
                           "every machine (default: this one)")
    init.add_argument("--manager-ip", default=None, metavar="ADDRESS",
                      help="address the machines reach this one at (default: NNI's guess)")
    _add_training(init)
    add_run_arguments(init)

    rep = sub.add_parser("report", help="rank the trials of an experiment; write ranking.csv and .png")
    rep.add_argument("--experiment", default=None, metavar="ID", help="NNI experiment id")
    rep.add_argument("--dir", default=None, help="the `nas init` folder or an experiment folder")
    rep.add_argument("--out", default=None, metavar="DIR", help="where ranking.csv/png go (default --dir)")
    rep.add_argument("--top", type=at_least(1), default=10, help="rows to print (10)")
    add_output_arguments(rep)

    ev = sub.add_parser("rank-eval", help="rank correlation of proxies against whole-data training")
    add_data_arguments(ev)
    ev.add_argument("--proxy", action="append", default=[], metavar="FILE.pt",
                    help="a proxy ReducedSet (repeat to compare several)")
    ev.add_argument("--condense", default="", metavar="NAMES",
                    help="comma list of condensers (dm, idm, m3d, ...) whose proxies rank-eval builds "
                         "itself, with --ipc and the seed; their build time counts in their cost")
    ev.add_argument("--ipc", type=at_least(1), default=None,
                    help="images per class of the built proxies and subsets (default: the first --proxy's)")
    ev.add_argument("--method-settings", type=json_mapping, default={}, metavar="JSON",
                    help="settings for the built proxies' methods, each to those that have it; one that "
                         "none of them has is refused (e.g. '{\"iterations\": 300}')")
    ev.add_argument("--space", default="small", help="full | small | FILE.json")
    ev.add_argument("--archs", type=int, default=20, help="architectures sampled from the space (20)")
    ev.add_argument("--full-epochs", type=at_least(1), default=100, help="epochs on the whole data (100)")
    ev.add_argument("--baselines", default="random,herding,early",
                    help="comma list of random, herding, early (or none)")
    ev.add_argument("--zero-cost", default="naswot,synflow,grad_norm,snip",
                    help="comma list of zero-cost proxies: naswot, synflow, grad_norm, snip (or none)")
    ev.add_argument("--out", default=None, metavar="DIR",
                    help="folder of the run: its finished architectures are kept, result.json written "
                         "(needed with --workers and --shard)")
    add_layout_flags(ev)
    _add_training(ev)
    add_run_arguments(ev)


def run(args: argparse.Namespace) -> int:
    return {"init": _init, "report": _report, "rank-eval": _rank_eval}[args.nas_command](args)


def _init(args) -> int:
    from condense_core.extras import require
    from nas.config import init_experiment

    require("nas", "dcapps nas init")

    res = init_experiment(args.out, args.data, args.proxy, _training(args), args.root, args.download,
                          args.space, args.tuner, args.max_trials, args.concurrency, args.seed, args.device,
                          args.training_service, args.machine, args.ssh_key, args.python, args.manager_ip)
    where = f" on {', '.join(res['machines'])}" if res["machines"] else ""
    print(f"wrote {res['config']}: {res['architectures']} architectures, tuner {res['tuner']}, "
          f"{res['max_trials']} trials on a {res['proxy_images']}-image proxy{where}\n"
          f"run it with: nnictl create --config {res['config']} --port 8080")
    if args.json:
        emit_json(res)
    return 0


def _report(args) -> int:
    from condense_core import InputError
    from nas.report import report

    if args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    res = report(args.experiment, args.dir, args.out)
    print(f"experiment {res['experiment']}: {res['trials']} trials {res['statuses']}")
    print(f"{'rank':>4}  {'accuracy':>8}  {'params':>8}  {'train s':>7}  architecture")
    for r in res["ranking"][:args.top]:
        print(f"{r['rank']:>4}  {100 * r['accuracy']:>7.2f}%  {r['params'] or 0:>8}  {r['train_time_s'] or 0:>7.1f}  {r['arch']}")
    print(f"wrote {res['csv']} and {res['png']}")
    if args.json:
        emit_json({**res, "ranking": res["ranking"][:args.top]})
    return 0


def _names(text: str) -> list[str]:
    return [b for b in text.split(",") if b and b != "none"]


def _rank_eval(args) -> int:
    import sys

    from nas.rank_eval import format_table
    from nas.rank_eval_run import run_rank_eval

    from .common import layout_of

    outcome = run_rank_eval(args.data, args.proxy, root=args.root, download=args.download,
                            condense=_names(args.condense), ipc=args.ipc, method_settings=args.method_settings,
                            space=args.space, archs=args.archs, full_epochs=args.full_epochs,
                            baselines=_names(args.baselines), zero_cost=_names(args.zero_cost),
                            training=_training(args), seed=args.seed, device=args.device, out=args.out,
                            layout=layout_of(args), announce=None if args.quiet else announce_arch)
    res = outcome.result
    if res is None:
        print("no architecture is finished yet")
    else:
        print(f"{res['archs']} architectures from the {args.space} space, seed {args.seed}, {args.data}")
        print(format_table(res))
        if outcome.missing:
            print(f"not finished yet ({len(outcome.missing)}): {', '.join(outcome.missing)}")
        if args.out is not None:
            print(f"wrote {os.path.join(args.out, 'result.json')}")
    for line in outcome.problems:
        print(f"dcapps: {line}: run the same command again to finish it", file=sys.stderr)
    if args.json and res is not None:
        emit_json(res)
    return 1 if outcome.problems else 0


def announce_arch(key: str, row: dict) -> None:
    """A line per finished architecture, printed by the process that ran it."""
    print(f"{key} {row['arch']}: whole data {100 * row['full']:.2f}% ({row['full_s']:.1f} s)", flush=True)
