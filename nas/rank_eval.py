"""`dcapps nas rank-eval`: does a proxy rank architectures the way the whole data does?

On a seeded random sample of architectures, each is trained on every proxy and on the whole
training set (same initial weights, same protocol), and scored by the zero-cost proxies
(`nas.zero_cost`) at the same initial weights on one seeded real batch. For each proxy we report
the Spearman and Kendall rank correlations with whole-data accuracy (over all architectures and
over the top 10 by whole-data accuracy), the whole-data accuracy of the architecture the proxy
would pick, and its cost against whole-data training. Proxies compared in one run: the given
files (DM, LCMat, ...), a random and a herding subset of the same size, the whole data trained
for few epochs ("early stopping", the same number of training images seen as one proxy run),
and the four zero-cost scores.

An architecture is a unit of a `condense_core.sweep` folder: units can run in several processes
or shards, and the result is made from the finished units. The subsets are built once per
folder (`DIR/proxies/`) and read like the given files; `nas.rank_eval_run` runs it all.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, replace

import torch

from condense_core import InputError, ReducedSet, TrainSettings, load_data
from condense_core.data import ImageData
from condense_core.reduced import SoftTargets
from condense_core.runtime import make_generator

from .space import architectures, arch_name
from .trial import initial_network, train_candidate
from .zero_cost import PROXIES as ZERO_COST, score_all

BASELINES = ("random", "herding", "early")
TOP = 10
ZERO_COST_BATCH = 64  # real images the zero-cost proxies score an architecture on (the papers use 64-128)


@dataclass
class Proxy:
    """A training set standing in for the whole data: images, labels (and soft targets where the
    set has them), epochs to train for."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    cfg: TrainSettings
    make_s: float = 0.0  # seconds it took to build the proxy (condensation or selection)
    targets: SoftTargets | None = None


def sample_architectures(space: dict[str, list], n: int, seed: int) -> list[dict]:
    """`n` distinct architectures of `space`, drawn from `seed`."""
    pool = architectures(space)
    if not 1 <= n <= len(pool):
        raise InputError(f"--archs must be between 1 and {len(pool)} (the size of the space), got {n}")
    order = torch.randperm(len(pool), generator=make_generator(seed, "cpu", "rank-eval"))
    return [pool[i] for i in order[:n].tolist()]


def file_proxies(sets: list[tuple[str, str, ReducedSet]], data: ImageData, cfg: TrainSettings) -> list[Proxy]:
    """Proxies from (name, path, ReducedSet): named `method ipcN` (`, soft labels` where the set
    has soft targets, which its candidates are trained on) unless named (plus the file name on a
    clash); the time that built each set comes from its metadata."""
    out: list[Proxy] = []
    for name, path, reduced in sets:
        x, y = reduced.for_data(data)
        soft = ", soft labels" if reduced.targets is not None else ""
        name = name or f"{reduced.meta.get('method', 'proxy')} ipc{reduced.ipc}{soft}"
        if any(p.name == name for p in out):
            name += f" ({os.path.basename(path)})"
        out.append(Proxy(name, x, y, cfg, float(reduced.meta.get("wall_time_s") or 0.0), reduced.targets))
    return out


def check_baselines(baselines: list[str]) -> None:
    """Refuse names that are not baselines (before any data is loaded)."""
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise InputError(f"--baselines: unknown {', '.join(unknown)} (choose from {', '.join(BASELINES)} or none)")


def check_zero_cost(names: list[str]) -> None:
    unknown = sorted(set(names) - set(ZERO_COST))
    if unknown:
        raise InputError(f"--zero-cost: unknown {', '.join(unknown)} (choose from {', '.join(ZERO_COST)} or none)")


def early_stopping(data: ImageData, ipc: int, cfg: TrainSettings) -> Proxy:
    """The whole data trained for as many images seen as `cfg.epochs` over an `ipc` subset."""
    n_proxy = ipc * len(data.present_labels())
    epochs = max(1, round(cfg.epochs * n_proxy / len(data.y_train)))
    return Proxy(f"whole data, {epochs} ep", data.x_train, data.y_train, replace(cfg, epochs=epochs))


