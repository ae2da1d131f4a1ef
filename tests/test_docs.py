"""The docs' code runs: every ```python block of docs/python-api.md, in order, as one
script (so the page cannot go stale)."""

import re
from pathlib import Path

from mbiapo.planners import PLANNERS
from mbiapo.value import Q_NETWORKS, VALUES

DOCS = Path(__file__).parents[1] / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_python_api_page_runs(monkeypatch, tmp_path, capsys):
    blocks = python_blocks(DOCS / "python-api.md")
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    saved = {r: dict(r._entries) for r in (PLANNERS, VALUES, Q_NETWORKS)}
    namespace = {"__name__": "python_api_page"}
    try:
        for block in blocks:
            exec(compile(block, "docs/python-api.md", "exec"), namespace)
    finally:
        for r, entries in saved.items():
            r._entries = entries
    printed = capsys.readouterr().out
    assert "mppi return" in printed and "shooting return" in printed
    assert "(4, 1)" in printed
    assert namespace["last"]["step"] == 400
