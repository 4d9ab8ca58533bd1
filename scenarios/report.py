"""Turn unit results into `results.json`, `results.csv`, `report.md` and `accuracy.png`.

Figures are means and (population) standard deviations over seeds, per strategy, in the
order the config lists the strategies. Accuracies are fractions in the files and percent in
the report and the pictures. A unit stores what was measured (the accuracy matrix from
Avalanche's accuracy metrics, the accuracy on the seen classes after each experience, wall
times, the memory held); the figures CL papers report are derived from it here (`run_metrics`),
forgetting by Avalanche's own definition.
"""
from __future__ import annotations

import csv
import io
import json
import os
from statistics import mean, pstdev

from condense_core.reduced import atomic_write_text, pyplot, save_png

MEMORY_KEYS = ("memory_images", "memory_training_images", "memory_bytes")

COLUMNS = ("final_accuracy", "average_incremental_accuracy", "forgetting", "train_time_s", "memory_time_s")


def run_metrics(run: dict) -> dict:
    """The figures of one unit that CL papers report, from its accuracy matrix (`per_experience`:
    row i, after training on experience i, holds the accuracy on the test data of experiences
    0..i) and its curve (`accuracy`: on all classes seen, after each experience):

    - final accuracy: the curve's last point;
    - average incremental accuracy (Rebuffi et al., iCaRL): the curve's mean;
    - forgetting: Avalanche's (`avalanche.evaluation.functional.forgetting`, as its
      `StreamForgetting`): per earlier experience, its accuracy just after it was learnt minus its
      accuracy at the end, averaged over the experiences before the last.
    """
    from avalanche.evaluation.functional import forgetting

    rows = run["per_experience"]
    n = len(rows)
    square = [[*row, *[0.0] * (n - len(row))] for row in rows]
    return {"final_accuracy": run["accuracy"][-1],
            "average_incremental_accuracy": mean(run["accuracy"]),
            "forgetting": float(forgetting(square)[-1, :-1].mean()) if n > 1 else 0.0}


def with_metrics(results: list[dict]) -> list[dict]:
    return [{**r, **run_metrics(r)} for r in results]


def summarize(results: list[dict]) -> dict[str, dict]:
    """Per strategy: mean and std over seeds of each figure, of the accuracy curve and of the
    accuracy matrix, and the memory held (the same for every seed)."""
    by_name: dict[str, list[dict]] = {}
    for r in with_metrics(results):
        by_name.setdefault(r["strategy"], []).append(r)
    summary = {}
    for name, runs in by_name.items():
        s = {"seeds": [r["seed"] for r in runs]}
        for key in COLUMNS:
            vals = [r[key] for r in runs]
            s[key] = {"mean": mean(vals), "std": pstdev(vals)}
        curves = list(zip(*[r["accuracy"] for r in runs]))
        s["accuracy"] = {"mean": [mean(c) for c in curves], "std": [pstdev(c) for c in curves]}
        s["matrix"] = [[mean(cell) for cell in zip(*rows)] for rows in zip(*[r["per_experience"] for r in runs])]
        s["memory"] = {k: runs[0][k] for k in MEMORY_KEYS if k in runs[0]}
        summary[name] = s
    return summary


def margins(results: list[dict]) -> list[dict]:
    """Each condensed memory against each memory of real images (`replay`, `herding`, `gdumb`,
    `icarl`, `der`: any strategy that holds a memory and does not condense it), by final accuracy,
    paired by seed: the mean and std of the per-seed differences, on how many seeds the condensed
    memory is ahead, and the verdict: `ahead` or `behind` only when every seed agrees and the mean
    exceeds the std of the differences, else `tie` (within the spread). This is the comparison
    a condensed memory exists for, so the report states it instead of leaving it to the reader."""
    from .strategies import STRATEGY_METHODS

    condensed = {s for s, (kind, _) in STRATEGY_METHODS.items() if kind == "condense"}
    final = {}
    for r in with_metrics(results):
        if r.get("memory_images"):
            final.setdefault(r["strategy"], {})[r["seed"]] = r["final_accuracy"]
    out = []
    for c in (s for s in final if s in condensed):
        for b in (s for s in final if s not in condensed):
            seeds = sorted(set(final[c]) & set(final[b]))
            if not seeds:
                continue
            diffs = [final[c][k] - final[b][k] for k in seeds]
            m, sd, ahead = mean(diffs), pstdev(diffs), sum(d > 0 for d in diffs)
            clear = len(seeds) > 1 and abs(m) > sd and ahead in (0, len(seeds))
            out.append({"condensed": c, "baseline": b, "seeds": seeds, "mean": m, "std": sd, "ahead": ahead,
                        "verdict": ("ahead" if m > 0 else "behind") if clear else "tie"})
    return out