def file_digest(path: str) -> str:
    """What identifies a proxy file in a folder's settings: its contents' SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ArchUnit:
    """One architecture, run where it is sent (picklable; data and proxies loaded once per
    process): whole-data training, training on every proxy, the zero-cost scores."""

    def __init__(self, data: tuple, files: list[tuple[str, str]], early: bool, ipc: int, cfg: TrainSettings,
                 full_cfg: TrainSettings, seed: int, zero_cost: list[str]):
        self.data, self.files, self.early, self.ipc = data, files, early, ipc
        self.cfg, self.full_cfg, self.seed, self.zero_cost = cfg, full_cfg, seed, zero_cost
        self._loaded = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loaded": None}

    def proxies(self) -> tuple[ImageData, list[Proxy]]:
        if self._loaded is None:
            data = load_data(*self.data)
            proxies = file_proxies([(n, p, ReducedSet.load(p)) for n, p in self.files], data, self.cfg)
            if self.early:
                proxies.append(early_stopping(data, self.ipc, self.cfg))
            self._loaded = data, proxies
        return self._loaded

    def __call__(self, unit: dict, device: str) -> dict:
        data, proxies = self.proxies()
        arch = unit["arch"]
        full = train_candidate(arch, data.x_train, data.y_train, data, self.full_cfg, self.seed, device)
        row = {"arch": arch_name(arch), "params": full["params"], "full": full["accuracy"],
               "full_s": full["train_time_s"], "proxies": {}}
        for p in proxies:
            r = train_candidate(arch, p.x, p.y, data, p.cfg, self.seed, device, targets=p.targets)
            row["proxies"][p.name] = {"accuracy": r["accuracy"], "seconds": r["train_time_s"]}
        if self.zero_cost:
            net, _ = initial_network(arch, data, self.seed, device)
            x, y = zero_cost_batch(data, self.seed)
            scores = score_all(net, x.to(next(net.parameters()).device), y.to(next(net.parameters()).device),
                               self.zero_cost)
            row["zero_cost"] = {n: {"score": s.score, "seconds": round(s.seconds, 4)} for n, s in scores.items()}
        return row


def zero_cost_batch(data: ImageData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The real batch every architecture's zero-cost scores are computed on: `ZERO_COST_BATCH`
    training images drawn from `seed`."""
    g = make_generator(seed, "cpu", "zero-cost")
    pick = torch.randperm(len(data.y_train), generator=g)[:ZERO_COST_BATCH]
    return data.x_train[pick], data.y_train[pick]


def correlations(proxy_acc: list[float], full_acc: list[float], top: int = TOP) -> dict:
    """Spearman and Kendall correlations, over all architectures and over the `top` best by
    whole-data accuracy (None where undefined, e.g. constant accuracies)."""
    from scipy.stats import kendalltau, spearmanr

    def clean(v):
        return None if v is None or math.isnan(v) else round(float(v), 4)

    best = sorted(range(len(full_acc)), key=lambda i: -full_acc[i])[:top]
    sub_p, sub_f = [proxy_acc[i] for i in best], [full_acc[i] for i in best]
    out = {}
    for suffix, (p, f) in (("", (proxy_acc, full_acc)), (f"_top{top}", (sub_p, sub_f))):
        enough = len(p) >= 3
        out["spearman" + suffix] = clean(spearmanr(p, f).statistic) if enough else None
        out["kendall" + suffix] = clean(kendalltau(p, f).statistic) if enough else None
    return out


