"""Each setting is declared once and reaches every caller: the command-line flag, the YAML key and
the DMReplay option of every setting of every condenser, errors in the caller's own words, the
registry by kind and name, `dcapps methods`, and run state kept off the method objects."""
import re
import subprocess
import sys

import pytest
import torch

from condense_core import InputError, make_method
from condense_core.registration import register
from condense_core.registry import method_class, methods
from condense_core.settings import Setting, check, settings_of
from dcapps.cli import build_parser, main
from dcapps.cli.common import given_settings
from scenarios.strategies import STRATEGY_METHODS

CONDENSERS = methods("condense")
OWN = [(name, s) for name, cls in CONDENSERS.items() for s in settings_of(cls).values() if not s.rule.common]
STRATEGY = {name: strategy for strategy, (kind, name) in STRATEGY_METHODS.items() if kind == "condense"}


def other_value(s: Setting):
    """A valid value different from the default."""
    if s.type is bool:
        return not s.default
    if s.rule.choices:
        return next(c for c in s.rule.choices if c != s.default)
    if s.type is int:
        return s.default + 1
    if s.type is float:
        return s.default + 0.5
    if s.type is dict:
        return {"width": 8}
    raise AssertionError(f"no test value for {s}")


def as_flag(name: str, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + name.replace("_", "-")]
    return [flag, str(value)]


def test_condense_help_has_a_flag_for_every_setting_of_every_condenser(capsys):
    with pytest.raises(SystemExit):
        main(["condense", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, cls in CONDENSERS.items():
        for s in settings_of(cls).values():
            flag = "--" + s.name.replace("_", "-")
            assert flag in text, flag
            if not all(s.name in settings_of(c) for c in CONDENSERS.values()):
                owners = r"[a-z0-9]+(, [a-z0-9]+)*"  # the methods that have it, this one among them
                mark = re.search(re.escape(flag) + r" \S+ (" + owners + "): ", text)
                assert mark and name in mark.group(1).split(", "), flag


@pytest.mark.parametrize("method, s", OWN, ids=[f"{m}.{s.name}" for m, s in OWN])
def test_the_same_key_works_as_flag_yaml_key_and_dmreplay_option(method, s):
    from avalanche.training.plugins.evaluation import default_evaluator

    from condense_core.networks import build_model
    from dcapps.replay import ReducedSetBuffer
    from scenarios.config import validate
    from scenarios.strategies import build_strategy

    value = other_value(s)
    argv = ["condense", "--data", "digits", "--method", method, "--ipc", "1", "--out", "x.pt", *as_flag(s.name, value)]
    args = build_parser(argv).parse_args(argv)
    assert given_settings(CONDENSERS[method], args, method)[s.name] == value

    for methods in ({method: {s.name: value}}, {s.name: value}):  # the method's own key, the shared one
        cfg = validate({"data": "digits", "methods": methods})
        model = build_model("ConvNet", 1, 10, (8, 8), width=8)
        strategy = build_strategy(STRATEGY[method], model, cfg.train, cfg.memory, cfg.method_settings(STRATEGY[method]),
                                  10, 0, default_evaluator, torch.device("cpu"))
        assert getattr(strategy.memory.method_for(2, "cpu"), s.name) == value, methods

    assert getattr(ReducedSetBuffer(method=method, method_settings={s.name: value}).method_for(2, "cpu"), s.name) == value


def test_errors_name_the_setting_in_the_callers_words(tmp_path, capsys):
    from scenarios.config import validate

    assert main(["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--lr-img", "nan",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "--lr-img must be a finite number > 0, got nan" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(InputError, match="methods.dm.lr_img must be a finite number > 0"):
        validate({"data": "digits", "methods": {"dm": {"lr_img": float("nan")}}})
    with pytest.raises(InputError, match="methods.lr_img must be"):
        validate({"data": "digits", "methods": {"lr_img": -1}})
    with pytest.raises(InputError, match="train.lr must be a finite number > 0"):
        validate({"data": "digits", "train": {"lr": float("inf")}})
    with pytest.raises(InputError, match="^lr_img must be a finite number > 0"):
        make_method("condense", "dm", lr_img=float("nan"))
    assert main(["condense", "--data", "digits", "--method", "dm", "--ipc", "1", "--rho", "3",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "--rho does not apply to condense method 'dm'" in capsys.readouterr().err


def test_setting_checks():
    s = settings_of(method_class("condense", "dm"))
    assert s["iterations"].check(3, "it") == 3 and s["lr_img"].check(2, "lr") == 2.0
    for name, bad in (("iterations", 0), ("iterations", 2.5), ("iterations", True), ("lr_img", 0),
                      ("lr_img", float("inf")), ("init", "zeros"), ("dsa", "yes"), ("model_options", [])):
        with pytest.raises(InputError, match=f"^{name} must be"):
            check(method_class("condense", "dm"), {name: bad})


def test_texts_and_integers_have_bounds_and_messages_quote_values_short():
    from condense_core.errors import one_line, shown
    from condense_core.settings import INT_MAX, TEXT_LONGEST

    dm = method_class("condense", "dm")
    with pytest.raises(InputError, match=f"^iterations must be at most {INT_MAX} .*got 10000000000000000000000$"):
        check(dm, {"iterations": 10 ** 22})
    longest = f"^model must be at most {TEXT_LONGEST} characters, got {TEXT_LONGEST + 1}"
    with pytest.raises(InputError, match=longest) as e:
        check(dm, {"model": "m" * (TEXT_LONGEST + 1)})
    assert len(str(e.value)) < 200
    assert len(shown("x" * 10 ** 7)) < 110 and len(shown(list(range(10 ** 6)))) < 110 and shown(0.5) == "0.5"
    line = one_line("start " + "y" * 10 ** 6 + " what to do\nsecond line")
    assert len(line) <= 600 and line.startswith("start y") and line.endswith("what to do")


def test_registry_is_by_kind_and_name():
    assert method_class("condense", "lcmat") is not method_class("select", "lcmat")
    assert set(methods("select")) >= {"random", "herding", "kcenter", "lcmat"}
    with pytest.raises(ValueError, match="registered twice"):
        register("select", "herding")(type("Other", (), {}))
    with pytest.raises(InputError, match="unknown select method 'dm'"):
        method_class("select", "dm")


def test_methods_command_lists_every_method_with_its_settings(capsys):
    assert main(["methods", "--json"]) == 0
    out = capsys.readouterr().out
    listing = __import__("json").loads(out.strip().splitlines()[-1])
    for kind in ("condense", "select"):
        for name, cls in methods(kind).items():
            assert listing[f"{kind} {name}"]["settings"] == {k: s.default for k, s in settings_of(cls).items()}
    assert "--lr-img" in out and "preset 'memory'" in out


def test_help_imports_no_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "dcapps", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "condense" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert imported and not [m for m in imported if m.split(".")[0] in ("torch", "avalanche", "nni")]


def test_a_run_leaves_the_method_object_as_it_was(digits):
    """Run state (LCMat-C's trained pool, ...) lives in the run: the same object runs twice alike."""
    data = digits.subset([0, 1])
    small = {"ipc": 1, "iterations": 2, "batch_real": 8, "model_options": {"width": 8}, "device": "cpu"}
    for method in (make_method("condense", "dm", **small),
                   make_method("condense", "lcmat", pool_size=1, net_epochs=1, **small)):
        before = dict(vars(method))
        first, second = method.condense(data), method.condense(data)
        assert vars(method) == before
        assert torch.equal(first.images, second.images)
