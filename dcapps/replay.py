"""DMReplay: condensed per-experience memories as an Avalanche 0.6 replay strategy.

After each training experience, `ReducedSetBuffer` condenses that experience's real training data
into a few synthetic images per class with any registered `condense_core` method (a condenser:
`dm`, `lcmat`, ...; or a selector: `herding`, `random`, ...), using its own freshly drawn networks (never the learner's weights), and keeps
them detached on the CPU in the space the model sees. `ReducedSetReplayPlugin` replays them:
`replay_mode="mix"` adds memory to every mini-batch (Avalanche's `ReplayPlugin`), `"gdumb"`
re-initialises the model and trains it on the memory only (the DM paper's protocol). `DMReplay`
is `SupervisedTemplate` + that plugin, with the conventions of Avalanche's `Replay` and `GDumb`.

A memory is condensed in about a hundred iterations per experience, not DM's 20,000, so every
memory method starts from its `"memory"` preset (DM's: 100 iterations from herding's picks with
larger image steps, chosen by accuracy per memory-building second in docs/cl.md;
`dcapps methods` lists the presets); `method_settings` override any setting.

Inputs: images (N x C x H x W) keep the method's network (ConvNet) and augmentation (DSA);
vectors (N x D, e.g. tabular features) are condensed as D x 1 x 1 images through an MLP without
image augmentation (`VECTOR_DEFAULTS`, under `method_settings`), and replayed as vectors again.

Budgets: `ipc` images per class (memory grows with the classes, as in the DM paper), or
`mem_size` images in all, shared equally by the classes seen (`mem_size // classes`; any
remainder stays unused). When new classes arrive under `mem_size`, every older class whose
share shrank is re-condensed by the same method from its own stored images onto the new,
smaller count (DM condenses the old synthetic set onto fewer images; a selector picks among
them), so the buffer never exceeds its budget.

Knowledge (`knowledge="logits"`): in `mix` the learner's logits on the stored images are
recorded when they are stored and replayed with DER++'s loss; in `gdumb` a teacher trained on
the experience's real data records its soft targets (`ReducedSetReplayPlugin`).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch
from avalanche.models import MultiTaskModule
from avalanche.training.plugins import ReplayPlugin, SupervisedPlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin, default_evaluator
from avalanche.training.storage_policy import ExemplarsBuffer
from avalanche.training.templates import SupervisedTemplate
from torch.nn import Module
from torch.optim import Optimizer

from condense_core import ImageData, InputError, ReducedSet, make_method
from condense_core.knowledge import dark_replay_loss, recorded_logits, soft_target_term
from condense_core.runtime import derive_seed
from condense_core.outputs import check_output_folder
from condense_core.registry import method_class
from condense_core.deprecation import renamed, renamed_argument
from condense_core.settings import applicable, check, setting
from condense_core.reduced import SOURCES, SoftTargets, atomic_write_text

from .memory_metrics import memory_build

REPLAY_MODES = ("mix", "gdumb")
KNOWLEDGE = ("auto", "labels", "logits")
# `auto`: what the measurements found better in each replay mode (docs/cl.md, "Memories that keep
# knowledge"): the learner's logits in mix, the labels in gdumb (a teacher's targets cost accuracy)
AUTO_KNOWLEDGE = {"mix": "logits", "gdumb": "labels"}
EMBEDDINGS = ("auto", "own", "learner")
# `auto`: the learner's embedding where it has one and has learnt the experience (mix), else the
# method's own network (gdumb resets the learner before the memory is built); measured in
# docs/knowledge.md ("What a memory looks through"): in mix the same accuracy for a third of the time
LOGITS_FROM = {"mix": "learner", "gdumb": "teacher"}  # where a memory's logits come from, by replay mode
SET_PATTERN = "experience_{:03d}.pt"
PRESET = "memory"  # the settings preset every memory method starts from
VECTOR_DEFAULTS = {"model": "MLP", "dsa": False, "lr_img": 1.0}  # N x D inputs: no convolution, no image
# augmentation, and the paper's step on the data (the memory preset's larger step is for images: on
# vectors through an MLP it diverges)


@dataclass
class MemorySettings:
    """The memory a replay strategy is given (the YAML's `memory:` section too): its budget and
    how it is replayed. The constructors below take their defaults from here."""

    ipc: Optional[int] = setting(10, "images per class in memory", low=1)
    mem_size: Optional[int] = setting(None, "images in memory in all, shared by the classes seen "
                                            "(replaces ipc)", low=1)
    replay_mode: str = setting("mix", "mix: memory in every mini-batch; gdumb: the model is reset and "
                                      "trained on the memory only", choices=REPLAY_MODES)
    knowledge: str = setting("auto", "labels: replay the stored labels only; logits: also what a model knew "
                                     "of the stored images (mix: the learner's logits, recorded when they are "
                                     "stored, replayed with DER++'s loss; gdumb: a teacher's soft targets, "
                                     "learnt by KL at their temperature plus cross-entropy); auto: logits in mix, "
                                     "labels in gdumb or with a multi-task model (as measured)", choices=KNOWLEDGE)
    alpha: float = setting(0.1, "mix with logits: weight of the squared error to the recorded logits "
                                "(DER++'s alpha)", low=0)
    beta: float = setting(0.5, "mix with logits: weight of the cross-entropy on the stored labels "
                               "(DER++'s beta)", low=0)
    embedding: str = setting("auto", "what a memory method that looks through a trained network (herding, "
                                     "k-center, DM's herding start) looks through: own: a network it trains on "
                                     "the experience; learner: the learner's embedding (iCaRL's way, no "
                                     "training); auto: the learner's in mix where the model has embed() or "
                                     "features(), else its own (as measured)", choices=EMBEDDINGS)


def class_share(mem_size: int, classes: int, name: str = "mem_size") -> int:
    """Images per class when `mem_size` images are shared equally by `classes` classes (any
    remainder stays unused); fewer images than classes is an input error naming `name`."""
    if mem_size < classes:
        raise InputError(f"{name} {mem_size} is smaller than the {classes} classes: each class needs at least "
                         "one image")
    return mem_size // classes


class ReducedSetBuffer(ExemplarsBuffer):
    """Avalanche storage policy holding one condensed `ReducedSet` per experience.

    `buffer` is an Avalanche dataset of the stored images whose items have the same shape as the
    current data's: `(x, y, t)` for task-aware data (e.g. `nc_benchmark`), `(x, y)` otherwise
    (e.g. `class_incremental_benchmark`).
    """

    def __init__(self, ipc: Optional[int] = MemorySettings.ipc, mem_size: Optional[int] = MemorySettings.mem_size,
                 method: str = "dm", kind: str = "condense", method_settings: Optional[dict] = None,
                 seed: int = 0, device: Union[str, torch.device, None] = None,
                 logits_from: Optional[str] = None, embedding: str = MemorySettings.embedding, **renamed):
        method_settings = renamed_argument(renamed, "options", "method_settings", method_settings,
                                           "ReducedSetBuffer")
        _no_other_arguments(renamed, "ReducedSetBuffer")
        check(MemorySettings, {"ipc": ipc if mem_size is None else None, "mem_size": mem_size,
                               "embedding": embedding})
        if ipc is None and mem_size is None:
            raise InputError("give ipc (images per class) or mem_size (images in all)")
        given = sorted({"ipc", "seed"} & set(method_settings or {}))
        if given:
            raise InputError(f"method_settings may not set {', '.join(given)}: the memory sets them (use "
                             "the ipc/mem_size and seed arguments)")
        super().__init__(max_size=mem_size if mem_size is not None else 0)
        self.ipc, self.mem_size, self.kind, self.method = ipc, mem_size, kind, method
        self.method_settings = dict(method_settings or {})
        if logits_from not in (None, *SOURCES):
            raise InputError(f"logits_from must be none or one of {', '.join(SOURCES)}, got {logits_from!r}")
        self.seed, self.device, self.logits_from, self.embedding = seed, device, logits_from, embedding
        self.sets: List[ReducedSet] = []  # one per experience, in arrival order
        self.vectors = False  # the data are N x D vectors (set by the first experience)
        self.method_for(1, "cpu", "check")  # unknown names or settings fail here, not after training

    # -- condensation -------------------------------------------------------------------------
    def method_for(self, ipc: int, device, *stream):
        """The configured method for `ipc` images per class, seeded from `stream`: its memory
        preset, then, for vector data, `VECTOR_DEFAULTS` (those settings it has), then
        `method_settings`; it records a teacher's soft targets when the memory's logits come
        from a teacher."""
        given = {**applicable(method_class(self.kind, self.method), VECTOR_DEFAULTS if self.vectors else {}),
                 **self.method_settings, **({"soft_labels": True} if self.logits_from == "teacher" else {})}
        return make_method(self.kind, self.method, PRESET, **{"device": str(device), **given},
                           ipc=ipc, seed=derive_seed(self.seed, *stream))

    def budget(self, n_classes: int) -> int:
        """Images per class for `n_classes` classes seen."""
        return self.ipc if self.mem_size is None else class_share(self.mem_size, n_classes)

    def classes(self) -> List[int]:
        return sorted({int(c) for s in self.sets for c in s.labels.tolist()})

    def __len__(self) -> int:
        return sum(len(s) for s in self.sets)

    def post_adapt(self, agent_state, exp) -> None:
        """Condense `exp`'s training data (plus any stored images of its classes) into the buffer,
        re-condense older classes onto their new share, and give every new or re-condensed
        image its soft targets where the memory keeps logits (`logits_from`)."""
        device = self.device if self.device is not None else getattr(agent_state, "device", "cpu")
        x, y, t, arity = experience_tensors(exp.dataset)
        self.vectors = x.dim() == 2
        x = as_images(x)
        new = sorted(set(y.tolist()))
        old = [c for c in self.classes() if c not in new]
        per_class = self.budget(len(old) + len(new))
        tasks = _task_of_class(y, t)
        learner = getattr(agent_state, "model", None)
        outputs = _outputs(learner, x) if self.logits_from is not None else None
        x, y = self._take_stored(new, x, y)  # a class seen again: its memory joins its new data
        index = getattr(exp, "current_experience", len(self.sets))
        data = _image_data(x, y, outputs)
        made = self.method_for(min(per_class, data.smallest_class()), device, "experience", index).condense(
            data, embedding=self._embedding(learner))
        made.meta.update({"experience": int(index), "task_labels": tasks,
                          "item_arity": arity, "vectors": self.vectors})
        self.sets = [s for s in self.sets if len(s)] + [self._with_knowledge(made, learner)]
        self._shrink(per_class, device, index, learner, outputs)
        self._refresh()

    def _embedding(self, learner):
        """What the memory method looks through: the learner's embedding (`embed`, else
        `features`, of the model, in eval mode) with `embedding="learner"`, and with `"auto"` where
        the model has one; otherwise nothing given (the method trains its own network)."""
        part = getattr(learner, "embed", None) or getattr(learner, "features", None)
        if self.embedding == "own" or (self.embedding == "auto" and part is None):
            return None
        if part is None:
            raise InputError(f"embedding learner needs a model with embed() or features(), "
                             f"got {type(learner).__name__}")
        vectors = self.vectors

        @torch.no_grad()
        def embed(images: torch.Tensor) -> torch.Tensor:
            was_training = learner.training
            learner.eval()
            try:
                x = images.to(next(learner.parameters()).device)
                return part(x.flatten(1) if vectors else x).flatten(1)
            finally:
                learner.train(was_training)
        return embed

    def _with_knowledge(self, made: ReducedSet, learner) -> ReducedSet:
        """`made` with the learner's logits on its training images, when they come from the
        learner and it has none yet (a teacher's were recorded by the method itself)."""
        if self.logits_from != "learner" or made.targets is not None:
            return made
        images = made.training_images()[0]
        logits = recorded_logits(learner, images.flatten(1) if self.vectors else images)
        if not torch.isfinite(logits).all():
            raise InputError("the learner's logits on the memory are not finite: it diverged (a smaller "
                             "learning rate keeps it finite)")
        return made.with_targets(SoftTargets(logits, 1.0, "learner"))

    def _take_stored(self, labels: Sequence[int], x: torch.Tensor, y: torch.Tensor):
        """Remove the stored images of `labels` from older sets and return them joined to (x, y)."""
        xs, ys = [x], [y]
        for i, s in enumerate(self.sets):
            mine = torch.isin(s.labels, torch.tensor(list(labels)))
            if mine.any():
                stored_x, stored_y = s.keep(mine).training_images()  # decoded, like real images
                xs.append(stored_x)
                ys.append(stored_y)
                self.sets[i] = s.keep(~mine)
        return torch.cat(xs), torch.cat(ys)

    def _shrink(self, per_class: int, device, index, learner=None, outputs: Optional[int] = None) -> None:
        """Re-condense every stored class holding more than `per_class` images onto `per_class`.
        Where the memory keeps logits, the images a selector keeps keep theirs (recorded when
        they were stored, as DER's buffer keeps them); new images get new ones."""
        for i, s in enumerate(self.sets):
            counts = torch.bincount(s.labels)
            if len(counts) and int(counts.max()) > per_class:
                reduced = self.method_for(per_class, device, "shrink", index, i).condense(
                    _image_data(*s.training_images(), outputs), embedding=self._embedding(learner))
                meta = {**s.meta, "factor": reduced.factor, "reduced_to_ipc": per_class, "reduced_by": reduced.meta}
                kept = reduced.meta.get("indices")
                targets = (s.targets.rows(torch.tensor(kept)) if kept is not None and s.targets is not None
                           else reduced.targets)
                self.sets[i] = self._with_knowledge(ReducedSet(reduced.images, reduced.labels, s.classes, s.mean,
                                                               s.std, meta, targets=targets), learner)

    def _refresh(self) -> None:
        """Rebuild the Avalanche dataset from the sets (and, for `ipc`, the budget)."""
        if self.mem_size is None:
            self.max_size = self.ipc * len(self.classes())
        self.buffer = memory_dataset(self.sets, with_logits=self.logits_from is not None)

    def resize(self, strategy, new_size: int) -> None:
        """Change the total budget (`mem_size`) and re-condense the stored classes to fit."""
        self.mem_size = self.max_size = int(new_size)
        if self.sets:
            learner = getattr(strategy, "model", None)
            outputs = self.sets[0].targets.logits.shape[1] if self.sets[0].targets is not None else None
            self._shrink(self.budget(len(self.classes())), self.device or getattr(strategy, "device", "cpu"),
                         "resize", learner, outputs)
            self._refresh()

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: str) -> str:
        """Write one `ReducedSet` file per experience (atomically) and an index of them.

        Set files of an earlier, longer memory in the same folder are not read back: the index
        names the files that belong to this memory. A `folder` that cannot be a folder (a file is
        there) or cannot be written is refused before anything is written.
        """
        check_output_folder(folder, "save_memory folder")
        os.makedirs(folder, exist_ok=True)
        names = [SET_PATTERN.format(i) for i in range(len(self.sets))]
        for name, s in zip(names, self.sets):
            s.save(os.path.join(folder, name))
        atomic_write_text("\n".join(names) + "\n", os.path.join(folder, "index.txt"))
        return folder

    def load(self, folder: str) -> "ReducedSetBuffer":
        """Replace the memory by the sets saved in `folder` by `save`: all of them or, if any is
        missing, damaged or does not fit with the others or with the memory held now (image
        shape, item tuple, budget, soft targets where the memory keeps logits), none; a refused
        folder leaves the memory as it was."""
        sets = read_memory(folder)
        held = sum(len(s) for s in sets)
        if self.logits_from is not None:
            widths = {s.targets.logits.shape[1] if s.targets is not None else None for s in sets}
            if None in widths or len(widths) > 1:
                raise InputError(f"{folder}: this memory keeps logits, but its sets do not all carry soft "
                                 "targets of one width")
        if self.mem_size is not None and held > self.mem_size:
            raise InputError(f"{folder}: memory holds {held} images, more than mem_size {self.mem_size}")
        if self.sets and sets and _shape(self.sets[-1]) != _shape(sets[0]):
            raise InputError(f"{folder}: its images are {_shape(sets[0])} (C x H x W), the memory "
                             f"held now has {_shape(self.sets[-1])}")
        try:
            buffer = memory_dataset(sets, with_logits=self.logits_from is not None)
        except (ValueError, TypeError, RuntimeError) as e:
            raise InputError(f"{folder}: its sets do not form one memory ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
        self.sets, self.buffer = sets, buffer  # only now, together: nothing half replaced
        self.vectors = bool(sets and sets[0].meta.get("vectors", False))
        if self.mem_size is None:
            self.max_size = self.ipc * len(self.classes())
        return self


def _no_other_arguments(kwargs: dict, where: str) -> None:
    if kwargs:
        raise TypeError(f"{where}() got an unexpected keyword argument {next(iter(kwargs))!r}")


def read_memory(folder: str) -> List[ReducedSet]:
    """The sets of a memory saved by `ReducedSetBuffer.save`, checked to form one memory: every
    file the index names is a plain name in `folder`, a whole replay memory set, and all share
    one image shape and one item tuple."""
    index = os.path.join(folder, "index.txt")
    if not os.path.isfile(index):
        raise InputError(f"{folder}: not a saved replay memory (no index.txt)")
    try:
        with open(index, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{index}: not a readable index ({type(e).__name__})") from None
    for n in names:
        if os.path.basename(n) != n or n.startswith(".") or names.count(n) > 1:
            raise InputError(f"{index}: {n!r} is not the name of one set file in the folder")
    sets = [ReducedSet.load(os.path.join(folder, n)) for n in names]
    for n, s in zip(names, sets):
        arity, tasks = s.meta.get("item_arity"), s.meta.get("task_labels")
        if arity not in (2, 3) or not isinstance(tasks, dict):
            raise InputError(f"{folder}/{n}: not a replay memory set (no item_arity/task_labels)")
        if (_shape(s) != _shape(sets[0]) or arity != sets[0].meta["item_arity"]
                or s.meta.get("vectors", False) != sets[0].meta.get("vectors", False)):
            raise InputError(f"{folder}/{n}: its images are {_shape(s)} with {arity}-item tuples, "
                             f"{names[0]}'s are {_shape(sets[0])} with {sets[0].meta['item_arity']}: "
                             "not one memory")
    return sets


def _shape(s: ReducedSet) -> str:
    return "x".join(map(str, s.images.shape[1:]))


def experience_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], int]:
    """All (x, y, task labels or None, item arity) of an Avalanche dataset, as the model sees it
    (eval transforms: normalised, no augmentation), on the CPU."""
    from torch.utils.data import DataLoader

    data = dataset.eval() if hasattr(dataset, "eval") else dataset
    xs, ys, ts, arity = [], [], [], 2
    for batch in DataLoader(data, batch_size=512, shuffle=False):
        arity = len(batch)
        xs.append(torch.as_tensor(batch[0]).detach().cpu().float())
        ys.append(torch.as_tensor(batch[1]).long().cpu())
        if arity > 2:
            ts.append(torch.as_tensor(batch[2]).long().cpu())
    if not xs:
        raise InputError("the experience holds no training data to condense")
    x = torch.cat(xs)
    if x.dim() not in (2, 4):
        raise InputError(f"replay memory needs images N x C x H x W or vectors N x D, got shape {tuple(x.shape)}")
    return x, torch.cat(ys), (torch.cat(ts) if ts else None), arity