def margin_lines(margins_: list[dict]) -> list[str]:
    """One line per pair of `margins`, as the report and `dcapps demo` print them."""
    return [f"- {g['condensed']} - {g['baseline']}: {100 * g['mean']:+.2f} ± {100 * g['std']:.2f} points, "
            f"ahead on {g['ahead']} of {len(g['seeds'])} seeds: "
            + {"ahead": "ahead beyond the spread", "behind": "behind beyond the spread",
               "tie": "a tie (within the spread)"}[g["verdict"]] for g in margins_]


def table(summary: dict[str, dict]) -> str:
    """The markdown table of the report (also what `dcapps demo` prints)."""
    lines = ["| strategy | final accuracy (%) | average incremental (%) | forgetting (%) | training (s) "
             "| memory (s) | memory: stored / trained on, KB | seeds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        pct = lambda key: f"{100 * s[key]['mean']:.2f} ± {100 * s[key]['std']:.2f}"  # noqa: E731
        m = s["memory"]
        held = (f"{m['memory_images']} / {m['memory_training_images']}, {m['memory_bytes'] / 1024:.0f}"
                if m else "none")
        lines.append(f"| {name} | {pct('final_accuracy')} | {pct('average_incremental_accuracy')} "
                     f"| {pct('forgetting')} | {s['train_time_s']['mean']:.1f} | {s['memory_time_s']['mean']:.1f} "
                     f"| {held} | {len(s['seeds'])} |")
    return "\n".join(lines)


def write_report(out: str, cfg, results: list[dict], missing: list[str] = ()) -> tuple[dict, list[dict]]:
    """Write every output file of a run (`cfg`, a `CLConfig`) into `out` from its finished units
    (`results`, at least one), naming the planned units not finished (`missing`); returns the
    summary and the margins, as the files hold them."""
    cfg = cfg.as_dict()
    summary = summarize(results)
    results = with_metrics(results)
    pairs = margins(results)
    atomic_write_text(json.dumps({"config": cfg, "summary": summary, "margins": pairs, "runs": results,
                                  "missing": list(missing)}, indent=1), os.path.join(out, "results.json"))
    atomic_write_text(_csv(results), os.path.join(out, "results.csv"))
    plot_accuracy(summary, cfg, os.path.join(out, "accuracy.png"))
    plot_matrices(summary, os.path.join(out, "matrix.png"))
    atomic_write_text(_markdown(cfg, summary, pairs, results, missing), os.path.join(out, "report.md"))
    return summary, pairs


def _csv(results: list[dict]) -> str:
    buf = io.StringIO()
    n = max(len(r["accuracy"]) for r in results)
    w = csv.writer(buf)
    w.writerow(["strategy", "seed", *COLUMNS, *[f"accuracy_after_exp{i}" for i in range(n)]])
    for r in results:
        w.writerow([r["strategy"], r["seed"], *[r[k] for k in COLUMNS], *r["accuracy"]])
    return buf.getvalue()


def verdict_lines(margins_: list[dict]) -> list[str]:
    """One line per condensed memory: the real-image memories it is not clearly ahead of (or that
    it beats them all), so that a tie is said in words, not left to the reader of the margins."""
    lines = []
    for c in dict.fromkeys(g["condensed"] for g in margins_):
        short = [g["baseline"] for g in margins_ if g["condensed"] == c and g["verdict"] != "ahead"]
        lines.append(f"{c}: " + (f"NOT ahead of {', '.join(short)} beyond the spread on this data" if short
                                 else "ahead of every real-image memory beyond the spread"))
    return lines


def _knowledge(memory: dict) -> str:
    """What the condensed and selected memories learn from, in words (hard labels or soft targets)."""
    from dcapps.replay import AUTO_KNOWLEDGE

    knowledge = memory.get("knowledge", "labels")
    if (AUTO_KNOWLEDGE[memory["replay_mode"]] if knowledge == "auto" else knowledge) == "labels":
        return "they are trained on their hard labels"
    if memory["replay_mode"] == "mix":
        return (f"they keep the learner's logits and replay them with DER++'s loss (alpha {memory['alpha']}, "
                f"beta {memory['beta']}): soft-target rows")
    return "they keep a teacher's logits, learnt by KL at its temperature plus cross-entropy: soft-target rows"


def _markdown(cfg: dict, summary: dict, pairs: list[dict], results: list[dict], missing: list[str]) -> str:
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
        f"{t['epochs']} epochs"
        + (f" ({t['memory_epochs']} for a model trained on the memory only)" if t.get("memory_epochs") else "")
        + f", batch {t['batch_size']}; memory {memory} "
        f"(the condensed and selected memories replay it as `{cfg['memory']['replay_mode']}`; replay is Avalanche's "
        f"ReplayPlugin, gdumb Avalanche's GDumb, both with class-balanced random storage); "
        f"{_knowledge(cfg['memory'])}; "
        f"settings of the methods that build memories {cfg['methods'] or 'their memory presets'}; "
        f"device {first['device']}.", "",
        "Final accuracy: on the test images of all classes after the last experience; average "
        "incremental: the mean of the accuracies on the classes seen after each experience; forgetting "
        "(Avalanche's): accuracy on each earlier experience just after learning it minus at the end, "
        "averaged. Memory: images stored, images trained on (multi-formation decodes a stored image "
        "into several) and the stored bytes (images, plus the logits a memory keeps: DER's, and those of a "
        "memory with knowledge `logits`); every memory holds the same number of stored pixels. "
        "Mean ± std over seeds.", "",
        table(summary), "",
    ]
    if pairs:
        lines += ["Condensed against real-image memories (final accuracy, per-seed differences; `ahead` or "
                  "`behind` only when every seed agrees and the mean exceeds the std):", "",
                  *margin_lines(pairs), "", *verdict_lines(pairs), ""]
    lines += [
        "Accuracy on all classes seen so far, after each experience (%):", "",
        "| strategy | " + " | ".join(f"exp {i + 1}" for i in range(len(first["accuracy"]))) + " |",
        "|---|" + "---:|" * len(first["accuracy"]),
    ]
    for name, s in summary.items():
        cells = [f"{100 * m:.1f} ± {100 * d:.1f}" for m, d in zip(s["accuracy"]["mean"], s["accuracy"]["std"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "![accuracy](accuracy.png)", "",
              "Accuracy matrix (%, mean over seeds): row i after training on experience i, column j on "
              "the test data of experience j.", ""]
    for name, s in summary.items():
        n = len(s["matrix"])
        lines += [f"**{name}**", "", "| after | " + " | ".join(f"exp {j + 1}" for j in range(n)) + " |",
                  "|---|" + "---:|" * n]
        lines += [f"| exp {i + 1} | " + " | ".join([f"{100 * v:.1f}" for v in row] + [""] * (n - len(row))) + " |"
                  for i, row in enumerate(s["matrix"])]
        lines.append("")
    lines += ["![accuracy matrices](matrix.png)", ""]
    if missing:
        lines += [f"**Not finished yet ({len(missing)} units, not in the figures above):** "
                  + ", ".join(f"`{k}`" for k in missing), ""]
    if pictures:
        lines += ["Memories after the last experience: " + ", ".join(f"[{p}]({p})" for p in pictures), ""]
    return "\n".join(lines)


def plot_matrices(summary: dict, path: str) -> str:
    """`matrix.png`: the figure of `matrix_figure`."""
    return save_png(matrix_figure(summary), path)


def matrix_figure(summary: dict):
    """One heat map of the mean accuracy matrix per strategy (blank above the diagonal), each cell
    with its accuracy written in it, and the colour bar's label inside the picture."""
    plt = pyplot()
    import numpy as np

    names = list(summary)
    n = len(next(iter(summary.values()))["matrix"])
    side = max(2.2, 0.45 * n + 0.8)  # room for a number in every cell
    fig, axes = plt.subplots(1, len(names), figsize=(side * len(names) + 1.2, side + 0.6), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes[0], names):
        rows = summary[name]["matrix"]
        grid = np.full((n, n), np.nan)
        for i, row in enumerate(rows):
            grid[i, :len(row)] = 100 * np.array(row)
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if value > 60 else "white")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(n), [str(j + 1) for j in range(n)], fontsize=7)
        ax.set_yticks(range(n), [str(i + 1) for i in range(n)], fontsize=7)
        ax.set_xlabel("test exp", fontsize=7)
    axes[0][0].set_ylabel("after exp", fontsize=7)
    bar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.02, pad=0.01)
    bar.set_label("accuracy (%)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig


def plot_accuracy(summary: dict, cfg: dict, path: str) -> str:
    """Accuracy on the seen classes after each experience: a line per strategy, a band for std."""
    plt = pyplot()
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
    return save_png(fig, path, dpi=110)
