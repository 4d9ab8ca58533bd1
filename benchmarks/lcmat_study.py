"""Measurements behind issue 21 (LCMat on held-out data).

`select`: trains (or loads from runs/bench/lcmat21/cache) the selection network of each seed once
and evaluates, on the same network, random / herding / kcenter and LCMat-S (`lcmat-mean`,
`lcmat-facility`: the library's `LCMatS` with that `objective`) at each IPC; one JSON line per
result in OUT/results.jsonl (resumed), with the accuracy and diagnostics of the picks in the
selection network (mean loss, share misclassified, mean loss percentile within the class).
`table OUT`: mean ± std over seeds. `scales`: LCMat-C's three terms and the norms of their
gradients in the synthetic images (IPC 1, real batch 64, rho 1).

    OMP_NUM_THREADS=1 python benchmarks/lcmat_study.py select --data runs/fashion_small.npz \
        --seeds 0,1,2 --ipcs 10,1 --variants random,lcmat-facility,lcmat-mean,herding,kcenter \
        --epochs 200 --out runs/bench/lcmat21/fashion300
    python benchmarks/lcmat_study.py table runs/bench/lcmat21/fashion300
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
from condense_core.evaluate import TrainConfig, evaluate, test_accuracy
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
        cache = f"runs/bench/lcmat21/cache/{os.path.basename(a.data)}_s{seed}_e{a.selection_epochs}.pt"
        if os.path.exists(cache):
            t = sel.network(data, dev, sel.generator(dev, "train"))
            t.load_state_dict(torch.load(cache))
            nets[f"trained{a.selection_epochs}"] = t.eval()
        g = torch.Generator().manual_seed(seed)
        for name, net in nets.items():
            net.requires_grad_(False)
            tot = torch.zeros(3)
            gn = torch.zeros(3)
            for c, idx in sorted(data.class_indices().items()):
                perm = idx[torch.randperm(len(idx), generator=g)]
                real = data.x_train[perm[:64]]
                syn = data.x_train[perm[64:65]].clone().requires_grad_(True)
                with torch.no_grad():
                    rm = [x / 64 for x in m.moments(net, net.embed(real), c)]
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
                              "grad_norm_h": round(gn[2].item(), 4)}), flush=True)


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
    a = p.parse_args(argv)
    data = load_data(a.data)
    if a.cmd == "scales":
        return scales(data, a)
    cfg = TrainConfig(epochs=a.epochs)
    done = set()
    out_file = None
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        out_file = os.path.join(a.out, "results.jsonl")
        if os.path.exists(out_file):
            for line in open(out_file):
                r = json.loads(line)
                if "variant" in r:
                    done.add((r["seed"], r["variant"], r["ipc"]))
    ipcs = [int(x) for x in a.ipcs.split(",")]
    for seed in map(int, a.seeds.split(",")):
        todo = [(v, ipc) for ipc in ipcs for v in a.variants.split(",") if (seed, v, ipc) not in done]
        if not todo:
            continue
        t0 = time.time()
        sel = make_method("select", "lcmat", ipc=1, seed=seed, selection_epochs=a.selection_epochs, device="cpu")
        cache = f"runs/bench/lcmat21/cache/{os.path.basename(a.data)}_s{seed}_e{a.selection_epochs}.pt"
        if os.path.exists(cache):
            net = sel.network(data, torch.device("cpu"), sel.generator(torch.device("cpu"), "train"))
            net.load_state_dict(torch.load(cache))
            net.eval()
        else:
            net = sel.trained_network(data, torch.device("cpu"))
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            torch.save(net.state_dict(), cache)
        tr_acc = test_accuracy(net, data.x_train, data.y_train)
        te_acc = test_accuracy(net, data.x_test, data.y_test)
        print(json.dumps({"seed": seed, "selection_epochs": a.selection_epochs, "selnet_train": round(tr_acc, 4),
                          "selnet_test": round(te_acc, 4), "s": round(time.time() - t0, 1)}), flush=True)
        feats = {c: sel.features(net, data.x_train[idx], torch.device("cpu")) for c, idx in sorted(data.class_indices().items())}
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
                        pos = Herding(ipc=ipc).select_class(f)
                    elif v == "kcenter":
                        pos = KCenter(ipc=ipc).select_class(f)
                    elif v.startswith("lcmat-"):  # lcmat-<objective>[-eps<e>]
                        parts = v.split("-")
                        opts = {"objective": parts[1]}
                        for extra in parts[2:]:
                            if extra.startswith("eps"):
                                opts["eps"] = float(extra[3:])
                        pos = LCMatS(ipc=ipc, **opts).select_class(net.classifier, f, c)
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
            print(json.dumps(res), flush=True)
            if out_file:
                with open(out_file, "a") as fh:
                    fh.write(json.dumps(res) + "\n")


def table(folder):
    import collections
    import statistics
    rows = collections.defaultdict(list)
    for line in open(os.path.join(folder, "results.jsonl")):
        r = json.loads(line)
        rows[(r["ipc"], r["variant"])].append((r["seed"], r["acc"]))
    for (ipc, v), xs in sorted(rows.items()):
        accs = [x for _, x in sorted(xs)]
        sd = statistics.pstdev(accs) if len(accs) > 1 else 0.0
        print(f"ipc {ipc:3d}  {v:22s} {statistics.mean(accs):6.2f} ± {sd:4.2f}  seeds {[s for s, _ in sorted(xs)]}  {accs}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["table"]:
        sys.exit(table(sys.argv[2]))
    sys.exit(main())