def as_images(x: torch.Tensor) -> torch.Tensor:
    """N x D vectors as N x D x 1 x 1 images (images unchanged): the condensers' input form."""
    return x[:, :, None, None] if x.dim() == 2 else x


def memory_dataset(sets: Sequence[ReducedSet], with_logits: bool = False):
    """An Avalanche dataset of the stored images, with the item tuple of the data they came from
    and, `with_logits`, each image's soft-target logits as a last element (as Avalanche's DER
    stores them)."""
    dataset = _labelled_memory(sets)
    if not with_logits or len(dataset) == 0:
        return dataset
    from avalanche.benchmarks.utils import make_avalanche_dataset
    from avalanche.benchmarks.utils.data_attribute import TensorDataAttribute
    from avalanche.benchmarks.utils.flat_data import FlatData

    logits = torch.cat([s.targets.logits for s in sets if len(s)])
    return make_avalanche_dataset(dataset, data_attributes=[
        TensorDataAttribute(FlatData([list(logits)], discard_elements_not_in_indices=True), name="logits",
                            use_in_getitem=True)])


def _labelled_memory(sets: Sequence[ReducedSet]):
    """The stored images and labels as an Avalanche dataset with the data's item tuple."""
    from avalanche.benchmarks.utils import (_make_taskaware_tensor_classification_dataset,
                                            as_classification_dataset, concat_datasets)

    sets = [s for s in sets if len(s)]
    if not sets:
        return concat_datasets([])
    decoded = [s.training_images() for s in sets]  # multi-formation sets train on their decoded images
    x = torch.cat([images for images, _ in decoded])
    if sets[-1].meta.get("vectors", False):  # condensed as D x 1 x 1 images, replayed as vectors
        x = x.flatten(1)
    y = torch.cat([labels for _, labels in decoded])
    if sets[-1].meta["item_arity"] > 2:
        t = torch.tensor([int(s.meta["task_labels"].get(str(int(c)), 0)) for s, (_, labels) in zip(sets, decoded)
                          for c in labels])
        return _make_taskaware_tensor_classification_dataset(x, y, task_labels=t.tolist(), targets=y.tolist())
    from torch.utils.data import TensorDataset

    plain = TensorDataset(x, y)
    plain.targets = y.tolist()
    return as_classification_dataset(plain)


