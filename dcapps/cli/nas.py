"""`dcapps nas init | report | rank-eval`: proxy architecture search with NNI from the shell."""
from __future__ import annotations

import argparse

from .common import add_data_arguments, add_run_arguments, add_setting_flags, at_least, emit_json

HELP = {"nas": "proxy NAS with NNI: init an nnictl experiment, report its ranking, rank-eval a proxy"}
TUNER_CHOICES = ("grid", "random", "tpe", "evolution")  # no Anneal: it breaks on numpy 2


def _add_training(p: argparse.ArgumentParser) -> None:
    """Training on the proxy: the settings of the evaluation protocol (`TrainConfig`)."""
    from condense_core import TrainConfig

    add_setting_flags(p, {"training": TrainConfig})


def _training(args: argparse.Namespace):
    from condense_core import TrainConfig

    from .common import given_settings

    return TrainConfig(**given_settings(TrainConfig, args, "training"))


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="nas_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    init = sub.add_parser("init", help="write DIR/config.yml for `nnictl create --config DIR/config.yml`")
    add_data_arguments(init)
    init.add_argument("--proxy", required=True, metavar="FILE.pt", help="the proxy SyntheticSet")
    init.add_argument("--out", required=True, metavar="DIR", help="experiment folder to write")
    init.add_argument("--space", default="small", help="full (720 ConvNets) | small (72) | FILE.json")
    init.add_argument("--tuner", default="tpe", choices=TUNER_CHOICES)
    init.add_argument("--max-trials", type=at_least(1), default=20)
    init.add_argument("--concurrency", type=at_least(1), default=1)
    _add_training(init)
    add_run_arguments(init)

    rep = sub.add_parser("report", help="rank the trials of an experiment; write ranking.csv and .png")
    rep.add_argument("--experiment", default=None, metavar="ID", help="NNI experiment id")
    rep.add_argument("--dir", default=None, help="the `nas init` folder or an experiment folder")
    rep.add_argument("--out", default=None, metavar="DIR", help="where ranking.csv/png go (default --dir)")
    rep.add_argument("--top", type=at_least(1), default=10, help="rows to print (10)")
    rep.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    ev = sub.add_parser("rank-eval", help="rank correlation of proxies against whole-data training")
    add_data_arguments(ev)
    ev.add_argument("--proxy", action="append", required=True, metavar="FILE.pt",
                    help="a proxy SyntheticSet (repeat to compare several)")
    ev.add_argument("--space", default="small", help="full | small | FILE.json")
    ev.add_argument("--archs", type=int, default=20, help="architectures sampled from the space (20)")
    ev.add_argument("--full-epochs", type=at_least(1), default=100, help="epochs on the whole data (100)")
    ev.add_argument("--baselines", default="random,herding,early",
                    help="comma list of random, herding, early (or none)")
    ev.add_argument("--out", default=None, metavar="FILE.json", help="also write the full result")
    _add_training(ev)
    add_run_arguments(ev)


def run(args: argparse.Namespace) -> int:
    return {"init": _init, "report": _report, "rank-eval": _rank_eval}[args.nas_command](args)


def _init(args) -> int:
    from nas.config import init_experiment

    res = init_experiment(args.out, args.data, args.proxy, _training(args), args.root, args.download,
                          args.space, args.tuner, args.max_trials, args.concurrency, args.seed, args.device)
    print(f"wrote {res['config']}: {res['architectures']} architectures, tuner {res['tuner']}, "
          f"{res['max_trials']} trials on a {res['proxy_images']}-image proxy\n"
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


def _rank_eval(args) -> int:
    from nas.rank_eval import check_baselines

    from .common import check_out, lock_out

    baselines = [b for b in args.baselines.split(",") if b and b != "none"]
    check_baselines(baselines)
    if args.out is None:
        return _rank_eval_run(args, baselines)
    check_out(args.out, [("--data", args.data), ("--space", args.space), *(("--proxy", p) for p in args.proxy)])
    with lock_out(args.out):
        return _rank_eval_run(args, baselines)


def _rank_eval_run(args, baselines: list[str]) -> int:
    import json
    from dataclasses import replace

    from condense_core import SyntheticSet, load_data
    from condense_core.synthetic import atomic_write_text
    from nas.rank_eval import baseline_proxies, file_proxies, format_table, rank_eval, sample_architectures
    from nas.space import load_space

    cfg = _training(args)
    archs = sample_architectures(load_space(args.space), args.archs, args.seed)
    sets = [(path, SyntheticSet.load(path)) for path in args.proxy]
    data = load_data(args.data, args.root, args.download)
    data.check_test_split()  # every architecture is tested on it
    proxies = file_proxies(sets, data, cfg)
    proxies += baseline_proxies(data, baselines, sets[0][1].ipc, cfg, args.seed, args.device)
    res = rank_eval(data, proxies, archs, replace(cfg, epochs=args.full_epochs),
                    args.seed, args.device, not args.quiet)
    res["space"] = args.space
    res["proxy_files"] = args.proxy
    print(f"{res['archs']} architectures from the {args.space} space, seed {args.seed}, {args.data}")
    print(format_table(res))
    if args.out:
        atomic_write_text(json.dumps(res, indent=2, default=str) + "\n", args.out)
        print(f"wrote {args.out}")
    if args.json:
        emit_json(res)
    return 0
