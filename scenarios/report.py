"""Turn unit results into `results.json`, `results.csv`, `report.md` and `accuracy.png`.

Figures are means and (population) standard deviations over seeds, per strategy, in the
order the config lists the strategies. Accuracies are fractions in the files and percent in
the report and the picture.
"""
from __future__ import annotations

import csv
import io
import json
import os
from statistics import mean, pstdev

from condense_core.synthetic import atomic_write, atomic_write_text

COLUMNS = ("final_accuracy", "forgetting", "train_time_s", "memory_time_s")


def summarize(results: list[dict]) -> dict[str, dict]:
    """Per strategy: mean and std over seeds of each figure and of the accuracy curve."""
    by_name: dict[str, list[dict]] = {}
    for r in results:
        by_name.setdefault(r["strategy"], []).append(r)
    summary = {}
    for name, runs in by_name.items():
        s = {"seeds": [r["seed"] for r in runs]}
        for key in COLUMNS:
            vals = [r[key] for r in runs]
            s[key] = {"mean": mean(vals), "std": pstdev(vals)}
        curves = list(zip(*[r["accuracy"] for r in runs]))
        s["accuracy"] = {"mean": [mean(c) for c in curves], "std": [pstdev(c) for c in curves]}
        summary[name] = s
    return summary


def table(summary: dict[str, dict]) -> str:
    """The markdown table of the report (also what `dcapps demo` prints)."""
    lines = ["| strategy | final accuracy (%) | forgetting (%) | training (s) | memory (s) | seeds |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        acc, fgt = s["final_accuracy"], s["forgetting"]
        lines.append(f"| {name} | {100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} "
                     f"| {100 * fgt['mean']:.2f} ± {100 * fgt['std']:.2f} "
                     f"| {s['train_time_s']['mean']:.1f} | {s['memory_time_s']['mean']:.1f} "
                     f"| {len(s['seeds'])} |")
    return "\n".join(lines)


def write_report(out: str, cfg, results: list[dict], missing: list[str] = ()) -> dict:
    """Write every output file of a run (`cfg`, a `CLConfig`) into `out` from its finished units
    (`results`, at least one), naming the planned units not finished (`missing`); returns the
    summary."""
    cfg = cfg.as_dict()
    summary = summarize(results)
    atomic_write_text(json.dumps({"config": cfg, "summary": summary, "runs": results, "missing": list(missing)},
                                 indent=1), os.path.join(out, "results.json"))
    atomic_write_text(_csv(results), os.path.join(out, "results.csv"))
    plot_accuracy(summary, cfg, os.path.join(out, "accuracy.png"))
    atomic_write_text(_markdown(cfg, summary, results, missing), os.path.join(out, "report.md"))
    return summary


def _csv(results: list[dict]) -> str:
    buf = io.StringIO()
    n = max(len(r["accuracy"]) for r in results)
    w = csv.writer(buf)
    w.writerow(["strategy", "seed", *COLUMNS, *[f"accuracy_after_exp{i}" for i in range(n)]])
    for r in results:
        w.writerow([r["strategy"], r["seed"], *[r[k] for k in COLUMNS], *r["accuracy"]])
    return buf.getvalue()


def _markdown(cfg: dict, summary: dict, results: list[dict], missing: list[str]) -> str:
    first = results[0]
    memory = (f"{cfg['memory']['ipc']} images per class" if cfg["memory"]["ipc"] is not None
              else f"{cfg['memory']['mem_size']} images in all")
    model = ", ".join(f"{k}={v}" for k, v in cfg["model"].items())
    t = cfg["train"]
    pictures = sorted({r["memory_png"] for r in results if "memory_png" in r})
    lines = [
        f"# {cfg['name']}: class-incremental benchmark", "",
        f"Data `{cfg['data']}`, {cfg['experiences']} experiences "
        f"(classes per experience {first['classes_per_experience']}, class order drawn per seed); "
        f"model {model}; SGD lr {t['lr']}, momentum {t['momentum']}, weight decay {t['weight_decay']}, "
        f"{t['epochs']} epochs, batch {t['batch_size']}; memory {memory} "
        f"(the condensed and selected memories replay it as `{cfg['memory']['replay_mode']}`; replay is Avalanche's "
        f"ReplayPlugin, gdumb Avalanche's GDumb, both with class-balanced random storage); "
        f"memory methods' settings {cfg['condense'] or 'their memory presets'}; "
        f"device {first['device']}.", "",
        "Final accuracy: on the test images of all classes after the last experience; forgetting: "
        "mean drop from the best earlier accuracy on each experience. Mean ± std over seeds.", "",
        table(summary), "",
        "Accuracy on all classes seen so far, after each experience (%):", "",
        "| strategy | " + " | ".join(f"exp {i + 1}" for i in range(len(first["accuracy"]))) + " |",
        "|---|" + "---:|" * len(first["accuracy"]),
    ]
    for name, s in summary.items():
        cells = [f"{100 * m:.1f} ± {100 * d:.1f}" for m, d in zip(s["accuracy"]["mean"], s["accuracy"]["std"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "![accuracy](accuracy.png)", ""]
    if missing:
        lines += [f"**Not finished yet ({len(missing)} units, not in the figures above):** "
                  + ", ".join(f"`{k}`" for k in missing), ""]
    if pictures:
        lines += ["Memories after the last experience: " + ", ".join(f"[{p}]({p})" for p in pictures), ""]
    return "\n".join(lines)


def plot_accuracy(summary: dict, cfg: dict, path: str) -> str:
    """Accuracy on the seen classes after each experience: a line per strategy, a band for std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, s in summary.items():
        m, d = 100 * np.array(s["accuracy"]["mean"]), 100 * np.array(s["accuracy"]["std"])
        x = np.arange(1, len(m) + 1)
        style = {"linestyle": "--", "color": "black"} if name == "joint" else {}
        line, = ax.plot(x, m, marker="o", label=name, **style)
        ax.fill_between(x, m - d, m + d, alpha=0.2, color=line.get_color())
    n = len(next(iter(summary.values()))["accuracy"]["mean"])
    ax.set_xticks(range(1, n + 1))
    ax.set_xlabel("experience")
    ax.set_ylabel("accuracy on seen classes (%)")
    seeds = max(len(s["seeds"]) for s in summary.values())
    ax.set_title(f"{cfg['name']}: {cfg['data']}, {n} experiences, mean ± std over {seeds} seed(s)", fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