def _image_data(x: torch.Tensor, y: torch.Tensor, outputs: Optional[int] = None) -> ImageData:
    """Tensors already in the model's space (normalisation identity), classes 0..max label, or
    0..outputs-1 where the memory's logits must span the learner's `outputs`."""
    return ImageData.from_tensors(x, y, classes=list(range(outputs or int(y.max()) + 1)), spec="avalanche experience")


def _outputs(learner, x: torch.Tensor) -> int:
    """How many outputs (logits) the learner gives, from one forward of an experience image."""
    if learner is None:
        raise InputError("a memory that keeps logits needs the strategy's model")
    if isinstance(learner, MultiTaskModule):
        raise InputError(f"knowledge logits needs a single-head model, got the multi-task {type(learner).__name__} "
                         "(its logits need task labels): give knowledge labels")
    sample = x[:1].flatten(1) if x.dim() == 2 else x[:1]
    return recorded_logits(learner, sample).shape[1]


def _task_of_class(y: torch.Tensor, t: Optional[torch.Tensor]) -> dict:
    """Task label of each class (its most common one); 0 without task labels. Keys are strings
    so the metadata stays plain JSON-like data."""
    out = {}
    for c in sorted(set(y.tolist())):
        out[str(c)] = int(torch.mode(t[y == c]).values) if t is not None else 0
    return out


