"""Every Python example in the README and in docs/ runs, so none can go stale.

The ```python blocks of a page run in order in one namespace (a page can build on its earlier
examples), in a fresh folder, on the bundled digits data. An example written with realistic
settings says how the test shrinks them in an HTML comment right above it, which the rendered
page does not show: `<!-- test: replace `iterations=500` with `iterations=2`; ... -->`; each
replacement must change the block, so the comment cannot go stale either.
"""
import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)", re.M)
BLOCK = re.compile(r"(?:<!-- test: (?P<subs>[^\n]*?) -->\n)?```python\n(?P<code>.*?)^```", re.S | re.M)
REPLACE = re.compile(r"replace `([^`]*)` with `([^`]*)`")
LANGUAGES = {"", "python", "bash", "yaml"}  # a fence in another language would be skipped silently


def examples(page: Path) -> list[tuple[int, str]]:
    """(line, code) of each Python example of `page`, with its test replacements made."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in BLOCK.finditer(text):
        code, line = m["code"], text.count("\n", 0, m.start("code")) + 1
        for old, new in REPLACE.findall(m["subs"] or ""):
            assert old in code, f"{page.name}:{line}: the test comment replaces {old!r}, which the example lacks"
            code = code.replace(old, new)
        found.append((line, code))
    return found


def test_every_code_block_is_in_a_known_language():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        opening = FENCE.findall(text)[::2]  # every other fence opens a block
        assert set(opening) <= LANGUAGES, f"{page.name}: code blocks in {set(opening) - LANGUAGES}"
        assert text.count("```python") == len(examples(page)), page.name


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: p.name)
def test_the_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root, ours = logging.getLogger(), logging.getLogger("dcapps")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    namespace = {"__name__": "__main__"}
    try:
        for line, code in examples(page):
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
    finally:  # an example's logging.basicConfig stays in the example
        root.handlers[:], ours.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        ours.setLevel(saved[3])
        ours.propagate = saved[4]