def rank_eval(rows: list[dict], proxies: list[Proxy], full_cfg: TrainSettings, seed: int, data: ImageData,
              zero_cost: list[str]) -> dict:
    """Compare the rankings of the finished architectures' `rows` (in sample order)."""
    full_acc = [r["full"] for r in rows]
    full_s = sum(r["full_s"] for r in rows)
    best = max(range(len(rows)), key=lambda i: full_acc[i])
    summary = []

    def row_of(name, values, seconds, images, epochs, make_s):
        pick = max(range(len(rows)), key=lambda i: values[i])
        return {"proxy": name, "images": images, "epochs": epochs, **correlations(values, full_acc),
                "picked": rows[pick]["arch"], "picked_full_accuracy": full_acc[pick],
                "train_s": round(seconds, 2), "make_s": round(make_s, 2),
                "speedup_train": _ratio(full_s, seconds), "speedup": _ratio(full_s, seconds + make_s)}

    for p in proxies:
        acc = [r["proxies"][p.name]["accuracy"] for r in rows]
        summary.append({**row_of(p.name, acc, sum(r["proxies"][p.name]["seconds"] for r in rows), len(p.y),
                                 p.cfg.epochs, p.make_s), "mean_proxy_accuracy": sum(acc) / len(acc)})
    for name in zero_cost:
        scores = [r["zero_cost"][name]["score"] for r in rows]
        summary.append({**row_of(name, scores, sum(r["zero_cost"][name]["seconds"] for r in rows),
                                 ZERO_COST_BATCH, 0, 0.0), "zero_cost": True})
    return {"archs": len(rows), "seed": seed, "data": data.spec, "full_train": asdict(full_cfg),
            "full_images": len(data.y_train),
            "proxy_train": {p.name: asdict(p.cfg) for p in proxies},
            "best": rows[best]["arch"], "best_full_accuracy": full_acc[best], "full_s": round(full_s, 2),
            "summary": summary, "per_arch": rows}


def join_results(results: list[dict]) -> dict:
    """One comparison from rank-eval results of the same data, seed, architectures and whole-data
    training, each with other proxies: how proxies are added to a finished comparison without
    changing its folder. The whole data is trained again in each run, deterministically, so their
    whole-data accuracies must be identical (otherwise the runs are not comparable: InputError).
    Trained proxies come first, in the order of the runs, then the zero-cost scores; the whole-data
    time is the first run's."""
    first = results[0]
    same = ("data", "seed", "full_train", "full_images")
    for other in results[1:]:
        differ = [k for k in same if other[k] != first[k]]
        if [r["arch"] for r in other["per_arch"]] != [r["arch"] for r in first["per_arch"]]:
            differ.append("architectures")
        elif [r["full"] for r in other["per_arch"]] != [r["full"] for r in first["per_arch"]]:
            differ.append("whole-data accuracies")
        if differ:
            raise InputError(f"rank-eval results to join differ in {', '.join(differ)}")
    summary = [s for r in results for s in r["summary"] if not s.get("zero_cost")]
    summary += [s for r in results for s in r["summary"] if s.get("zero_cost")]
    names = [s["proxy"] for s in summary]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise InputError(f"rank-eval results to join both have {', '.join(clash)}")
    per_arch = []
    for rows in zip(*(r["per_arch"] for r in results)):  # one architecture's rows, one per run
        per_arch.append({**rows[0], "proxies": {k: v for r in rows for k, v in r["proxies"].items()},
                         "zero_cost": {k: v for r in rows for k, v in r.get("zero_cost", {}).items()}})
    return {**first, "summary": summary, "per_arch": per_arch,
            "proxy_train": {k: v for r in results for k, v in r["proxy_train"].items()}}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b > 0 else None


def format_table(result: dict) -> str:
    """The summary as a Markdown table (what docs/nas.md shows)."""
    top = f"top{TOP}"
    lines = [f"| proxy | images | epochs | Spearman | Kendall | Spearman {top} | Kendall {top} | "
             f"picked arch: whole-data acc. | train s | make s | speed-up train (+make) |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]

    def f(v):
        return "n/a" if v is None else f"{v:.2f}"

    for s in result["summary"]:
        lines.append(f"| {s['proxy']} | {s['images']} | {s['epochs']} | {f(s['spearman'])} | {f(s['kendall'])} | "
                     f"{f(s['spearman_' + top])} | {f(s['kendall_' + top])} | "
                     f"{s['picked']}: {100 * s['picked_full_accuracy']:.1f}% | {s['train_s']:.0f} | "
                     f"{s['make_s']:.0f} | {f(s['speedup_train'])}x ({f(s['speedup'])}x) |")
    lines.append(f"| whole data (reference) | {result['full_images']} | {result['full_train']['epochs']} | "
                 f"1 | 1 | 1 | 1 | "
                 f"{result['best']}: {100 * result['best_full_accuracy']:.1f}% | {result['full_s']:.0f} | 0 | 1x |")
    return "\n".join(lines)
