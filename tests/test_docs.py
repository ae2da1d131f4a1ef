"""The docs' code runs: every ```python block of docs/python-api.md, in order, as one
script (so the page cannot go stale)."""

import re
from pathlib import Path

from tests.helpers import registries_restored

DOCS = Path(__file__).parents[1] / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_python_api_page_runs(monkeypatch, tmp_path, capsys):
    blocks = python_blocks(DOCS / "python-api.md")
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "python_api_page"}
    with registries_restored():
        for block in blocks:
            exec(compile(block, "docs/python-api.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "mppi return" in printed and "shooting return" in printed
    assert "(4, 1)" in printed
    assert namespace["last"]["step"] == 400


def _commands_reference() -> dict[tuple[str, ...], set[str]]:
    """(command words) -> the --flags docs/commands.md gives it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for line in (DOCS / "commands.md").read_text().splitlines():
        m = re.match(r"\| `mbiapo ([^`]*)` \|", line)
        if not m:
            continue
        words = []
        for word in m[1].split():
            if not re.fullmatch(r"[a-z]+", word):
                break
            words.append(word)
        found.setdefault(tuple(words), set()).update(re.findall(r"--[a-z][a-z-]*", m[1]))
    return found


def test_every_command_has_the_flags_the_commands_reference_gives_it(capsys):
    """docs/commands.md and the CLI cannot drift: each documented flag is in the command's
    --help, and every command is documented."""
    import pytest

    from mbiapo.cli import build_parser

    reference = _commands_reference()
    parser = build_parser()
    commands = {(name,) for name in parser._subparsers._group_actions[0].choices}
    documented = {words[:1] for words in reference}
    assert commands <= documented, commands - documented
    for words, flags in reference.items():
        with pytest.raises(SystemExit):
            build_parser().parse_args([*words, "--help"])
        shown = capsys.readouterr().out
        missing = [flag for flag in flags if flag not in shown]
        assert not missing, (words, missing)


def test_the_configuration_page_lists_every_key():
    from mbiapo.config import compose
    from mbiapo.planners import PLANNERS

    page = (DOCS / "configuration.md").read_text()
    keys = set()
    for planner in PLANNERS.names():
        cfg = compose("InvertedPendulum-v5", planner)
        keys |= {f"{group}.{key}" for group in cfg for key in cfg[group]}
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert not missing, missing