class ReducedSetReplayPlugin(ReplayPlugin):
    """Replay of condensed memories; attach to any Avalanche strategy (e.g. `Naive`).

    `replay_mode="mix"`: every mini-batch holds current data and memory (as `ReplayPlugin`),
    the experience is condensed after training on it. `"gdumb"`: the experience is condensed
    first, the model is reset to its initial weights and trained on the memory only.

    `knowledge="logits"`: the memory also keeps what a model knew of its images. In `mix` the
    learner's logits are recorded when images are stored (after the experience is learnt) and
    a memory mini-batch is learnt with DER++'s loss (`alpha` x squared error to the logits +
    `beta` x cross-entropy), the current data with the strategy's criterion. In `gdumb` a
    teacher trained on the experience's real data records its logits, and the memory-only
    model learns them by KL at their temperature on top of the criterion.
    """

    def __init__(self, ipc: Optional[int] = MemorySettings.ipc, mem_size: Optional[int] = MemorySettings.mem_size,
                 method: str = "dm", kind: str = "condense", method_settings: Optional[dict] = None,
                 seed: int = 0, replay_mode: str = MemorySettings.replay_mode, batch_size: Optional[int] = None,
                 batch_size_mem: Optional[int] = None, device: Union[str, torch.device, None] = None,
                 storage_policy: Optional[ReducedSetBuffer] = None, knowledge: str = MemorySettings.knowledge,
                 alpha: float = MemorySettings.alpha, beta: float = MemorySettings.beta,
                 embedding: str = MemorySettings.embedding, **renamed):
        method_settings = renamed_argument(renamed, "options", "method_settings", method_settings,
                                           "ReducedSetReplayPlugin")
        _no_other_arguments(renamed, "ReducedSetReplayPlugin")
        check(MemorySettings, {"replay_mode": replay_mode, "knowledge": knowledge, "alpha": alpha, "beta": beta})
        self.auto = knowledge == "auto"
        knowledge = AUTO_KNOWLEDGE[replay_mode] if knowledge == "auto" else knowledge
        logits_from = LOGITS_FROM[replay_mode] if knowledge == "logits" else None
        if storage_policy is not None:
            storage_policy.logits_from = logits_from
        storage = storage_policy if storage_policy is not None else ReducedSetBuffer(
            ipc, mem_size, method, kind, method_settings, seed, device, logits_from, embedding)
        if replay_mode == "gdumb" and storage.embedding == "auto":
            storage.embedding = "own"  # the learner is reset before the memory is built: it has learnt nothing
        super().__init__(mem_size=storage.max_size, batch_size=batch_size, batch_size_mem=batch_size_mem,
                         storage_policy=storage)
        self.replay_mode, self.knowledge, self.alpha, self.beta = replay_mode, knowledge, alpha, beta
        self.init_model: Optional[Module] = None
        self._memory_batches = None  # mix with logits: an endless loader of (x, y, [t], logits)
        self._replayed = None  # this iteration's memory rows: (count, logits, outputs, labels)

    @property
    def memory(self) -> ReducedSetBuffer:
        return self.storage_policy

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        if self.replay_mode == "gdumb":  # reset to the initial weights, as GDumbPlugin does
            if self.init_model is None:
                self.init_model = copy.deepcopy(strategy.model)
            else:
                strategy.model = copy.deepcopy(self.init_model)
            strategy.model_adaptation(self.init_model)

    def before_eval_dataset_adaptation(self, strategy, **kwargs):
        if self.replay_mode == "gdumb" and self.init_model is not None:
            strategy.model_adaptation(self.init_model)

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        if self.replay_mode == "gdumb":
            with memory_build(strategy, self.storage_policy):  # its metrics go to the evaluator
                self.storage_policy.post_adapt(strategy, strategy.experience)
            strategy.adapted_dataset = self.storage_policy.buffer.train()

    def before_training_exp(self, strategy, *args, **kwargs):
        if self.auto and self.knowledge == "logits" and isinstance(strategy.model, MultiTaskModule):
            self.knowledge, self.storage_policy.logits_from = "labels", None  # its logits need task labels
        if self.replay_mode == "mix" and self.knowledge == "logits":
            self._memory_batches = self._memory_loader(strategy)
        elif self.replay_mode == "mix":
            super().before_training_exp(strategy, *args, **kwargs)

    def after_training_exp(self, strategy, **kwargs):
        self._memory_batches = None
        if self.replay_mode == "mix":
            with memory_build(strategy, self.storage_policy):
                self.storage_policy.post_adapt(strategy, strategy.experience)

    # -- knowledge: the memory's logits, learnt beside the labels ---------------------------------
    def _memory_loader(self, strategy):
        """Shuffled memory mini-batches without end (None while the memory is empty), as DER
        draws them: `batch_size_mem` items each (the strategy's mini-batch size by default)."""
        from avalanche.training.utils import cycle
        from torch.utils.data import DataLoader

        memory = self.storage_policy.buffer
        size = self.batch_size_mem or strategy.train_mb_size
        if len(memory) == 0:
            return None
        return cycle(DataLoader(memory, batch_size=min(size, len(memory)), shuffle=True, drop_last=True))

    def before_training_iteration(self, strategy, **kwargs):
        """gdumb with logits: the memory items carry their logits last; take them off the
        mini-batch before anything reads it as (x, y, task label)."""
        if self.replay_mode == "gdumb" and self.knowledge == "logits":
            logits = strategy.mbatch.pop(-1)
            self._replayed = (len(logits), logits.to(strategy.device), None, None)

    def before_forward(self, strategy, **kwargs):
        """mix with logits: a memory mini-batch goes in front of the current one."""
        if self._memory_batches is None:
            return
        *items, logits = next(self._memory_batches)
        for i in range(len(strategy.mbatch)):  # x, y and, where the data has them, task labels
            strategy.mbatch[i] = torch.cat([items[i].to(strategy.device), strategy.mbatch[i]])
        self._replayed = (len(logits), logits.to(strategy.device), None, None)

    def after_forward(self, strategy, **kwargs):
        """mix with logits: the memory rows leave the mini-batch, so the strategy's criterion
        sees the current data only; they are learnt in `before_backward`."""
        if self._memory_batches is None or self._replayed is None:
            return
        n, logits = self._replayed[:2]
        self._replayed = (n, logits, strategy.mb_output[:n], strategy.mbatch[1][:n])
        strategy.mb_output = strategy.mb_output[n:]
        for i in range(len(strategy.mbatch)):
            strategy.mbatch[i] = strategy.mbatch[i][n:]

    def before_backward(self, strategy, **kwargs):
        """The knowledge term: DER++'s on the memory rows (mix) or KL at the targets'
        temperature on the memory-only mini-batch (gdumb)."""
        if self._replayed is None:
            return
        n, logits, output, labels = self._replayed
        self._replayed = None
        if output is not None:
            strategy.loss = strategy.loss + dark_replay_loss(output, labels, logits, self.alpha, self.beta)
        else:
            strategy.loss = strategy.loss + soft_target_term(strategy.mb_output, logits, self._temperature())

    def _temperature(self) -> float:
        sets = [s for s in self.storage_policy.sets if s.targets is not None]
        return sets[-1].targets.temperature if sets else 1.0


