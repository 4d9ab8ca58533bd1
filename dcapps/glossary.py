"""The project's glossary as data: one word per concept, and the names each word replaced.

`docs/glossary.md` documents these entries (its table is `markdown()`, checked by a test), and
`tests/test_glossary.py` walks the public API (the constructors of `DMReplay`,
`ReducedSetReplayPlugin` and `ReducedSetBuffer`, every command-line flag, every YAML key) against
them: no replaced name may stand beside the word that replaced it. A replaced Python name keeps
working for one release with a `DeprecationWarning` naming the new one (Avalanche's convention);
a replaced flag or YAML key is refused with a one-line message naming the new one, from the
tables `RENAMED_FLAGS` and `RENAMED_KEYS` below, which the command line and the config reader
use. Plain data, no imports: any layer may read it.
"""
from __future__ import annotations

from typing import NamedTuple


class Term(NamedTuple):
    """One concept: its word, what it means and why that word; its spellings in Python, on the
    command line and in YAML; the names it replaced."""

    word: str
    meaning: str
    why: str
    python: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    # replaced Python names that still work, with a warning: `module.Name`, `Class(argument=)`
    # or `Class.method`
    deprecated: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()  # replaced names that no longer exist (none may come back)
    renamed_flags: tuple[str, ...] = ()  # refused, naming `flags[0]`
    renamed_keys: tuple[str, ...] = ()  # refused, naming `keys[0]`


