"""Measurements behind issue 21 (LCMat on held-out data).

`select`: trains (or loads from runs/bench/lcmat21/cache) the selection network of each seed once
and evaluates, on the same network, random / herding / kcenter and LCMat-S (`lcmat-mean`,
`lcmat-facility`: the library's `LCMatS` with that `objective`) at each IPC; one JSON line per
result in OUT/results.jsonl (resumed), with the accuracy and diagnostics of the picks in the
selection network (mean loss, share misclassified, mean loss percentile within the class).
`table OUT [OUT...]`: mean ± std over seeds. `condense`: LCMat-C variants and DM, built by the
library and evaluated as `condense_table.py` evaluates (LCMat-C's pool of trained networks is
cached per seed). `scales`: LCMat-C's three terms, the norms of their gradients in the
synthetic images and the squared sizes of the real batch's three moments, summed over the
classes (IPC 1, real batch 64, rho 1).

    OMP_NUM_THREADS=1 python benchmarks/lcmat_study.py select --data runs/fashion_small.npz \
        --seeds 0,1,2 --ipcs 10,1 --variants random,lcmat-facility,lcmat-mean,herding,kcenter \
        --epochs 200 --out runs/bench/lcmat21/fashion300
    python benchmarks/lcmat_study.py table runs/bench/lcmat21/fashion300
    OMP_NUM_THREADS=1 python benchmarks/lcmat_study.py condense --data runs/fashion_small.npz \
        --seeds 0,1 --ipcs 1 --variants lcmat-rho0,lcmat-pool0 --iterations 100 \
        --batch-real 64 --runs 2 --epochs 300 --out runs/bench/lcmat21/lcmatc_fashion300
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from condense_core import load_data, make_method
from condense_core.evaluate import TrainSettings, evaluate, test_accuracy
from condense_core.method import pick_per_class
from condense_core.methods.selectors import Herding, KCenter
from condense_core.methods.lcmat import LCMatS


def scales(data, a):
    """LCMat-C's three terms (DM's embedding gap, rho * gradient gap, rho^2/2 * Hessian gap) and
    the norms of their gradients in the synthetic images, at IPC 1 from random real images,
    real batch 64, rho 1, in a random network and in a network trained `selection_epochs`."""
    from condense_core.methods.lcmat import LCMatC
    dev = torch.device("cpu")
    for seed in map(int, a.seeds.split(",")):
        m = LCMatC(ipc=1, seed=seed, device="cpu")
        sel = make_method("select", "lcmat", ipc=1, seed=seed, selection_epochs=a.selection_epochs, device="cpu")
        nets = {"random": m.network(data, dev, m.generator(dev, "x"))}
        trained = selection_network(sel, data, a.data, train=False)
        if trained is not None:
            nets[f"trained{a.selection_epochs}"] = trained
        g = torch.Generator().manual_seed(seed)
        for name, net in nets.items():
            net.requires_grad_(False)
            tot = torch.zeros(3)
            gn = torch.zeros(3)
            size = torch.zeros(3)  # squared sizes of the real batch's moments
            for c, idx in sorted(data.class_indices().items()):
                perm = idx[torch.randperm(len(idx), generator=g)]
                real = data.x_train[perm[:64]]
                syn = data.x_train[perm[64:65]].clone().requires_grad_(True)
                with torch.no_grad():
                    rm = [x / 64 for x in m.moments(net, net.embed(real), c)]
                size += torch.tensor([float((r ** 2).sum()) for r in rm])
                sm = m.moments(net, net.embed(syn), c)
                terms = [((r - s_) ** 2).sum() for r, s_ in zip(rm, sm)]
                terms = [terms[0], terms[1], terms[2] / 2]
                for i, t in enumerate(terms):
                    gr, = torch.autograd.grad(t, syn, retain_graph=True)
                    tot[i] += t.item()
                    gn[i] += gr.norm().item()
            print(json.dumps({"data": a.data, "seed": seed, "net": name, "feat_dim": int(net.classifier.in_features),
                              "dm_term": round(tot[0].item(), 4), "grad_term": round(tot[1].item(), 4),
                              "hess_term": round(tot[2].item(), 4),
                              "grad_norm_dm": round(gn[0].item(), 4), "grad_norm_g": round(gn[1].item(), 4),
                              "grad_norm_h": round(gn[2].item(), 4),
                              "real_sq_mu_g_h": [round(v, 2) for v in size.tolist()]}), flush=True)


CONDENSE_VARIANTS = {  # name -> (method, settings over LCMat-C's defaults)
    "dm": ("dm", {}),
    "lcmat": ("lcmat", {}),
    "lcmat-rho0": ("lcmat", {"rho": 0.0}),
    "lcmat-rho0.1": ("lcmat", {"rho": 0.1}),
    "lcmat-pool0": ("lcmat", {"pool_size": 0}),
}


CACHE = "runs/bench/lcmat21/cache"  # trained networks, per data file and seed


def selection_network(sel, data, data_file: str, train: bool = True):
    """The network LCMat-S selector `sel` trains (its seed and `selection_epochs`), kept in
    `CACHE` per data file: loaded from there, else trained and kept (`train`) or None."""
    cpu = torch.device("cpu")
    cache = f"{CACHE}/{os.path.basename(data_file)}_s{sel.seed}_e{sel.selection_epochs}.pt"
    if os.path.exists(cache):
        net = sel.network(data, cpu, sel.generator(cpu, "train"))
        net.load_state_dict(torch.load(cache))
        return net.eval()
    if not train:
        return None
    net = sel.trained_network(data, cpu)
    os.makedirs(CACHE, exist_ok=True)
    torch.save(net.state_dict(), cache)
    return net


def finished(out_file: str) -> set:
    """(seed, variant, ipc) of every result already in `out_file` (a run resumes past them)."""
    if not os.path.exists(out_file):
        return set()
    with open(out_file) as fh:
        return {(r["seed"], r["variant"], r["ipc"]) for r in map(json.loads, fh) if "variant" in r}


def record(out_file: str | None, res: dict) -> None:
    """Print one result and append it to `out_file` (if any) as a JSON line."""
    print(json.dumps(res), flush=True)
    if out_file:
        with open(out_file, "a") as fh:
            fh.write(json.dumps(res) + "\n")


def condense(data, a):
    """LCMat-C variants against DM at `--ipcs`, each built with the library's method and
    evaluated as `condense_table.py` evaluates (so a variant's figure is that table's unit with
    the same settings). The pool of trained networks depends only on the seed, `pool_size` and
    `net_epochs`, so it is trained once per seed and kept in `CACHE`."""
    from condense_core.methods.lcmat import LCMatC

    class CachedPool(LCMatC):
        def pool(self, data_, device):
            path = f"{CACHE}/pool_{os.path.basename(a.data)}_s{self.seed}_n{self.pool_size}_e{self.net_epochs}.pt"
            if os.path.exists(path):
                nets = [self.network(data_, device, self.generator(device, "pool", i)) for i in range(self.pool_size)]
                for net, state in zip(nets, torch.load(path)):
                    net.load_state_dict(state)
                return [n.requires_grad_(False) for n in nets]
            nets = super().pool(data_, device)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            torch.save([n.state_dict() for n in nets], path + ".tmp")
            os.replace(path + ".tmp", path)
            return nets

    cfg = TrainSettings(epochs=a.epochs)
    out_file = os.path.join(a.out, "results.jsonl")
    os.makedirs(a.out, exist_ok=True)
    done = finished(out_file)
    for seed in map(int, a.seeds.split(",")):
        for ipc in map(int, a.ipcs.split(",")):
            for v in a.variants.split(","):
                if (seed, v, ipc) in done:
                    continue
                if v not in CONDENSE_VARIANTS:
                    sys.exit(f"lcmat_study: unknown variant {v!r} ({', '.join(CONDENSE_VARIANTS)})")
                name, opts = CONDENSE_VARIANTS[v]
                settings = {"iterations": a.iterations, "batch_real": a.batch_real, **opts}
                method = (CachedPool(ipc=ipc, seed=seed, **settings) if name == "lcmat"
                          else make_method("condense", name, ipc=ipc, seed=seed, **settings))
                reduced = method.condense(data)
                x, y = reduced.for_data(data)
                r = evaluate(x, y, data, a.runs, seed, cfg=cfg, device="cpu")
                res = {"data": a.data, "seed": seed, "variant": v, "ipc": ipc, "acc": round(100 * r["mean"], 2),
                       "runs": a.runs, "epochs": a.epochs, "settings": settings,
                       "condense_s": round(reduced.meta["wall_time_s"], 1)}
                record(out_file, res)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("--data", default="runs/fashion_small.npz")
    p.add_argument("--ipcs", default="10")
    p.add_argument("--out", default=None, help="folder: results.jsonl appended (resumed: done entries skipped)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--selection-epochs", type=int, default=10)
    p.add_argument("--variants", default="random,lcmat-mean")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--iterations", type=int, default=100, help="condense: iterations")
    p.add_argument("--batch-real", type=int, default=64, help="condense: real images per class per iteration")
    a = p.parse_args(argv)
    data = load_data(a.data)
    if a.cmd == "scales":
        return scales(data, a)
    if a.cmd == "condense":
        return condense(data, a)
    cfg = TrainSettings(epochs=a.epochs)
    done = set()
    out_file = None
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        out_file = os.path.join(a.out, "results.jsonl")
        done = finished(out_file)
    ipcs = [int(x) for x in a.ipcs.split(",")]
    for seed in map(int, a.seeds.split(",")):
        todo = [(v, ipc) for ipc in ipcs for v in a.variants.split(",") if (seed, v, ipc) not in done]
        if not todo:
            continue
        t0 = time.time()
        sel = make_method("select", "lcmat", ipc=1, seed=seed, selection_epochs=a.selection_epochs, device="cpu")
        net = selection_network(sel, data, a.data)
        tr_acc = test_accuracy(net, data.x_train, data.y_train)
        te_acc = test_accuracy(net, data.x_test, data.y_test)
        print(json.dumps({"seed": seed, "selection_epochs": a.selection_epochs, "selnet_train": round(tr_acc, 4),
                          "selnet_test": round(te_acc, 4), "s": round(time.time() - t0, 1)}), flush=True)
        feats = {c: sel.features(net.embed, data.x_train[idx], torch.device("cpu")) for c, idx in sorted(data.class_indices().items())}
        with torch.no_grad():
            all_loss = F.cross_entropy(net(data.x_train), data.y_train, reduction="none")
        for v, ipc in todo:
            t1 = time.time()
            if v == "random":
                chosen = pick_per_class(data, ipc, make_method("select", "random", ipc=ipc, seed=seed).generator(torch.device("cpu")))
            else:
                out = []
                for c, idx in sorted(data.class_indices().items()):
                    f = feats[c]
                    if v == "herding":
                        pos = Herding(ipc=ipc).select_class(f, net, c)
                    elif v == "kcenter":
                        pos = KCenter(ipc=ipc).select_class(f, net, c)
                    elif v.startswith("lcmat-"):  # lcmat-<objective>[-eps<e>]
                        parts = v.split("-")
                        opts = {"objective": parts[1]}
                        for extra in parts[2:]:
                            if extra.startswith("eps"):
                                opts["eps"] = float(extra[3:])
                        pos = LCMatS(ipc=ipc, **opts).select_class(f, net, c)
                    else:
                        sys.exit(f"lcmat_study: unknown variant {v!r} (random, herding, kcenter, "
                                 "lcmat-<objective>[-eps<e>])")
                    out.append(idx[pos.cpu()])
                chosen = torch.cat(out)
            with torch.no_grad():
                logits = net(data.x_train[chosen])
                wrong = (logits.argmax(1) != data.y_train[chosen]).float().mean().item()
            pct = []
            for i in chosen.tolist():
                cl = all_loss[data.y_train == data.y_train[i]]
                pct.append((cl < all_loss[i]).float().mean().item())
            r = evaluate(data.x_train[chosen], data.y_train[chosen], data, runs=a.runs, seed=seed, cfg=cfg, device="cpu")
            res = {"data": a.data, "seed": seed, "variant": v, "ipc": ipc, "acc": round(100 * r["mean"], 2),
                   "runs": a.runs, "epochs": a.epochs, "selection_epochs": a.selection_epochs,
                   "pick_loss": round(all_loss[chosen].mean().item(), 3), "class_loss": round(all_loss.mean().item(), 3),
                   "pick_wrong": round(wrong, 3), "pick_loss_pct": round(sum(pct) / len(pct), 3),
                   "s": round(time.time() - t1, 1)}
            record(out_file, res)


def table(*folders):
    """Mean ± std over seeds of every (IPC, variant) in the folders' results (one run may be
    split over folders, e.g. a seed per process)."""
    import collections
    import statistics
    rows = collections.defaultdict(list)
    for folder in folders:
        for line in open(os.path.join(folder, "results.jsonl")):
            r = json.loads(line)
            rows[(r["ipc"], r["variant"])].append((r["seed"], r["acc"]))
    for (ipc, v), xs in sorted(rows.items()):
        accs = [x for _, x in sorted(xs)]
        sd = statistics.pstdev(accs) if len(accs) > 1 else 0.0
        print(f"ipc {ipc:3d}  {v:22s} {statistics.mean(accs):6.2f} ± {sd:4.2f}  seeds {[s for s, _ in sorted(xs)]}  {accs}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["table"]:
        sys.exit(table(*sys.argv[2:]))
    sys.exit(main())