class DMReplay(SupervisedTemplate):
    """Class-incremental learning with condensed memories (DM by default).

    See `ReducedSetReplayPlugin`. `method` is a registered method of `kind` (`dcapps methods`:
    a condenser by default; `kind="select"` for a memory of selected real images, e.g.
    herding); `method_settings` are any of its settings, over its memory preset (e.g.
    `{"iterations": 500, "lr_img": 10, "model_options": {"width": 64}}`).
    """

    def __init__(self, *, model: Module, optimizer: Optimizer, criterion=None,
                 ipc: Optional[int] = MemorySettings.ipc, mem_size: Optional[int] = MemorySettings.mem_size,
                 method: str = "dm", kind: str = "condense", method_settings: Optional[dict] = None,
                 replay_mode: str = MemorySettings.replay_mode, knowledge: str = MemorySettings.knowledge,
                 alpha: float = MemorySettings.alpha, beta: float = MemorySettings.beta,
                 embedding: str = MemorySettings.embedding, seed: int = 0, batch_size_mem: Optional[int] = None,
                 train_mb_size: int = 1, train_epochs: int = 1, eval_mb_size: Optional[int] = None,
                 device: Union[str, torch.device] = "cpu", plugins: Optional[List[SupervisedPlugin]] = None,
                 evaluator: Union[EvaluationPlugin, Callable[[], EvaluationPlugin]] = default_evaluator,
                 eval_every: int = -1, condenser: Optional[str] = None, condenser_options: Optional[dict] = None,
                 **base_kwargs):
        # the deprecated names stand in the signature: Avalanche refuses any other keyword argument
        renamed = {k: v for k, v in (("condenser", condenser), ("condenser_options", condenser_options))
                   if v is not None}
        method = renamed_argument(renamed, "condenser", "method", method, "DMReplay", default="dm")
        method_settings = renamed_argument(renamed, "condenser_options", "method_settings", method_settings, "DMReplay")
        self.replay_plugin = ReducedSetReplayPlugin(
            ipc=ipc, mem_size=mem_size, method=method, kind=kind, method_settings=method_settings,
            seed=seed, replay_mode=replay_mode, batch_size_mem=batch_size_mem, knowledge=knowledge, alpha=alpha,
            beta=beta, embedding=embedding)
        plugins = [*(plugins or []), self.replay_plugin]
        if criterion is None:
            criterion = torch.nn.CrossEntropyLoss()
        super().__init__(model=model, optimizer=optimizer, criterion=criterion, train_mb_size=train_mb_size,
                         train_epochs=train_epochs, eval_mb_size=eval_mb_size, device=device, plugins=plugins,
                         evaluator=evaluator, eval_every=eval_every, **base_kwargs)

    @property
    def memory(self) -> ReducedSetBuffer:
        """The condensed memory (a `ReducedSetBuffer`)."""
        return self.replay_plugin.storage_policy

    def save_memory(self, folder: str) -> str:
        """Save the memory as one `ReducedSet` file per experience (see `ReducedSetBuffer.save`)."""
        return self.memory.save(folder)

    def load_memory(self, folder: str) -> ReducedSetBuffer:
        """Resume: load a memory saved by `save_memory`."""
        return self.memory.load(folder)


_RENAMED = {"SyntheticBuffer": "ReducedSetBuffer", "CondensedReplayPlugin": "ReducedSetReplayPlugin"}


def __getattr__(name):
    """The names the glossary replaced, for one more release (with a DeprecationWarning)."""
    if name in _RENAMED:
        renamed(f"dcapps.replay.{name}", f"dcapps.replay.{_RENAMED[name]}")
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