TERMS = (
    Term("reduced set",
         "what a method returns: condensed (learned) or selected (real) images with their labels, "
         "classes, normalisation and metadata",
         "LCMat's word for the output of both selection and condensation; `synthetic` is wrong for "
         "selected real images. `syn` names only the synthetic images a condenser is learning",
         python=("ReducedSet", "condense_core.reduced"),
         deprecated=("condense_core.SyntheticSet", "condense_core.synthetic.SyntheticSet")),
    Term("memory",
         "the reduced sets a replay strategy keeps, one per experience (a role of reduced sets)",
         "Avalanche's word for what replay keeps (`ExemplarsBuffer`, `mem_size`)",
         python=("ReducedSetBuffer", "memory", "mem_size", "save_memory", "load_memory"), keys=("memory",),
         deprecated=("dcapps.replay.SyntheticBuffer", "dcapps.replay.CondensedReplayPlugin")),
    Term("proxy",
         "a reduced set that NAS candidates are trained on instead of the whole data (a role)",
         "the NAS literature's word for a cheap stand-in training set",
         flags=("--proxy",)),
    Term("method",
         "a registered algorithm that builds a reduced set; `method` is its name",
         "one word for condensers and selectors alike, as in `dcapps condense/select --method`",
         python=("method",), flags=("--method",),
         deprecated=("DMReplay(condenser=)",), retired=("method_name",)),
    Term("kind",
         "what a method does: `condense` (a condenser learns images) or `select` (a selector picks "
         "real ones); a (kind, method) pair names one registered class",
         "the two commands that build reduced sets are named for it",
         python=("kind",)),
    Term("method settings",
         "a method's configuration fields (declared with `settings.setting`); a mapping of them "
         "given by a caller is `method_settings`, and `Method.settings()` returns them",
         "six names (options, condenser_options, method_options, --condense-options, "
         "--method-options, config()) became one; `settings` is the word of the settings mechanism "
         "that declares them",
         python=("method_settings", "settings"), flags=("--method-settings",), keys=("methods",),
         deprecated=("DMReplay(condenser_options=)", "ReducedSetReplayPlugin(options=)",
                     "ReducedSetBuffer(options=)", "Method.config"),
         retired=("method_options", "condense_options"),
         renamed_flags=("--condense-options", "--method-options"), renamed_keys=("condense",)),
    Term("model options",
         "a network's architecture options (ConvNet width, depth, act, norm, pool; MLP; ResNet), "
         "declared once per model in `condense_core.networks`",
         "timm/torchvision builders call them options; they configure a network, not a method",
         python=("model_options", "ConvNetOptions", "MLPOptions", "ResNetOptions"), keys=("model",)),
    Term("training settings",
         "how a network is trained: `SGDSettings` (the optimiser), `TrainSettings` (the evaluation "
         "protocol: epochs, batch size, DSA), `CLTrainSettings` (a CL run's `train:` section)",
         "the SGD fields and their help were declared twice, under two names",
         python=("SGDSettings", "TrainSettings", "CLTrainSettings"), keys=("train",),
         deprecated=("condense_core.TrainConfig",)),
    Term("progress",
         "showing how far a long run is (`progress=`, `runtime.tracked`)",
         "one word where there were progress, show_progress and enabled",
         python=("progress",), retired=("show_progress",)),
    Term("preset",
         "a named group of a method's settings applied before the caller's (`\"memory\"`: the "
         "short condensations of a replay memory)",
         "the word of `dcapps methods` and `make_method(preset=)`; the memory preset is a role, "
         "not another kind of settings",
         python=("preset",)),
    Term("config",
         "a scripted CL benchmark: its YAML file, read into `scenarios.config.CLConfig`; `cfg` "
         "where it travels whole, its sections' names (`train`, `memory`, ...) for its pieces",
         "one name for the whole, so that a function that needs a piece is given the piece",
         python=("CLConfig", "cfg")),
    Term("ranks",
         "the processes of one condensation under torchrun (`distributed.Ranks`)",
         "torch.distributed's word; `shard` now means only a share of a sweep's units",
         python=("Ranks",), deprecated=("condense_core.distributed.Shard",)),
    Term("shard",
         "a share of a sweep's units run by one job (`--shard I/N`, `sweep.Layout.shard`)",
         "the scheduler's word (one job of an array)",
         flags=("--shard",)),
    Term("soft targets",
         "a model's logits on a reduced set's training images, with the temperature they are softened "
         "at and their source: a `teacher` (a network trained on the real data) or the continual "
         "`learner`; `condense_core.reduced.SoftTargets`, `ReducedSet.targets`",
         "the distillation literature's word (Hinton et al.); `targets` alone is Avalanche's word for "
         "a dataset's labels, so the attribute holding them is the set's, never a dataset's",
         python=("SoftTargets", "soft_labels", "teacher_epochs", "temperature"),
         flags=("--soft-labels", "--hard")),
    Term("knowledge",
         "what a memory keeps of what a model knew besides its labels: `labels`, `logits` (the "
         "learner's in mix, replayed with DER++'s `alpha` and `beta`; a teacher's in gdumb), or "
         "`auto` (as measured: logits in mix, labels in gdumb)",
         "the issue's word (\"condensed memories that carry the model's knowledge\", dark knowledge)",
         python=("knowledge", "alpha", "beta"), keys=("memory",)),
    Term("embedding",
         "the features a network gives an image; a memory method that looks through a trained "
         "network looks through its `own` or the `learner`'s (`memory.embedding`)",
         "the word of `net.embed` and of DM, which matches embeddings",
         python=("embedding",)),
    Term("run state",
         "what a DM-family method builds for one run besides the images, handed to its hooks and "
         "kept in checkpoints (DM: nothing; IDM, M3D: the network queue; LCMat-C: the pool of "
         "trained networks)",
         "`resources`, the queue and the pool were three names for it, passed untyped",
         python=("RunState",), retired=("resources", "resources_state", "load_resources")),
)

RENAMED_FLAGS = {old: t.flags[0] for t in TERMS for old in t.renamed_flags}
RENAMED_KEYS = {old: t.keys[0] for t in TERMS for old in t.renamed_keys}


def markdown() -> str:
    """The glossary as the Markdown table of `docs/glossary.md` (YAML keys end with a colon)."""
    def names(python=(), flags=(), keys=()) -> str:
        return ", ".join([f"`{n}`" for n in (*python, *flags)] + [f"`{k}:`" for k in keys]) or "-"

    lines = ["| word | meaning | why this word | its names | names it replaced |", "|---|---|---|---|---|"]
    for t in TERMS:
        lines.append(f"| **{t.word}** | {t.meaning} | {t.why} | {names(t.python, t.flags, t.keys)} "
                     f"| {names(t.deprecated + t.retired, t.renamed_flags, t.renamed_keys)} |")
    return "\n".join(lines)
