"""Config files are read as a person means them (`scenarios.strict_yaml`): a key given twice,
anchors, aliases and merge keys are refused naming the file and line; `1e-2` is a number; a
value of any size makes a short message."""
import pytest

from condense_core import InputError
from dcapps.cli import main
from scenarios.config import NAME_LONGEST, load_config
from scenarios.strict_yaml import load_yaml


def yaml_file(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, words", [
    ("data: digits\ntrain: {epochs: 1, epochs: 5}\n", ["'epochs'", "twice", "line 2"]),
    ("data: digits\nexperiences: 2\ndata: mnist\n", ["'data'", "twice", "line 3"]),
    ("data: digits\ntrain:\n  lr: 0.1\n  lr: 0.2\n", ["'lr'", "line 4"]),
    ("data: digits\ntrain: {<<: {epochs: 5}, lr: 0.1}\n", ["merge key"]),
    ("data: digits\nseeds: &s [0]\nother: *s\n", ["anchor", "line 2"]),
    ("data: digits\nseeds: *s\n", ["alias"]),
])
def test_what_the_safe_loader_would_take_silently_is_refused(tmp_path, text, words):
    path = yaml_file(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_yaml(path)
    assert str(e.value).startswith(f"{path}: ") and all(w in str(e.value) for w in words), str(e.value)


def test_a_billion_laughs_is_refused_at_its_first_anchor_in_one_short_line(tmp_path, capsys):
    lines = ["data: digits"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else '0'] * 9)}]" for i in range(9)]
    path = yaml_file(tmp_path, "\n".join(lines + ["seeds: *l8", ""]))  # 9^9 seeds once expanded
    assert main(["cl", "run", path, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "anchor" in err and "line 2" in err and len(err) < 300 and not (tmp_path / "o").exists()


def test_numbers_are_read_as_yaml_1_2_reads_them(tmp_path):
    path = yaml_file(tmp_path, "a: 1e-2\nb: 5e-4\nc: 1E5\nd: -.5\ne: +2.5e+3\nf: 12\ng: 1_000\nh: 1.2.3\ni: 0.1\n")
    assert load_yaml(path) == {"a": 0.01, "b": 0.0005, "c": 1e5, "d": -0.5, "e": 2500.0, "f": 12, "g": 1000,
                               "h": "1.2.3", "i": 0.1}
    assert type(load_yaml(path)["f"]) is int
    cfg = load_config(yaml_file(tmp_path, "data: digits\ntrain: {lr: 1e-2, weight_decay: 5e-4}\n"))
    assert (cfg.train.lr, cfg.train.weight_decay) == (0.01, 0.0005)


def test_a_huge_name_is_refused_before_any_work_in_one_short_line(tmp_path, capsys):
    path = yaml_file(tmp_path, "data: digits\nname: " + "n" * 10 ** 6 + "\n")
    assert main(["cl", "run", path, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"name must be at most {NAME_LONGEST} characters, got 1000000" in err and len(err) < 300, err[:500]
    assert not (tmp_path / "o").exists()
