"""`dcapps nas rank-eval`: does a proxy rank architectures the way the whole data does?

On a seeded random sample of architectures, each is trained on every proxy and on the whole
training set (same initial weights, same protocol). For each proxy we report the Spearman and
Kendall rank correlations with whole-data accuracy (over all architectures and over the top 10
by whole-data accuracy), the whole-data accuracy of the architecture the proxy would pick, and
the training time against whole-data training. Proxies compared in one run: the given files
(DM, LCMat, ...), a random and a herding subset of the same size, and the whole data trained for
few epochs ("early stopping", the same number of training images seen as one proxy run).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace

import torch

from condense_core import InputError, SyntheticSet, TrainConfig, make_method
from condense_core.data import ImageData
from condense_core.runtime import make_generator, progress

from .space import architectures, arch_name
from .trial import train_candidate

BASELINES = ("random", "herding", "early")
TOP = 10


@dataclass
class Proxy:
    """A training set standing in for the whole data: images, labels, epochs to train for."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    cfg: TrainConfig
    make_s: float = 0.0  # seconds it took to build the proxy (condensation or selection)


def sample_architectures(space: dict[str, list], n: int, seed: int) -> list[dict]:
    """`n` distinct architectures of `space`, drawn from `seed`."""
    pool = architectures(space)
    if not 1 <= n <= len(pool):
        raise InputError(f"--archs must be between 1 and {len(pool)} (the size of the space), got {n}")
    order = torch.randperm(len(pool), generator=make_generator(seed, "cpu", "rank-eval"))
    return [pool[i] for i in order[:n].tolist()]


def file_proxies(sets: list[tuple[str, SyntheticSet]], data: ImageData, cfg: TrainConfig) -> list[Proxy]:
    """Proxies from (path, SyntheticSet) pairs, named `method ipcN` (plus the file name on a clash);
    the time that built each set comes from its metadata."""
    out: list[Proxy] = []
    for path, syn in sets:
        x, y = syn.for_data(data)
        name = f"{syn.meta.get('method', 'proxy')} ipc{syn.ipc}"
        if any(p.name == name for p in out):
            name += f" ({os.path.basename(path)})"
        out.append(Proxy(name, x, y, cfg, float(syn.meta.get("wall_time_s") or 0.0)))
    return out


def check_baselines(baselines: list[str]) -> None:
    """Refuse names that are not baselines (before any data is loaded)."""
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise InputError(f"--baselines: unknown {', '.join(unknown)} (choose from {', '.join(BASELINES)} or none)")


def baseline_proxies(data: ImageData, baselines: list[str], ipc: int, cfg: TrainConfig, seed: int,
                     device: str = "auto") -> list[Proxy]:
    """Random and herding subsets with `ipc` images per class, and early stopping on the whole
    data with as many training images seen as `cfg.epochs` over the subset."""
    check_baselines(baselines)
    out = []
    for name in ("random", "herding"):
        if name in baselines:
            syn = make_method("select", name, ipc=ipc, seed=seed, device=device).condense(data)
            out.append(Proxy(f"{name} subset ipc{ipc}", syn.images, syn.labels, cfg, syn.meta["wall_time_s"]))
    if "early" in baselines:
        n_proxy = ipc * len(data.present_labels())
        epochs = max(1, round(cfg.epochs * n_proxy / len(data.y_train)))
        out.append(Proxy(f"whole data, {epochs} ep", data.x_train, data.y_train, replace(cfg, epochs=epochs)))
    return out


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


def rank_eval(data: ImageData, proxies: list[Proxy], archs: list[dict], full_cfg: TrainConfig,
              seed: int = 0, device: str = "auto", show_progress: bool = False) -> dict:
    """Train every architecture on every proxy and on the whole data; compare the rankings."""
    if not proxies:
        raise InputError("nothing to compare: give --proxy files or baselines")
    rows = []
    for arch in progress(archs, desc="architectures", enabled=show_progress):
        full = train_candidate(arch, data.x_train, data.y_train, data, full_cfg, seed, device)
        row = {"arch": arch_name(arch), "params": full["params"], "full": full["accuracy"],
               "full_s": full["train_time_s"]}
        for p in proxies:
            r = train_candidate(arch, p.x, p.y, data, p.cfg, seed, device)
            row[p.name], row[p.name + " s"] = r["accuracy"], r["train_time_s"]
        rows.append(row)
    full_acc = [r["full"] for r in rows]
    full_s = sum(r["full_s"] for r in rows)
    best = max(range(len(rows)), key=lambda i: full_acc[i])
    summary = []
    for p in proxies:
        acc = [r[p.name] for r in rows]
        pick = max(range(len(rows)), key=lambda i: acc[i])
        seconds = sum(r[p.name + " s"] for r in rows)
        summary.append({"proxy": p.name, "images": len(p.y), "epochs": p.cfg.epochs,
                        **correlations(acc, full_acc), "mean_proxy_accuracy": sum(acc) / len(acc),
                        "picked": rows[pick]["arch"], "picked_full_accuracy": full_acc[pick],
                        "train_s": round(seconds, 2), "make_s": round(p.make_s, 2),
                        "speedup_train": _ratio(full_s, seconds), "speedup": _ratio(full_s, seconds + p.make_s)})
    return {"archs": len(rows), "seed": seed, "data": data.spec, "full_train": asdict(full_cfg),
            "full_images": len(data.y_train),
            "proxy_train": {p.name: asdict(p.cfg) for p in proxies},
            "best": rows[best]["arch"], "best_full_accuracy": full_acc[best], "full_s": round(full_s, 2),
            "summary": summary, "per_arch": rows}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b > 0 else None


def format_table(result: dict) -> str:
    """The summary as a Markdown table (what the README shows)."""
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
